import assert from "node:assert/strict";
import { test } from "node:test";

import { decisionRecord, type RunIdentity } from "./records.js";
import { MAX_AUDIT_TEXT_CHARS } from "./redact-path.js";

const identity: RunIdentity = {
  session_id: "s1",
  agent_id: "a",
  owner: "o",
  policy_id: "p",
  policy_version: 1,
  jti: "0".repeat(32),
};
const line = {
  method: "POST",
  scheme: "https",
  host: "api.openai.com",
  port: 443,
  path: "/v1/x",
} as const;
const end = { status: 403, bytesIn: 0, bytesOut: 0, durationMs: 1 };

test("a model name of megabytes is cut in the record, with a marker; a normal one is kept", () => {
  const huge = "m".repeat(2 * 1024 * 1024);
  const cut = decisionRecord(identity, line, "model_not_allowed", end, { model: huge });
  assert.ok(JSON.stringify(cut).length < MAX_AUDIT_TEXT_CHARS + 1024);
  assert.match(cut.model ?? "", /^m+…\[cut [0-9]+ chars\]$/);
  const kept = decisionRecord(identity, line, undefined, end, {
    model: "gpt-4o",
    provider: "openai",
  });
  assert.equal(kept.model, "gpt-4o");
  assert.equal(kept.provider, "openai");
  assert.equal(kept.decision, "allow");
});

test("an error note is cut to 200 characters", () => {
  const record = decisionRecord(identity, line, "malformed_request", {
    ...end,
    error: "e".repeat(5000),
  });
  assert.equal(record.error?.length, 200);
  assert.equal(record.decision === "deny" && record.deny_reason, "malformed_request");
});
