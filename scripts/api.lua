-- wrk script: GET PATH with "Authorization: Bearer <token>", the token drawn at random from a
-- file of tokens. Usage: wrk ... -s scripts/api.lua URL -- PATH TOKENS_FILE
--
-- The same requests go to /api/public and /api/protected, header and all, so the two runs
-- differ only in what the server does with the token. Run from the repository root, as
-- scripts/bench-api.sh does.
dofile("scripts/draw.lua")(2, function(args)
  return function(token)
    return wrk.format("GET", args[1], { ["Authorization"] = "Bearer " .. token })
  end
end)

done = dofile("scripts/wrk_report.lua")
