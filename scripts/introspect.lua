-- wrk script: POST /oauth/introspect with a token drawn at random from a file of tokens.
-- Usage: wrk ... -s scripts/introspect.lua URL -- TOKENS_FILE [BASIC_AUTH_B64]
--
-- Every request is formatted once, in init, before the clock starts: wrk shares the two cores
-- with the server under test, so the less Lua it runs per request, the more of the machine the
-- server gets (the wrk manual recommends the same for scripted requests).
local requests = {}
local thread_id = 0

setup = function(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

init = function(args)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if args[2] then headers["Authorization"] = "Basic " .. args[2] end
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", "/oauth/introspect", headers, "token=" .. line)
  end
  math.randomseed(os.time() * 1000 + (id or 0))
end

request = function()
  return requests[math.random(#requests)]
end

-- Run from the repository root, as scripts/bench.sh does.
done = dofile("scripts/wrk_report.lua")
