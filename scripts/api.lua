-- wrk script: GET PATH with "Authorization: Bearer <token>", the token drawn at random from a
-- file of tokens. Usage: wrk ... -s scripts/api.lua URL -- PATH TOKENS_FILE
--
-- The same requests go to /api/public and /api/protected, header and all, so the two runs
-- differ only in what the server does with the token. Requests are formatted in init, before
-- the clock starts (see introspect.lua).
local requests = {}
local thread_id = 0

setup = function(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

init = function(args)
  for line in io.lines(args[2]) do
    requests[#requests + 1] = wrk.format("GET", args[1], { ["Authorization"] = "Bearer " .. line })
  end
  math.randomseed(os.time() * 1000 + (id or 0))
end

request = function()
  return requests[math.random(#requests)]
end

done = dofile("scripts/wrk_report.lua")
