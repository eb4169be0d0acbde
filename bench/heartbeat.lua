-- wrk script: POST /api/v2/devices/heartbeat for devices read from
-- requests.tsv ("<token>\t<hardware uuid>" per line), cycling through all of
-- them, each thread starting at a different offset.
local reqs = {}
local idx = 0

function setup(thread)
  thread:set("offset", math.random(1, 100000))
end

function init(args)
  local path = args[1] or "requests.tsv"
  for line in io.lines(path) do
    local tok, hw = line:match("([^\t]+)\t([^\t]+)")
    if tok then
      reqs[#reqs + 1] = wrk.format("POST", "/api/v2/devices/heartbeat",
        {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tok},
        '{"hardware_id":"' .. hw .. '","is_exit_node":false}')
    end
  end
  idx = (tonumber(offset) or 0) % #reqs
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
