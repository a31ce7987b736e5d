-- wrk script for `python -m loadtest bench`, target (7) without a cache-off setting:
-- GET /api/v1/tasks with a keyset cursor never sent before, so every request misses the
-- cache (the cursor is part of the cache key) and reads PostgreSQL. The cursor points
-- past the newest task (year 2999), so each page is the same first page.
-- FLOTILLA_BENCH_NONCE keeps the cursors of two runs (warm-up, measured) apart.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local nonce = tonumber(os.getenv("FLOTILLA_BENCH_NONCE") or "0") or 0
local counter = 0

-- base64url without padding, as the tasks service's cursors are
local function b64url(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, chars do
      local sextet = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      out[#out + 1] = alphabet:sub(sextet + 1, sextet + 1)
    end
  end
  return table.concat(out)
end

request = function()
  counter = counter + 1
  local raw = string.format('["2999-12-31T23:59:59+00:00","%08x%024x"]', nonce, counter)
  return wrk.format(nil, "/api/v1/tasks?cursor=" .. b64url(raw))
end
