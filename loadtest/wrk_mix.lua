-- wrk script for `python -m loadtest bench`, target (8): the reference mix. Each request
-- is one of many users (one access token per line of $FLOTILLA_BENCH_TOKENS_FILE), in
-- the order GET, GET, GET, POST per user, users in turn: 3 x GET /api/v1/tasks to
-- 1 x POST /api/v1/tasks {"title": ..., "priority": "high"}. Every request is built once
-- in init, so the generator's per-request cost is a table lookup.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")

local path = "/api/v1/tasks"
local body = '{"title": "bench mix task", "priority": "high"}'
local requests = {}
local counter = 0

init = function(args)
  local file = os.getenv("FLOTILLA_BENCH_TOKENS_FILE")
  if not file then
    error("FLOTILLA_BENCH_TOKENS_FILE is not set")
  end
  for token in io.lines(file) do
    if token ~= "" then
      local auth = "Bearer " .. token
      local get = wrk.format("GET", path, { ["Authorization"] = auth })
      local post = wrk.format("POST", path, { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
      for _, req in ipairs({ get, get, get, post }) do
        requests[#requests + 1] = req
      end
    end
  end
  if #requests == 0 then
    error("no tokens in " .. file)
  end
end

request = function()
  counter = counter % #requests + 1
  return requests[counter]
end
