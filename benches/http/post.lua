-- wrk script: POST a 1 KiB JSON body to PATH, with an Idempotency-Key chosen
-- by MODE: "none" (no key), "fresh" (a new key per request), "replay" (one key).
local path = os.getenv("BENCH_PATH") or "/orders"
local mode = os.getenv("MODE") or "none"
local items = {}
for i = 1, 44 do items[i] = '{"sku":"abc","qty":1}' end
local body = '{"items":[' .. table.concat(items, ",") .. ']}'
body = body .. string.rep(" ", 1024 - #body)
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
