-- wrk script: the embed script's view beacon (navigator.sendBeacon with URLSearchParams):
-- POST /v1/forms/contact/views, urlencoded utm_source, utm_campaign and referrer, a browser's
-- User-Agent, and an X-Forwarded-For from a pool of 100,000 client IPs (so daily-unique
-- counting sees many visitors, as a busy landing page does).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

local body = "utm_source=newsletter&utm_campaign=launch-2026&referrer=" ..
  "https%3A%2F%2Fnews.example.org%2Fissue%2F42"

function request()
  local n = math.random(0, 99999)
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", "/v1/forms/contact/views", {
    ["Content-Type"] = "application/x-www-form-urlencoded;charset=UTF-8",
    ["Origin"] = "https://example.com",
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    ["X-Forwarded-For"] = ip,
  }, body)
end
