import assert from "node:assert/strict";
import { test } from "node:test";

import {
  compilePolicy,
  decideAddresses,
  decideModel,
  decideRequestCount,
  decideTarget,
} from "./decide.js";
import type { PolicyRules } from "./policy-version.js";

const base: PolicyRules = {
  max_spend_usd: "5",
  allowed_domains: [
    "allowed.test",
    "*.wild.test",
    "api.port.test:8443",
    "203.0.113.7",
    "[2001:db8::1]",
  ],
  denied_domains: ["bad.wild.test", "blocked.allowed.test"],
  allowed_models: null,
  max_requests: 3,
  max_runtime_seconds: null,
  allow_private_networks: false,
  prices: {},
  secrets: [],
  inspect_hosts: [],
  allow_requests: [],
  deny_requests: [],
};
const policy = compilePolicy(base);

const cases: [string, string, number, boolean, string][] = [
  ["exact host, port 443", "allowed.test", 443, false, "allow"],
  ["exact host, port 80", "allowed.test", 80, false, "allow"],
  ["exact host, other port", "allowed.test", 8080, false, "port_not_allowed"],
  ["subdomain without wildcard", "api.allowed.test", 443, false, "domain_not_allowed"],
  ["suffix without a dot boundary", "evilallowed.test", 443, false, "domain_not_allowed"],
  ["allowed name as a prefix", "allowed.test.evil.test", 443, false, "domain_not_allowed"],
  ["wildcard subdomain", "a.wild.test", 443, false, "allow"],
  ["wildcard deep subdomain", "a.b.wild.test", 443, false, "allow"],
  ["wildcard does not match its apex", "wild.test", 443, false, "domain_not_allowed"],
  ["denied wins over a wildcard", "bad.wild.test", 443, false, "domain_denied"],
  ["denied pattern without port denies every port", "bad.wild.test", 8443, false, "domain_denied"],
  ["port-narrowed pattern, its port", "api.port.test", 8443, false, "allow"],
  ["port-narrowed pattern, port 443", "api.port.test", 443, false, "port_not_allowed"],
  ["listed IPv4 literal", "203.0.113.7", 443, true, "allow"],
  ["unlisted IPv4 literal", "203.0.113.8", 443, true, "ip_literal_not_allowed"],
  ["listed IPv6 literal", "[2001:db8::1]", 443, true, "allow"],
  ["unlisted IPv6 literal", "[::1]", 443, true, "ip_literal_not_allowed"],
];

for (const [name, host, port, isIpLiteral, expected] of cases) {
  test(`decideTarget: ${name}`, () => {
    const d = decideTarget(policy, { host, port, isIpLiteral });
    assert.equal(d.decision === "allow" ? "allow" : d.reason, expected);
  });
}

test("decideAddresses: a private address is refused unless the policy allows private networks", () => {
  const priv = [{ address: "10.0.0.5", isPrivate: true, operatorChosen: false }];
  assert.deepEqual(decideAddresses(policy, priv), { decision: "deny", reason: "private_address" });
  const open = compilePolicy({ ...base, allow_private_networks: true });
  assert.equal(decideAddresses(open, priv).decision, "allow");
});

test("decideAddresses: a mixed public and private answer is refused whole", () => {
  const mixed = [
    { address: "198.51.100.1", isPrivate: false, operatorChosen: false },
    { address: "127.0.0.1", isPrivate: true, operatorChosen: false },
  ];
  assert.equal(decideAddresses(policy, mixed).decision, "deny");
});

test("decideAddresses: the operator's --resolve choice is exempt", () => {
  const chosen = [{ address: "127.0.0.1", isPrivate: true, operatorChosen: true }];
  assert.equal(decideAddresses(policy, chosen).decision, "allow");
});

test("decideRequestCount: the policy limit and the run limit both apply", () => {
  assert.equal(decideRequestCount(policy, 2).decision, "allow");
  assert.equal(decideRequestCount(policy, 3).decision, "deny");
  assert.equal(decideRequestCount(policy, 1, 1).decision, "deny");
});

test("compilePolicy: 1,000 patterns still decide by index", () => {
  const many = Array.from({ length: 1000 }, (_, i) =>
    i % 2 === 0 ? `host${i}.example.com` : `*.zone${i}.example.org`,
  );
  const big = compilePolicy({ ...base, allowed_domains: many });
  assert.equal(
    decideTarget(big, { host: "host998.example.com", port: 443, isIpLiteral: false }).decision,
    "allow",
  );
  assert.equal(
    decideTarget(big, { host: "a.zone999.example.org", port: 443, isIpLiteral: false }).decision,
    "allow",
  );
  assert.equal(
    decideTarget(big, { host: "host999.example.com", port: 443, isIpLiteral: false }).decision,
    "deny",
  );
});

const listed = compilePolicy({ ...base, allowed_models: ["gpt-4o", "claude-sonnet-4-5"] });
const modelCases: [string, typeof policy, string, string][] = [
  ["no list allows any model", policy, "gpt-4o", "allow"],
  ["no list allows an unknown model", policy, "made-up-model", "allow"],
  ["a listed model", listed, "gpt-4o", "allow"],
  ["another listed model", listed, "claude-sonnet-4-5", "allow"],
  ["a longer name that starts with a listed one", listed, "gpt-4o-mini", "model_not_allowed"],
  ["a listed name in other case", listed, "GPT-4O", "model_not_allowed"],
  ["an unlisted model", listed, "o3", "model_not_allowed"],
  ["the empty name", listed, "", "model_not_allowed"],
];

for (const [name, p, model, expected] of modelCases) {
  test(`decideModel: ${name}`, () => {
    const d = decideModel(p, model);
    assert.equal(d.decision === "allow" ? "allow" : d.reason, expected);
  });
}

test("decideModel: an empty list allows nothing", () => {
  const none = compilePolicy({ ...base, allowed_models: [] });
  assert.deepEqual(decideModel(none, "gpt-4o"), { decision: "deny", reason: "model_not_allowed" });
});
