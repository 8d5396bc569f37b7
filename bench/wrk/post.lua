-- POST the lines of a file, one request body per line, in turn (wrk 4.x).
-- wrk ... -s post.lua URL -- BODIES_FILE TOKEN PATH
local requests = {}
local next_index = 0

function init(args)
  local path, token, target = args[1], args[2], args[3]
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", target, headers, line)
    end
  end
  if #requests == 0 then
    error("no request bodies in " .. path)
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
