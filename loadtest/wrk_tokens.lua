-- wrk script for `python -m loadtest bench` (8), `connections` and `scale`: many users'
-- tokens, users in turn. Each line of $FLOTILLA_BENCH_TOKENS_FILE is "<token>" or
-- "<token> <user id>". $FLOTILLA_BENCH_METHOD is the sequence each user sends, e.g. GET
-- (default), POST (a new task) or GET,GET,GET,POST (the reference mix: 3 reads to 1
-- write); $FLOTILLA_BENCH_PATH (default /api/v1/tasks) may hold "{user}", replaced by
-- the line's user id. Every request is built once in init, so the generator's
-- per-request cost is a table lookup.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")

local methods = {}
for m in (os.getenv("FLOTILLA_BENCH_METHOD") or "GET"):gmatch("[^,]+") do
  methods[#methods + 1] = m
end
local template = os.getenv("FLOTILLA_BENCH_PATH") or "/api/v1/tasks"
local body = '{"title": "bench task", "priority": "high"}'
local requests = {}
local counter = 0

init = function(args)
  local file = os.getenv("FLOTILLA_BENCH_TOKENS_FILE")
  if not file then
    error("FLOTILLA_BENCH_TOKENS_FILE is not set")
  end
  for line in io.lines(file) do
    local token, user = line:match("^(%S+)%s*(%S*)")
    if token then
      local path = template:gsub("{user}", user)
      local auth = "Bearer " .. token
      for _, method in ipairs(methods) do
        if method == "POST" then
          local headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
          requests[#requests + 1] = wrk.format("POST", path, headers, body)
        else
          requests[#requests + 1] = wrk.format(method, path, { ["Authorization"] = auth })
        end
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
