-- wrk script: POST what the embed script (snippet/inlet.js) sends for a contact form: the
-- fields, the attribution it computes (last-touch UTM keys, landing page, referrer, page title,
-- first_touch / last_touch as JSON), _elapsed_ms, and a fresh _idem key on every submit as the
-- script makes it (32 hex digits: the time, then random ones), form-urlencoded with Accept:
-- application/json, an Origin and a browser's User-Agent. Emails are unique per request and
-- start with random characters, as real addresses do, so each new lead lands on a random page
-- of the email index (ordered emails would share pages and flatter the database). Names and
-- companies are random too (a first name from a list, a random surname and company word), so
-- the console's search indexes get entries at random places, as real people's would.
-- BENCH_PREFIX makes emails unique across runs; BENCH_XFF=1 adds an X-Forwarded-For from a
-- pool of 100,000 distinct client IPs.
local counter = 0
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local xff = os.getenv("BENCH_XFF") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  -- Seeded from the kernel, so wrk processes started in the same second (several instances
  -- driven at once) never make the same idempotency keys.
  local f = io.open("/dev/urandom", "rb")
  local b1, b2, b3 = f:read(3):byte(1, 3)
  f:close()
  math.randomseed(((b1 * 256 + b2) * 256 + b3) * 64 + tid)
end

local function encode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local landing = "https://example.com/landing?utm_source=newsletter&utm_medium=email&utm_campaign=launch-2026"
local touch = '{"utm_source":"newsletter","utm_medium":"email","utm_campaign":"launch-2026",' ..
  '"referrer":"https://news.example.org/issue/42","landing_page":"' .. landing .. '","at":"2026-11-30T09:12:44.120Z"}'
-- Everything but the per-request values, encoded once.
local static = table.concat({
  "phone=" .. encode("+44 20 7946 0958"),
  "message=" .. encode("Hello, we would like a demo of your product for our marketing team next week."),
  "utm_source=newsletter", "utm_medium=email", "utm_campaign=launch-2026",
  "referrer=" .. encode("https://news.example.org/issue/42"),
  "landing_page=" .. encode(landing),
  "page_title=" .. encode("Launch 2026 | Example"),
  "first_touch=" .. encode(touch),
  "last_touch=" .. encode(touch),
}, "&")

-- The embed script's key: 12 hex digits of Date.now(), then 20 random ones. wrk's Lua has only
-- a clock in seconds, so the milliseconds are the request counter's last three digits: keys
-- made in one second spread over that second's range (less ordered than browsers' keys).
local function idem()
  local ms = os.time() * 1000 + counter % 1000
  return string.format("%012x%05x%05x%05x%05x", ms, math.random(0, 0xfffff), math.random(0, 0xfffff),
    math.random(0, 0xfffff), math.random(0, 0xfffff))
end

local first_names = { "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah",
  "Sophia", "Lucas", "Mia", "Mateo", "Isla", "Hugo", "Freya", "Arjun", "Yuki", "Chloe", "Omar",
  "Lena", "Sven", "Priya", "Diego", "Zoe" }
local suffixes = { "Ltd", "GmbH", "Inc", "LLC", "SAS", "BV", "Group", "Labs" }

-- A capitalised word of 4-9 random letters.
local function word()
  local t = { string.char(65 + math.random(0, 25)) }
  for i = 2, math.random(4, 9) do t[i] = string.char(97 + math.random(0, 25)) end
  return table.concat(t)
end

request = function()
  counter = counter + 1
  local email = string.format("%s%05x.%s-%d-%d@bench.example.com", string.char(97 + math.random(0, 25)),
    math.random(0, 0xfffff), prefix, tid, counter)
  local name = first_names[math.random(#first_names)] .. " " .. word()
  local company = word() .. " " .. suffixes[math.random(#suffixes)]
  local body = string.format("name=%s&company=%s&email=%s&%s&_elapsed_ms=%d&_idem=%s",
    encode(name), encode(company), encode(email), static, 6000 + counter % 5000, idem())
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded;charset=UTF-8",
    ["Accept"] = "application/json",
    ["Origin"] = "https://example.com",
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  }
  if xff then
    local n = (counter * 7 + tid * 13) % 100000
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
  end
  return wrk.format("POST", "/v1/forms/contact/submissions", headers, body)
end
