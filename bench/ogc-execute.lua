-- wrk script: POST /ogc/processes/BenchNoop/execution, OGC API – Processes'
-- asynchronous execute, with an input that differs per request, so each
-- request is a real enqueue of a new job (the server makes the job id).
-- The prefix comes from the environment (ATP_BENCH_OGC_PREFIX, default
-- /ogc). Non-201 answers are counted and printed at the end.

dofile("bench/wrk-result.lua")

local counter = 0
local prefix = os.getenv("ATP_BENCH_OGC_PREFIX") or "/ogc"

function init(args)
  refused = 0
end

function request()
  counter = counter + 1
  local body = string.format('{"inputs":{"input":{"n":%d,"t":%d}}}', counter, tid)
  return wrk.format("POST", prefix .. "/processes/BenchNoop/execution",
    { ["Content-Type"] = "application/json", ["Prefer"] = "respond-async" }, body)
end
