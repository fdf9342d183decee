// Request rules (issue 13) end to end: curl under the built `vallignus run`, against a plain
// HTTP origin, an HTTPS origin named in --inspect-hosts, and one that only rules name (it is
// inspected all the same). A request passes only if an allow rule matches it and no deny rule
// does; a path that cannot be judged is malformed_request; nothing denied reaches the origin.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { secretsHarness, type ProbeCase, type SecretsHarness } from "./helpers/secret-harness.js";

const INSPECTED = "rules-tls.test";
/** Named by rules only, not in --inspect-hosts. */
const RULED = "auto.test";
/** Allowed, named by no rule and not inspected: an opaque tunnel. */
const TUNNELLED = "tunnel.test";

let s: SecretsHarness;
let token = "";

before(async () => {
  s = await secretsHarness("vallignus-rules-", [INSPECTED, RULED, TUNNELLED]);
  token = s.policy("rules", [
    ...["--inspect-hosts", s.hostPorts[INSPECTED] ?? ""],
    ...["--allow-requests", "GET plain.test/v1/items/*,POST plain.test/v1/upload"],
    // The flag may repeat; hosts without a port apply to every port.
    ...["--allow-requests", "* plain.test/open/**"],
    ...["--allow-requests", `GET ${INSPECTED}/repos/acme/*,GET ${RULED}/ok`],
    ...["--deny-requests", "* plain.test/open/secret/**"],
  ]);
});

after(() => s.close());

/** [method, host, path, expected: "allow" or the deny reason]; every path its own. */
type Case = readonly [string, string, string, string];

const CASES: readonly Case[] = [
  ["GET", "plain.test", "/v1/items/1", "allow"],
  ["GET", "plain.test", "/v1/items/", "allow"],
  ["GET", "plain.test", "/v1/items/3?page=2&next=/v1/other", "allow"],
  ["GET", "plain.test", "/v1/%69tems/4", "allow"],
  ["GET", "plain.test", "/v1/items/5/more", "request_not_allowed"],
  ["GET", "plain.test", "/v1/other", "request_not_allowed"],
  ["GET", "plain.test", "/v1/elsewhere?to=/v1/items/6", "request_not_allowed"],
  ["GET", "plain.test", "/V1/items/7", "request_not_allowed"],
  ["POST", "plain.test", "/v1/items/8", "request_not_allowed"],
  ["HEAD", "plain.test", "/v1/items/9", "request_not_allowed"],
  ["POST", "plain.test", "/v1/upload", "allow"],
  ["GET", "plain.test", "/v1/upload", "request_not_allowed"],
  ["GET", "plain.test", "/open", "allow"],
  ["DELETE", "plain.test", "/open/a/b/c", "allow"],
  ["GET", "plain.test", "/open/secret", "request_not_allowed"],
  ["PUT", "plain.test", "/open/secret/x", "request_not_allowed"],
  ["GET", "plain.test", "/v1/items/a%2Fb", "malformed_request"],
  ["GET", "plain.test", "/v1/items/a%2fc", "malformed_request"],
  ["GET", "plain.test", "/v1/items/%2e%2e/open/x", "malformed_request"],
  ["GET", "plain.test", "/open/../v1/other", "malformed_request"],
  ["GET", "plain.test", "/open/./y", "malformed_request"],
  ["GET", INSPECTED, "/repos/acme/widgets", "allow"],
  ["GET", INSPECTED, "/repos/acme/gadgets?q=1", "allow"],
  ["GET", INSPECTED, "/repos/other/widgets", "request_not_allowed"],
  ["POST", INSPECTED, "/repos/acme/posted", "request_not_allowed"],
  ["GET", INSPECTED, "/repos/acme/a%2Fb", "malformed_request"],
  ["GET", INSPECTED, "/repos/acme/%2E%2E", "malformed_request"],
  ["GET", RULED, "/ok", "allow"],
  ["GET", RULED, "/ok/not", "request_not_allowed"],
  ["GET", RULED, "/ok%2F", "malformed_request"],
];

const urlOf = (host: string, path: string) =>
  `${host === "plain.test" ? "http" : "https"}://${s.hostPorts[host] ?? host}${path}`;

/** curl as a user writes it, with --path-as-is so that dot segments are sent as they stand. */
function curlCase([method, host, path]: Case): ProbeCase {
  const how =
    method === "HEAD"
      ? ["-I"]
      : method === "POST"
        ? ["-d", "x=1"]
        : method === "GET"
          ? []
          : ["-X", method];
  return {
    name: `${method} ${host}${path}`,
    kind: "curl",
    args: ["--path-as-is", ...how, urlOf(host, path)],
  };
}

/**
 * A path with its unreserved characters percent-decoded: the proxy may log and forward a path
 * in either form, and both mean the same.
 */
const unreserved = (path: string) =>
  path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return /^[A-Za-z0-9._~-]$/.test(char) ? char : escape;
  });

/** The path as the audit log writes it: query values redacted. */
const audited = (path: string) => unreserved(path.replace(/=[^&]*/g, "=REDACTED"));

test("rules decide each request on plain HTTP and inspected hosts; denials are audited and never sent", async () => {
  const probes = CASES.map(curlCase);
  const { result, out } = await s.probe(token, [
    ...probes,
    { name: "tunnel", kind: "curl", args: [urlOf(TUNNELLED, "/opaque")] },
  ]);
  assert.equal(result.status, 0, result.stderr);
  const audit = s.h.auditLines().filter((l) => l["decision"] !== undefined);
  for (const [i, c] of CASES.entries()) {
    const [method, host, path, expected] = c;
    const name = probes[i]?.name ?? "";
    const got = out[name];
    const line = audit.filter(
      (l) => l["method"] === method && unreserved(String(l["path"])) === audited(path),
    );
    assert.equal(line.length, 1, `one audit line for ${name}`);
    const entry = line[0] ?? {};
    if (expected === "allow") {
      assert.equal(got?.status, 200, `${name}: ${JSON.stringify(got)}`);
      assert.equal(entry["decision"], "allow", name);
      continue;
    }
    assert.equal(got?.status, 403, `${name}: ${JSON.stringify(got)}`);
    if (method !== "HEAD") {
      const body = JSON.parse(got.body) as Record<string, unknown>;
      assert.equal(body["deny_reason"], expected, name);
      assert.equal(body["decision"], "deny", name);
    }
    assert.equal(entry["decision"], "deny", name);
    assert.equal(entry["deny_reason"], expected, name);
    assert.equal(entry["host"], host, name);
  }
  // The origins saw exactly the allowed requests, in order, and nothing else.
  const allowed = CASES.filter((c) => c[3] === "allow").map(
    ([method, host, path]) => `${method} ${s.hostPorts[host] ?? ""} ${unreserved(path)}`,
  );
  assert.deepEqual(
    s.origins.hits.map((h) => `${h.method} ${h.host} ${unreserved(h.url)}`),
    allowed,
  );
  // A host no rule names and not inspected stays an opaque tunnel: curl meets the origin's own
  // certificate, which only the proxy was told to trust, so it refuses it.
  assert.equal(out["tunnel"]?.status, 0, JSON.stringify(out["tunnel"]));
  assert.match(out["tunnel"].err ?? "", /certificate/);
});

test("rules are validated at create-policy: a bad method, glob or host is a clear error", () => {
  for (const [flag, rule] of [
    ["--allow-requests", "get plain.test/x"],
    ["--allow-requests", "GET plain.test/a/../b"],
    ["--allow-requests", "GET plain.test/a?b"],
    ["--allow-requests", "GET plain.test/a**"],
    ["--deny-requests", "GET *.com/x"],
    ["--deny-requests", "GET plain.test"],
  ] as const) {
    const r = s.cli([
      ...["auth", "create-policy", "--policy-id", "bad-rule", "--max-spend-usd", "1"],
      ...["--allowed-domains", "plain.test", flag, rule],
    ]);
    assert.equal(r.status, 2, `${rule}: ${r.stderr}`);
    assert.match(r.stderr, /^vallignus: .+ \[ERR_[A-Z_]+\]\n$/, rule);
  }
});
