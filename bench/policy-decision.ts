// Cost of one policy decision over 1,000 patterns (exact and wildcard), in-process.
import { compilePolicy, decideTarget } from "../src/policy/index.js";

const patterns = Array.from({ length: 1000 }, (_, i) =>
  i % 2 === 0 ? `host${i}.example.com` : `*.zone${i}.example.org`,
);
const policy = compilePolicy({
  max_spend_usd: "1",
  allowed_domains: patterns,
  denied_domains: ["blocked.zone1.example.org"],
  allowed_models: null,
  max_requests: null,
  max_runtime_seconds: null,
  allow_private_networks: false,
  prices: {},
  secrets: [],
  inspect_hosts: [],
  allow_requests: [],
  deny_requests: [],
});
const hosts = [
  "host998.example.com",
  "deep.a.b.zone999.example.org",
  "nothing.example.net",
  "blocked.zone1.example.org",
];

function measure(seconds: number): number {
  let ops = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++)
      decideTarget(policy, { host: hosts[i & 3] ?? "", port: 443, isIpLiteral: false });
    ops += 1000;
  }
  return ops / seconds;
}

measure(0.3);
const runs = [measure(1), measure(1), measure(1)].sort((a, b) => a - b);
const median = runs[1] ?? 0;
console.log("| measure | value |");
console.log("| --- | --- |");
console.log(
  `| policy decisions/s (1,000 patterns, median of 3) | ${Math.round(median).toLocaleString("en")} |`,
);
console.log(`| cost per decision | ${(1e6 / median).toFixed(3)} µs |`);
