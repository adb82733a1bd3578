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

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
