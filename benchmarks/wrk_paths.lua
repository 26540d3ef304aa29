-- wrk request mix for the service benchmark: random known users (recommend) or items (similar).
-- Usage: wrk -s benchmarks/wrk_paths.lua URL -- ENDPOINT IDS_FILE   (ENDPOINT: recommend | similar)
local ids, endpoint = {}, "recommend"

function init(args)
  endpoint = args[1] or "recommend"
  for line in io.lines(args[2]) do ids[#ids + 1] = line end
  math.randomseed(os.time() + math.random(1000))
end

function request()
  local id = ids[math.random(#ids)]
  if endpoint == "similar" then
    return wrk.format("GET", "/v1/similar/" .. id .. "?k=10")
  end
  return wrk.format("GET", "/v1/recommend?user_id=" .. id .. "&k=10")
end
