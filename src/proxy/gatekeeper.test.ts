import assert from "node:assert/strict";
import { test } from "node:test";
import { createSecureContext, type SecureContext } from "node:tls";

import type { DenyReason, PolicyRules } from "../policy/index.js";
import { policyWith } from "../../test/helpers/policy-rules.js";
import { MemoryAudit } from "../../test/helpers/metered-fakes.js";
import type { HostKind } from "./address.js";
import { createGatekeeper, type GatekeeperOptions } from "./gatekeeper.js";
import type { RequestFacts } from "./judgement.js";
import type { SecretSource } from "./ports.js";
import type { ResolvedTarget } from "./resolve.js";

const RULES: Partial<PolicyRules> = {
  allowed_domains: ["allowed.test", "api.openai.com", "1.1.1.1"],
  denied_domains: ["blocked.allowed.test"],
};
const IDENTITY = {
  session_id: "s1",
  agent_id: "bot",
  owner: "you@example.com",
  policy_id: "p",
  policy_version: 3,
  jti: "j1",
};
const PROXY_PORT = 8080;
const LEAF: SecureContext = createSecureContext();

type Answer = ResolvedTarget[] | Error;

/** A gatekeeper over a fake resolver (name → answer) and a settable stop reason. */
function setup(
  over: { rules?: Partial<PolicyRules>; maxRequests?: number; secrets?: SecretSource } = {},
) {
  const audit = new MemoryAudit();
  const answers = new Map<string, Answer>([["allowed.test", [pub("93.184.216.34")]]]);
  const state = {
    stop: undefined as DenyReason | undefined,
    limitHits: 0,
    lookups: 0,
    /** Runs while a name is being resolved: a stop that begins meanwhile. */
    duringLookup: (): void => undefined,
  };
  const options: GatekeeperOptions = {
    identity: IDENTITY,
    policy: policyWith({ ...RULES, ...over.rules }),
    overrides: [],
    maxRequests: over.maxRequests,
    audit,
    stopReason: () => state.stop,
    onRequestLimit: () => state.limitHits++,
    proxyPort: () => PROXY_PORT,
    interceptFor: (host) => (host === "api.openai.com" ? Promise.resolve(LEAF) : undefined),
    ...(over.secrets === undefined ? {} : { secrets: over.secrets }),
    resolve: (host) => {
      state.lookups++;
      state.duringLookup();
      if (host.kind === "ip") return Promise.resolve([pub(host.address)]);
      const answer = host.kind === "name" ? answers.get(host.name) : undefined;
      if (answer instanceof Error) return Promise.reject(answer);
      return Promise.resolve(answer ?? []);
    },
  };
  return { gatekeeper: createGatekeeper(options), audit, answers, state };
}

function pub(address: string, operatorChosen = false): ResolvedTarget {
  return { address, operatorChosen };
}

function facts(host: string, over: Partial<RequestFacts> = {}): RequestFacts {
  const kind: HostKind = /^[\d.]+$/.test(host)
    ? { kind: "ip", address: host, family: 4 }
    : { kind: "name", name: host };
  return { kind: "http", method: "GET", scheme: "http", host: kind, port: 80, path: "/", ...over };
}

const verdict = async (g: ReturnType<typeof setup>, f: RequestFacts) => {
  const j = await g.gatekeeper.judge(f);
  return j.allow ? `allow ${j.address}` : j.reason;
};

/** [name, request, what the gatekeeper answers] */
const policyCases: [string, RequestFacts, string][] = [
  ["an allowed host", facts("allowed.test"), "allow 93.184.216.34"],
  ["an unlisted host", facts("other.test"), "domain_not_allowed"],
  ["a denied subdomain", facts("blocked.allowed.test"), "domain_denied"],
  ["a port the policy does not allow", facts("allowed.test", { port: 8443 }), "port_not_allowed"],
  ["an unlisted IP literal", facts("1.1.1.2"), "ip_literal_not_allowed"],
  ["a listed IP literal", facts("1.1.1.1"), "allow 1.1.1.1"],
  [
    "a host that could not be read",
    { ...facts("x"), host: { kind: "invalid", why: "bad" } },
    "malformed_request",
  ],
  [
    "a metered host over plain HTTP (it is only reached metered)",
    facts("api.openai.com"),
    "malformed_request",
  ],
];

for (const [name, f, expected] of policyCases) {
  test(`gatekeeper: ${name} → ${expected}`, async () => {
    const g = setup();
    g.answers.set("api.openai.com", [pub("93.184.216.35")]);
    assert.equal(await verdict(g, f), expected);
  });
}

test("gatekeeper: every address of the answer is checked; one private address refuses it all", async () => {
  const g = setup();
  g.answers.set("allowed.test", [pub("93.184.216.34"), pub("10.0.0.5")]);
  assert.equal(await verdict(g, facts("allowed.test")), "private_address");
  g.answers.set("allowed.test", [pub("169.254.169.254")]);
  assert.equal(await verdict(g, facts("allowed.test")), "private_address");
  g.answers.set("allowed.test", []);
  assert.equal(await verdict(g, facts("allowed.test")), "malformed_request");
});

test("gatekeeper: private addresses pass when the policy allows them, or the operator chose them", async () => {
  const open = setup({ rules: { allow_private_networks: true } });
  open.answers.set("allowed.test", [pub("10.0.0.5")]);
  assert.equal(await verdict(open, facts("allowed.test")), "allow 10.0.0.5");
  const chosen = setup();
  chosen.answers.set("allowed.test", [pub("127.0.0.1", true)]);
  assert.equal(await verdict(chosen, facts("allowed.test", { port: 80 })), "allow 127.0.0.1");
});

test("gatekeeper: the proxy's own port on loopback is never a destination", async () => {
  const g = setup({
    rules: { allow_private_networks: true, allowed_domains: ["allowed.test:8080"] },
  });
  g.answers.set("allowed.test", [pub("127.0.0.1", true)]);
  assert.equal(await verdict(g, facts("allowed.test", { port: PROXY_PORT })), "private_address");
  g.answers.set("allowed.test", [pub("::1", true)]);
  assert.equal(await verdict(g, facts("allowed.test", { port: PROXY_PORT })), "private_address");
});

for (const stop of [
  "token_revoked",
  "token_expired",
  "agent_disabled",
  "budget_exceeded",
  "request_limit_exceeded",
] as const) {
  test(`gatekeeper: a stopping run denies with its reason (${stop}), before resolving`, async () => {
    const g = setup();
    g.state.stop = stop;
    assert.equal(await verdict(g, facts("allowed.test")), stop);
    assert.equal(g.state.lookups, 0);
  });
}

test("gatekeeper: a stop that begins while the name resolves denies, and gives the slot back", async () => {
  const g = setup({ maxRequests: 5 });
  g.state.duringLookup = () => {
    g.state.stop = "token_revoked";
  };
  assert.equal(await verdict(g, facts("allowed.test")), "token_revoked");
  assert.equal(g.gatekeeper.allowedCount(), 0);
});

test("gatekeeper: the request limit counts allowed requests; the next one ends the run", async () => {
  const g = setup({ maxRequests: 2 });
  assert.equal(await verdict(g, facts("allowed.test")), "allow 93.184.216.34");
  assert.equal(await verdict(g, facts("allowed.test")), "allow 93.184.216.34");
  assert.equal(g.state.limitHits, 0);
  assert.equal(await verdict(g, facts("allowed.test")), "request_limit_exceeded");
  assert.equal(g.state.limitHits, 1);
  assert.equal(g.gatekeeper.allowedCount(), 2);
});

test("gatekeeper: the policy's max_requests is a limit too, the lower one wins", async () => {
  const g = setup({ rules: { max_requests: 1 }, maxRequests: 5 });
  assert.equal(await verdict(g, facts("allowed.test")), "allow 93.184.216.34");
  assert.equal(await verdict(g, facts("allowed.test")), "request_limit_exceeded");
});

test("gatekeeper: concurrent requests cannot together pass the limit", async () => {
  const g = setup({ maxRequests: 2 });
  const all = await Promise.all([1, 2, 3, 4].map(() => verdict(g, facts("allowed.test"))));
  assert.deepEqual(all.filter((v) => v.startsWith("allow")).length, 2);
  assert.equal(g.gatekeeper.allowedCount(), 2);
});

test("gatekeeper: a request denied after resolving gives its slot back", async () => {
  const g = setup({ maxRequests: 1 });
  g.answers.set("allowed.test", [pub("10.0.0.1")]);
  assert.equal(await verdict(g, facts("allowed.test")), "private_address");
  g.answers.set("allowed.test", new Error("lookup of allowed.test timed out"));
  await assert.rejects(g.gatekeeper.judge(facts("allowed.test")), /timed out/);
  assert.equal(g.gatekeeper.allowedCount(), 0);
  g.answers.set("allowed.test", [pub("93.184.216.34")]);
  assert.equal(await verdict(g, facts("allowed.test")), "allow 93.184.216.34");
});

test("gatekeeper: a metered tunnel is intercepted and counts nothing itself (its calls count)", async () => {
  const g = setup({ maxRequests: 1 });
  g.answers.set("api.openai.com", [pub("93.184.216.35")]);
  const tunnel = facts("api.openai.com", {
    kind: "connect",
    method: "CONNECT",
    scheme: "https",
    port: 443,
    path: "",
  });
  const j = await g.gatekeeper.judge(tunnel);
  assert.ok(j.allow);
  assert.equal(j.intercept, LEAF);
  assert.equal(g.gatekeeper.allowedCount(), 0);
  assert.equal(g.gatekeeper.takeRequestSlot(), undefined);
  assert.equal(g.gatekeeper.takeRequestSlot(), "request_limit_exceeded");
  assert.equal(g.state.limitHits, 1);
});

test("gatekeeper: each finished request is one decision line with identity and redacted path", () => {
  const g = setup();
  const f = facts("allowed.test", { path: "/x?key=secret" });
  const end = { rawTarget: "", method: "GET", status: 200, bytesIn: 5, bytesOut: 1, durationMs: 3 };
  g.gatekeeper.record({ ...end, facts: f, judgement: { allow: true, address: "93.184.216.34" } });
  g.gatekeeper.record({
    ...end,
    facts: undefined,
    judgement: { allow: false, reason: "malformed_request" },
    status: 403,
    error: "x".repeat(500),
  });
  assert.deepEqual(g.audit.records[0], {
    ...IDENTITY,
    decision: "allow",
    method: "GET",
    scheme: "http",
    host: "allowed.test",
    port: 80,
    path: "/x?key=REDACTED",
    status: 200,
    bytes_in: 5,
    bytes_out: 1,
    duration_ms: 3,
  });
  assert.deepEqual(g.audit.records[1], {
    ...IDENTITY,
    decision: "deny",
    deny_reason: "malformed_request",
    method: "GET",
    scheme: null,
    host: null,
    port: null,
    path: null,
    status: 403,
    bytes_in: 5,
    bytes_out: 1,
    duration_ms: 3,
    error: "x".repeat(200),
  });
});

test("gatekeeper: the 403 body carries the six contract fields", () => {
  const g = setup();
  const body = JSON.parse(g.gatekeeper.denyBody("domain_not_allowed")) as Record<string, unknown>;
  assert.deepEqual(
    { ...body, message: undefined },
    {
      decision: "deny",
      agent_id: "bot",
      owner: "you@example.com",
      policy_id: "p",
      policy_version: 3,
      deny_reason: "domain_not_allowed",
      message: undefined,
    },
  );
});

test("gatekeeper: request rules judge a plain-HTTP request by method and path, query ignored", async () => {
  const g = setup({ rules: { allow_requests: ["GET allowed.test/ok/*"] } });
  assert.equal(
    await verdict(g, facts("allowed.test", { path: "/ok/x?y=1" })),
    "allow 93.184.216.34",
  );
  assert.equal(await verdict(g, facts("allowed.test", { path: "/no" })), "request_not_allowed");
  const post = facts("allowed.test", { method: "POST", path: "/ok/x" });
  assert.equal(await verdict(g, post), "request_not_allowed");
  assert.equal(
    await verdict(g, facts("allowed.test", { path: "/ok/%2e%2e" })),
    "malformed_request",
  );
});

test("gatekeeper: a tunnel to an IP whose requests must be seen is refused, not passed unseen", async () => {
  const connect = { kind: "connect", method: "CONNECT", path: "", port: 443 } as const;
  const ruled = setup({ rules: { allow_requests: ["GET 1.1.1.1/x"] } });
  assert.equal(await verdict(ruled, facts("1.1.1.1", connect)), "request_not_allowed");
  const inspected = setup({ rules: { inspect_hosts: ["1.1.1.1"] } });
  assert.equal(await verdict(inspected, facts("1.1.1.1", connect)), "request_not_allowed");
  assert.equal(await verdict(setup(), facts("1.1.1.1", connect)), "allow 1.1.1.1");
});

test("gatekeeper: a host name that carries a secret's value or stand-in is refused, naming it", async () => {
  const value = "sk-proj-0123456789abcdefghij0123456789";
  const secrets: SecretSource = {
    snapshot: () => ({ usable: [], values: [{ name: "OPENAI_API_KEY", value }] }),
  };
  const g = setup({ rules: { allowed_domains: ["*.allowed.test"] }, secrets });
  const judged = await g.gatekeeper.judge(facts(`${value.toLowerCase()}.allowed.test`));
  assert.deepEqual(judged.allow ? judged : { reason: judged.reason, secret: judged.secret }, {
    reason: "secret_exfiltration",
    secret: "OPENAI_API_KEY",
  });
});
