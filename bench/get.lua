-- wrk script: GET the path given as BENCH_PATH with BENCH_COOKIE / BENCH_AUTH headers, and
-- print the latency percentiles wrk does not (p95) at the end.
local path = os.getenv("BENCH_PATH") or "/"
local headers = {}
if os.getenv("BENCH_COOKIE") then headers["Cookie"] = os.getenv("BENCH_COOKIE") end
if os.getenv("BENCH_AUTH") then headers["Authorization"] = os.getenv("BENCH_AUTH") end

function request()
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  io.write(string.format("PCT p50=%d p95=%d p99=%d max=%d non2xx=%d\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    summary.errors.status))
end
