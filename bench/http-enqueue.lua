-- wrk script: POST /api/v1/tasks with a fresh identifier per request, so
-- every request is a real enqueue (never a 409 duplicate). Each wrk thread
-- numbers its own requests; the thread id keeps identifiers unique across
-- threads. Non-201 answers are counted and printed at the end.

local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  refused = 0
  run = os.time()
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"type":"BenchNoop","identifier":"r%d-t%d-%d","input":{"n":%d}}',
    run, tid, counter, counter)
  return wrk.format("POST", "/api/v1/tasks",
    { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 201 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local total_refused = 0
  for _, t in ipairs(threads) do
    total_refused = total_refused + (t:get("refused") or 0)
  end
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f non201=%d\n",
    summary.requests, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    total_refused))
end
