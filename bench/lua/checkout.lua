-- wrk script of the HTTP bench: POST /api/v1/orders, each request as a different customer.
-- Arguments after `--`: tokens_file seconds key_prefix threads.
--   tokens_file: one bearer token per line; thread k of T uses lines k, k+T, k+2T, ...
--     and each token exactly once (every customer has a one-item cart).
--   seconds: stop sending new requests after this long (per thread, monotonic clock), then
--     wait for the responses still in flight and stop the thread, so that every request
--     sent has its response counted (the orders created must equal the 2xx responses).
--     A thread also stops early when its tokens run out (reported as "exhausted").
-- Once every thread has stopped, each prints "@@stopped" and the bench sends wrk SIGINT,
-- which ends wrk's timer at once: wrk's duration (and requests/s) is then the real run time.
-- Prints one "@@result {json}" line at the end.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local path = args[1]
  limit = tonumber(args[2]) or 10
  prefix = args[3] or "bench"
  local nthreads = tonumber(args[4]) or 1
  tokens = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id and #line > 0 then tokens[#tokens + 1] = line end
    i = i + 1
  end
  next_i, sent, received, ok2xx, other, exhausted = 1, 0, 0, 0, 0, 0
  statuses = {}
  statuses_str = "{}"
  stopping, stopped = false, false
  -- wrk calls request() once in thread 0 before the run, only to check what it returns
  verify_call = (id == 0)
  started = nil
  body = '{"shipping": {"name": "Ada Bench", "address": "1 Loop Road", ' ..
         '"city": "Localhost", "postcode": "12345", "country": "DE"}}'
end

local function maybe_stop()
  if stopping and not stopped and received >= sent then
    stopped = true
    io.write("@@stopped\n")
    io.flush()
    wrk.thread:stop()
  end
end

function request()
  if verify_call then
    verify_call = false
    return wrk.format("POST", "/api/v1/orders", {["Idempotency-Key"] = "verify-only"}, body)
  end
  if started == nil then started = now() end
  if not stopping and (next_i > #tokens or now() - started >= limit) then
    stopping = true
    if next_i > #tokens then exhausted = 1 end
  end
  if stopping then
    maybe_stop()
    return "" -- nothing more is sent on this connection
  end
  local token = tokens[next_i]
  next_i = next_i + 1
  sent = sent + 1
  return wrk.format("POST", "/api/v1/orders", {
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = prefix .. "-" .. id .. "-" .. sent,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  received = received + 1
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    other = other + 1
    statuses[status] = (statuses[status] or 0) + 1
    statuses_str = statuses_json()
  end
  maybe_stop()
end

function statuses_json()
  local parts = {}
  for k, v in pairs(statuses) do parts[#parts + 1] = '"' .. k .. '": ' .. v end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local s, r, ok, bad, ex, st = 0, 0, 0, 0, 0, {}
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    r = r + t:get("received")
    ok = ok + t:get("ok2xx")
    bad = bad + t:get("other")
    ex = ex + t:get("exhausted")
    st[#st + 1] = t:get("statuses_str")
  end
  local e = summary.errors
  io.write(string.format(
    '@@result {"requests": %d, "duration_us": %d, "bytes": %d, "sent": %d, "received": %d, ' ..
    '"ok2xx": %d, "non2xx": %d, "exhausted_threads": %d, "non2xx_by_thread": [%s], ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes, s, r, ok, bad, ex, table.concat(st, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
