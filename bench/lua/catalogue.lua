-- wrk script of the HTTP bench: GET /api/v1/products?page=P&page_size=S, rotating P.
-- Arguments after `--`: pages page_size. Prints one "@@result {json}" line at the end.
-- Each thread starts at a different page so the threads do not move in step.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  -- wrk passes the URL as args[0]; our arguments follow from args[1]
  pages = tonumber(args[1]) or 10
  page_size = tonumber(args[2]) or 24
  n = id
  ok2xx, other = 0, 0
end

function request()
  n = n + 1
  return wrk.format("GET", "/api/v1/products?page=" .. (n % pages + 1) .. "&page_size=" .. page_size)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok2xx = ok2xx + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok2xx")
    bad = bad + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    '@@result {"requests": %d, "duration_us": %d, "bytes": %d, "ok2xx": %d, "non2xx": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes, ok, bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
