-- wrk script: optional spread keys (/k/N) and a machine-readable summary
-- with the percentiles wrk's --latency does not print (p99.9).
-- Only the spread workload defines request(): without it wrk sends one
-- pre-built request and spends no Lua per request, keeping the load tool's
-- core (shared with the replicas) as free as possible. With it, each thread
-- builds 100,000 random /k/N requests once (init) and request() hands them
-- out in turn: formatting a request per call would cost the load tool's
-- core more than some proxies do.
if os.getenv("SPREAD") == "1" then
  local threads = 0
  setup = function(thread)
    threads = threads + 1
    thread:set("seed", threads)
  end

  local requests, count, next_request = {}, 100000, 0
  init = function(args)
    math.randomseed(7919 * (seed or 1))
    for i = 1, count do
      requests[i] = wrk.format("GET", "/k/" .. math.random(1, 100000))
    end
  end

  request = function()
    next_request = next_request % count + 1
    return requests[next_request]
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
