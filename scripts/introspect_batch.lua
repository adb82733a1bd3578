-- wrk script: POST /oauth/introspect/batch with BATCH tokens drawn at random from a file of
-- tokens. Usage: wrk ... -s scripts/introspect_batch.lua URL -- TOKENS_FILE BASIC_AUTH_B64 [BATCH=50]
-- Requests are formatted in init, before the clock starts (see draw.lua); each thread keeps
-- 2,000 of them. Run from the repository root, as scripts/bench-feed.sh does.
local requests = {}
local thread_id = 0

setup = function(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

init = function(args)
  local tokens = {}
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  local batch = tonumber(args[3] or "50")
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. args[2],
  }
  math.randomseed(os.time() * 1000 + (id or 0))
  for i = 1, 2000 do
    local parts = {}
    for j = 1, batch do
      parts[j] = "token=" .. tokens[math.random(#tokens)]
    end
    requests[i] = wrk.format("POST", "/oauth/introspect/batch", headers, table.concat(parts, "&"))
  end
end

request = function()
  return requests[math.random(#requests)]
end

done = dofile("scripts/wrk_report.lua")
