-- wrk script: a closed loop that stops after a FIXED number of responses (wrk itself only runs for a time).
--
--   wrk -t1 -c N -d 300s --timeout 60s -s wrk_fixed_count.lua URL -- BODIES_FILE PATH COUNT
--
-- BODIES_FILE holds one JSON request body per line, POSTed to PATH in turn. Run with ONE wrk thread (-t1):
-- it drives all N connections on epoll, and one thread makes "count reached" a single, exact event. Once
-- COUNT responses are in, the thread stops and SIGINTs its own process so wrk's main thread does not sleep
-- out the -d duration. Prints one line that serving_bench.py parses:
--   RESULT requests=<n> seconds=<first request to last response> p50_us=<> p99_us=<> errors=<>
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
int kill(int pid, int sig);
int getpid(void);
]])

local CLOCK_MONOTONIC, SIGINT = 1, 2

local function now_us()
  local t = ffi.new("bench_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, t)
  return tonumber(t.tv_sec) * 1e6 + tonumber(t.tv_nsec) / 1e3
end

-- setup/done run in their own Lua state: keep the thread handles to read the timing back.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Running phase (the wrk thread's own Lua state).
local requests, target, sent, received = {}, 0, 0, 0
first_us, last_us = 0, 0

function init(args)
  local bodies_file, path = args[1], args[2]
  target = tonumber(args[3])
  for line in io.lines(bodies_file) do
    if #line > 0 then
      table.insert(requests, wrk.format("POST", path, { ["Content-Type"] = "application/json" }, line))
    end
  end
  if #requests == 0 or not target or target < 1 then
    error("usage: -- BODIES_FILE PATH COUNT (a non-empty bodies file and a positive count)")
  end
end

function request()
  if sent == 0 then
    first_us = now_us()
  end
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  received = received + 1
  if received == target then
    last_us = now_us()
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), SIGINT)
  end
end

function done(summary, latency, _requests)
  local first, last = math.huge, 0
  for _, thread in ipairs(threads) do
    first = math.min(first, thread:get("first_us"))
    last = math.max(last, thread:get("last_us"))
  end
  local e = summary.errors
  io.write(
    string.format(
      "RESULT requests=%d seconds=%.6f p50_us=%d p99_us=%d errors=%d\n",
      summary.requests,
      (last - first) / 1e6,
      latency:percentile(50.0),
      latency:percentile(99.0),
      e.connect + e.read + e.write + e.status + e.timeout
    )
  )
end
