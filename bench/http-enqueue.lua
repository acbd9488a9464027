-- wrk script: POST /api/v1/tasks with a fresh identifier per request, so
-- every request is a real enqueue (never a 409 duplicate). Each wrk thread
-- numbers its own requests; the thread id keeps identifiers unique across
-- threads. Non-201 answers are counted and printed at the end.

dofile("bench/wrk-result.lua")

local counter = 0

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
