-- The parts of the HTTP enqueue wrk scripts that are the same: threads
-- numbered (`tid`, for unique identifiers), non-201 answers counted, and
-- one RESULT line at the end. Loaded with dofile by bench/http-enqueue.lua
-- and bench/ogc-execute.lua (wrk runs from the repository's root).

local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
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
