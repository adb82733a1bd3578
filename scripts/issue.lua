-- wrk script: POST /oauth/token, client_credentials with HTTP Basic authentication.
-- Usage: wrk ... -s scripts/issue.lua URL -- BASIC_AUTH_B64
-- Every request is the same, so it is formatted once, in init.
local req = nil

init = function(args)
  req = wrk.format("POST", "/oauth/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. args[1],
  }, "grant_type=client_credentials&scope=read")
end

request = function()
  return req
end

-- Run from the repository root, as scripts/bench.sh does.
done = dofile("scripts/wrk_report.lua")
