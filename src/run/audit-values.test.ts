import assert from "node:assert/strict";
import { test } from "node:test";

import type { DecisionFields } from "../audit/index.js";
import { withoutSecretValues } from "./audit-values.js";

const KEY = "sk-proj-Abc123Def456Ghi789Jkl012";
const STARS = "*".repeat(KEY.length);

function record(over: Partial<DecisionFields> & { deny_reason?: string }): DecisionFields {
  return {
    session_id: "s",
    agent_id: "a",
    owner: "o",
    policy_id: "p",
    policy_version: 1,
    jti: "j",
    method: "GET",
    scheme: "http",
    host: "plain.test",
    port: 80,
    path: "/",
    status: 403,
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 0,
    decision: "deny",
    deny_reason: "secret_exfiltration",
    ...over,
  } as DecisionFields;
}

const CASES: [string, Partial<DecisionFields>, string[] | undefined, unknown, unknown][] = [
  // [what, record fields, values, path after, host after]
  ["a value in the path", { path: `/up/${KEY}` }, [KEY], `/up/${STARS}`, "plain.test"],
  [
    "twice, and in another case",
    { path: `/${KEY}/${KEY.toLowerCase()}` },
    [KEY],
    `/${STARS}/${STARS}`,
    "plain.test",
  ],
  [
    "percent-encoded in the path",
    { path: `/up/${KEY.replace("-", "%2D")}` },
    [KEY],
    null,
    "plain.test",
  ],
  [
    "in the host name",
    { host: `${KEY.toLowerCase()}.evil.test` },
    [KEY],
    "/",
    `${STARS}.evil.test`,
  ],
  ["no value: unchanged", { path: "/up/x?k=REDACTED" }, [KEY], "/up/x?k=REDACTED", "plain.test"],
  ["secrets unreadable: path and host go", { path: `/up/${KEY}` }, undefined, null, null],
];

for (const [what, fields, values, path, host] of CASES) {
  test(`a denial's record, ${what}`, () => {
    const out = withoutSecretValues(record(fields), values);
    assert.equal(out.path, path);
    assert.equal(out.host, host);
  });
}

test("a record of any denial is masked: a host the policy does not allow may carry a value", () => {
  const out = withoutSecretValues(
    record({ deny_reason: "domain_not_allowed", path: `/upload/${KEY}` }),
    [KEY],
  );
  assert.equal(out.path, `/upload/${STARS}`);
});

test("an allowed record, and a denial when the authority holds no secret, are left as they are", () => {
  const allowed = record({ decision: "allow", path: `/up/${KEY}` });
  assert.equal(withoutSecretValues(allowed, [KEY]), allowed);
  const other = record({ deny_reason: "secret_wrong_host", path: "/x" });
  assert.equal(withoutSecretValues(other, []), other);
});
