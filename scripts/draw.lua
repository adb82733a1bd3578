-- Shared by the wrk scripts that send, per request, one of a file of tokens drawn at random.
--
--   dofile("scripts/draw.lua")(TOKENS_ARG, prepare)
--
-- TOKENS_ARG is the position of the tokens file among the script's arguments; prepare(args)
-- returns a function that turns one token into a request. Every request is formatted in init,
-- before the clock starts: wrk shares the two cores with the server under test, so the less Lua
-- it runs per request, the more of the machine the server gets (the wrk manual recommends the
-- same for scripted requests).
return function(tokens_arg, prepare)
  local requests = {}
  local thread_id = 0

  setup = function(thread)
    thread:set("id", thread_id)
    thread_id = thread_id + 1
  end

  init = function(args)
    local format = prepare(args)
    for line in io.lines(args[tokens_arg]) do
      requests[#requests + 1] = format(line)
    end
    math.randomseed(os.time() * 1000 + (id or 0))
  end

  request = function()
    return requests[math.random(#requests)]
  end
end
