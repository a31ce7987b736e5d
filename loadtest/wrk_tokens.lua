-- wrk script for `python -m loadtest connections` and `scale`: one request per user in
-- turn, many users' tokens. Each line of $FLOTILLA_BENCH_TOKENS_FILE is "<token>" or
-- "<token> <user id>". $FLOTILLA_BENCH_METHOD is GET (default) or POST (a new task);
-- $FLOTILLA_BENCH_PATH (default /api/v1/tasks) may hold "{user}", replaced by the
-- line's user id. Every request is built once in init, so the generator's per-request
-- cost is a table lookup.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")

local method = os.getenv("FLOTILLA_BENCH_METHOD") or "GET"
local template = os.getenv("FLOTILLA_BENCH_PATH") or "/api/v1/tasks"
local body = '{"title": "scale task", "priority": "medium"}'
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
      local headers = { ["Authorization"] = "Bearer " .. token }
      if method == "POST" then
        headers["Content-Type"] = "application/json"
        requests[#requests + 1] = wrk.format("POST", path, headers, body)
      else
        requests[#requests + 1] = wrk.format(method, path, headers)
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
