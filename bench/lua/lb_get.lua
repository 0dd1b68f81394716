-- wrk script of the load-balancer bench: GET one path, optionally paced.
-- Arguments after `--`: path pages mean_delay_ms
--   pages > 0: "page=N" (N rotating over 1..pages) is added to the query (the catalogue);
--   mean_delay_ms > 0: each connection waits an exponentially distributed pause of that
--   mean before each request (Poisson arrivals): c connections then offer about
--   c * 1000 / mean_delay_ms req/s when answers are fast next to the pause, i.e. well below
--   saturation, which is the only place this pacing is used (wrk itself has no rate limit).
-- Prints one "@@result {json}" line at the end (the same fields as catalogue.lua).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  path = args[1] or "/"
  pages = tonumber(args[2]) or 0
  mean_delay = tonumber(args[3]) or 0
  n = id
  ok2xx, other = 0, 0
  math.randomseed(1000 + id)
  local sep = "?"
  if string.find(path, "?", 1, true) then sep = "&" end
  prefix = path .. sep .. "page="
end

function delay()
  if mean_delay <= 0 then return 0 end
  return math.floor(-mean_delay * math.log(1 - math.random()))
end

function request()
  if pages > 0 then
    n = n + 1
    return wrk.format("GET", prefix .. (n % pages + 1))
  end
  return wrk.format("GET", path)
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
