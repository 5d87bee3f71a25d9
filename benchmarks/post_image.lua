-- wrk script of benchmarks/load.py: every system gets the same image from the same wrk.
--   wrk -t C -c C --timeout 40s -s benchmarks/post_image.lua URL -- IMAGE MODE
-- MODE body: each request posts the image as its raw body (the peers, the classify endpoint);
--   latency is wrk's own, per request.
-- MODE jobs: URL is the API base; POST /jobs (the raw image, execute=true in the query),
--   GET /jobs/{id}?wait=25
--   until the job is finished, then GET /jobs/{id}/result; latency is per job, from the POST
--   to the result. Needs one connection per thread (-t = -c): the Lua state is the thread's,
--   so a thread can follow only the job of its one connection.
-- done() prints one JSON line: {"done", "failed", "seconds", "p50_ms", "p99_ms"}.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}
local base, create, body_request

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local image = file:read("*a")
  file:close()
  mode = args[2]  -- a global: done() reads it from the thread
  base = wrk.path
  if mode == "body" then
    body_request = wrk.format("POST", nil, {["Content-Type"] = "image/jpeg"}, image)
  else
    -- The same raw body as the other systems get; the job's fields go in the query.
    create = wrk.format("POST", base .. "/jobs?model=mobilenet-v2-imagenet-quant&execute=true",
      {["Content-Type"] = "image/jpeg"}, image)
  end
  latencies, failed = {}, 0
end

-- The jobs mode's state: what the thread's connection does next, for which job, since when.
local step, job, started = "create", nil, 0

function request()
  if mode == "body" then
    return body_request
  elseif step == "create" then
    started = now_ms()
    return create
  elseif step == "wait" then
    return wrk.format("GET", base .. "/jobs/" .. job .. "?wait=25")
  end
  return wrk.format("GET", base .. "/jobs/" .. job .. "/result")
end

function response(status, headers, body)
  if mode == "body" then
    return
  end
  if step == "create" then
    job = status == 201 and body:match('"id"%s*:%s*"([^"]+)"') or nil
    if job then step = "wait" else failed = failed + 1 end
  elseif step == "wait" then
    local state = status == 200 and body:match('"status"%s*:%s*"(%u+)"') or "ERROR"
    if state == "DONE" then
      step = "result"
    elseif state == "FAILED" or state == "CANCELLED" or state == "ERROR" then
      failed, step = failed + 1, "create"
    end
  else
    if status == 200 then
      table.insert(latencies, now_ms() - started)
    else
      failed = failed + 1
    end
    step = "create"
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then return -1 end
  return sorted[math.max(1, math.ceil(#sorted * p / 100))]
end

-- Runs in wrk's main Lua state, where init() never ran: the mode comes from a thread.
function done(summary, latency, requests)
  local mode = threads[1]:get("mode")
  local errors = summary.errors
  local broken = errors.connect + errors.read + errors.write + errors.timeout
  local ok, bad, p50, p99
  if mode == "body" then
    bad = errors.status + broken
    ok = summary.requests - errors.status
    p50, p99 = latency:percentile(50) / 1000, latency:percentile(99) / 1000
  else
    local all = {}
    bad = broken
    for _, thread in ipairs(threads) do
      for _, ms in ipairs(thread:get("latencies")) do table.insert(all, ms) end
      bad = bad + thread:get("failed")
    end
    table.sort(all)
    ok, p50, p99 = #all, percentile(all, 50), percentile(all, 99)
  end
  io.write(string.format(
    '{"done": %d, "failed": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    ok, bad, summary.duration / 1e6, p50, p99))
end
