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

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
