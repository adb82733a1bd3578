-- wrk script: POST /oauth/token, client_credentials with HTTP Basic authentication.
-- Usage: wrk ... -s scripts/issue.lua URL -- BASIC_AUTH_B64
local auth = nil

init = function(args)
  auth = args[1]
end

request = function()
  return wrk.format("POST", "/oauth/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. auth,
  }, "grant_type=client_credentials&scope=read")
end

-- Run from the repository root, as scripts/bench.sh does.
done = dofile("scripts/wrk_report.lua")
