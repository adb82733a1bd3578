-- wrk script: POST /oauth/introspect with a token drawn at random from a file of tokens.
-- Usage: wrk ... -s scripts/introspect.lua URL -- TOKENS_FILE [BASIC_AUTH_B64]
-- Run from the repository root, as scripts/bench.sh does.
dofile("scripts/draw.lua")(1, function(args)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if args[2] then headers["Authorization"] = "Basic " .. args[2] end
  return function(token)
    return wrk.format("POST", "/oauth/introspect", headers, "token=" .. token)
  end
end)

done = dofile("scripts/wrk_report.lua")
