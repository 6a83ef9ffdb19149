-- wrk script for every HTTP scenario of the benchmark. Settings come from the
-- environment, set by the bench binary:
--   BENCH_METHOD  GET or POST
--   BENCH_PATH    request path and query
--   BENCH_TOKEN   bearer token (optional)
--   BENCH_BODY    POST body (JSON)
--   BENCH_RUN     prefix of the Idempotency-Key: every POST gets its own key,
--                 "<run>-<thread>-<n>", so no request is an idempotent replay
-- done() prints one line "BENCH {json}" with the figures (latency in µs).
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
if wrk.method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = os.getenv("BENCH_BODY")
end

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local run = os.getenv("BENCH_RUN") or "run"
local n = 0
local fixed = nil
function request()
  if wrk.method ~= "POST" then
    fixed = fixed or wrk.format()
    return fixed
  end
  n = n + 1
  wrk.headers["Idempotency-Key"] = run .. "-" .. tid .. "-" .. n
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%.0f,"duration_us":%.0f,"connect_errors":%.0f,"read_errors":%.0f,'
      .. '"write_errors":%.0f,"status_errors":%.0f,"timeouts":%.0f,"mean_us":%.1f,'
      .. '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
