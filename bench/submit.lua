-- wrk script: POST a realistic contact submission (~330 bytes, every field) with a unique email
-- per request. BENCH_PREFIX makes emails unique across runs; BENCH_XFF=1 adds an
-- X-Forwarded-For from a pool of 100,000 distinct client IPs.
local counter = 0
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local xff = os.getenv("BENCH_XFF") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

request = function()
  counter = counter + 1
  local email = string.format("%s-%d-%d@bench.example.com", prefix, tid, counter)
  local body = string.format(
    '{"name":"Bench Reader %d","email":"%s","company":"Example Industries Ltd",' ..
    '"phone":"+44 20 7946 0958","message":"Hello, we would like a demo of your product ' ..
    'for our marketing team next week.","utm_source":"newsletter","utm_medium":"email",' ..
    '"utm_campaign":"launch-2026","landing_page":"https://example.com/landing?utm_source=newsletter",' ..
    '"_elapsed_ms":8000}', counter, email)
  local headers = { ["Content-Type"] = "application/json" }
  if xff then
    local n = (counter * 7 + tid * 13) % 100000
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
  end
  return wrk.format("POST", "/v1/forms/contact/submissions", headers, body)
end
