-- wrk through a forward proxy (used by bench/all.ts). wrk itself knows no proxies; this script
-- makes it speak to one: when HTTP_PROXY (or http_proxy) is set, wrk connects to the proxy's
-- address instead of the URL's, and every request carries the absolute-form URL, as a proxy
-- client sends it. Without a proxy, requests go straight to the URL's host. The Host header always
-- names host:port (wrk would send the bare host). At the end, one line "BENCH_JSON {…}" with
-- requests, duration, errors and the p50/p99 latency in microseconds.
local proxy = os.getenv("HTTP_PROXY") or os.getenv("http_proxy")
local authority = wrk.host .. ":" .. wrk.port

if proxy ~= nil and proxy ~= "" then
  local proxy_host, proxy_port = proxy:match("^http://%[?([^%]/]+)%]?:(%d+)/?$")
  if proxy_host == nil then
    error("cannot read the proxy address from " .. proxy)
  end
  wrk.path = "http://" .. authority .. wrk.path
  wrk.resolve = function(_host, _service)
    wrk.addrs = wrk.lookup(proxy_host, proxy_port)
  end
end
wrk.headers["Host"] = authority

function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,' ..
      '"mean_us":%.1f,"proxy":"%s"}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, proxy or ""))
end
