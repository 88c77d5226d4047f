-- wrk script: POST the body in BODY_FILE to BENCH_PATH, with an
-- Idempotency-Key chosen by MODE: "none" (no key), "fresh" (a new key per
-- request), "replay" (the one key run.sh recorded with the same body).
local path = os.getenv("BENCH_PATH") or "/orders"
local mode = os.getenv("MODE") or "none"
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = file:read("*a")
file:close()
local counter = 0
local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))

request = function()
  local headers = { ["Content-Type"] = "application/json" }
  if mode == "fresh" then
    counter = counter + 1
    headers["Idempotency-Key"] = "wrk-" .. run .. "-" .. counter
  elseif mode == "replay" then
    headers["Idempotency-Key"] = "wrk-replayed"
  end
  return wrk.format("POST", path, headers, body)
end
