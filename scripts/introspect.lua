-- wrk script: POST /oauth/introspect with a token drawn at random from a file of tokens.
-- Usage: wrk ... -s scripts/introspect.lua URL -- TOKENS_FILE [BASIC_AUTH_B64]
local tokens = {}
local auth = nil
local thread_id = 0

setup = function(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

init = function(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  auth = args[2]
  math.randomseed(os.time() * 1000 + (id or 0))
end

request = function()
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if auth then headers["Authorization"] = "Basic " .. auth end
  return wrk.format("POST", "/oauth/introspect", headers, "token=" .. tokens[math.random(#tokens)])
end

-- Run from the repository root, as scripts/bench.sh does.
done = dofile("scripts/wrk_report.lua")
