-- wrk script: POST /transactions with a valid body, a bearer token from
-- $TOKEN and a unique Idempotency-Key per request ($RUN_ID, thread, n).
wrk.method = "POST"
wrk.path = "/transactions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"amount":1299,"currency":"EUR","customer_id":"cus_1","reference":"order-42",'
  .. '"payment_method":{"type":"card","number":"4242424242424242","expiry_month":12,'
  .. '"expiry_year":2030,"cvc":"123"},"metadata":{"any":"string values"}}'

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local run = os.getenv("RUN_ID") or "run"
local n = 0
function request()
  n = n + 1
  wrk.headers["Idempotency-Key"] = run .. "-" .. tid .. "-" .. n
  return wrk.format()
end
