import assert from "node:assert/strict";
import { test } from "node:test";

import { capAuditText, MAX_AUDIT_TEXT_CHARS, redactPath } from "./redact-path.js";

const cases: [string, string, string][] = [
  ["no query", "/v1/chat/completions", "/v1/chat/completions"],
  ["root", "/", "/"],
  ["empty (a CONNECT has no path)", "", ""],
  ["one value", "/v1/x?key=abc", "/v1/x?key=REDACTED"],
  ["the contract's example", "/v1/x?key=abc&b=", "/v1/x?key=REDACTED&b=REDACTED"],
  ["empty query", "/v1/x?", "/v1/x?"],
  [
    "bare item without '=' (could be a secret)",
    "/v1/x?stream&alt=json",
    "/v1/x?REDACTED&alt=REDACTED",
  ],
  ["a secret sent as a bare item", "/v1/x?sk-live-0123", "/v1/x?REDACTED"],
  ["value containing '='", "/s?sig=a=b=c", "/s?sig=REDACTED"],
  ["value containing '?'", "/s?next=/a?b=1", "/s?next=REDACTED"],
  ["encoded value", "/s?q=sk%2Dproj%3Dabc", "/s?q=REDACTED"],
  ["repeated keys", "/s?a=1&a=2", "/s?a=REDACTED&a=REDACTED"],
  ["empty pairs kept", "/s?a=1&&b=2", "/s?a=REDACTED&&b=REDACTED"],
  ["fragment stripped", "/docs#section", "/docs"],
  ["fragment after query stripped", "/v1/x?key=abc#frag", "/v1/x?key=REDACTED"],
  ["'?' inside a fragment is not a query", "/a#b?c=d", "/a"],
  ["absolute-form target", "http://h.test/p?token=s3cret", "http://h.test/p?token=REDACTED"],
  ["non-ASCII value", "/p?name=Zoë", "/p?name=REDACTED"],
];

for (const [name, input, expected] of cases) {
  test(`redactPath: ${name}`, () => {
    assert.equal(redactPath(input), expected);
  });
}

test("redactPath: no query value survives, whatever the input", () => {
  const secret = "sk-live-0123456789";
  for (const [, input] of cases) {
    const withSecret = input.includes("?") ? input.replace(/=[^&#]*/g, `=${secret}`) : input;
    assert.ok(!redactPath(withSecret).includes(secret), withSecret);
  }
});

test("redactPath: a path longer than the cap is cut and says so", () => {
  const long = `/${"a".repeat(2 * 1024 * 1024)}`;
  const kept = redactPath(`${long}?k=v`);
  assert.ok(kept.length < MAX_AUDIT_TEXT_CHARS + 40, String(kept.length));
  assert.ok(kept.startsWith("/aaaa"));
  assert.match(kept, /…\[cut [0-9]+ chars\]$/);
  assert.equal(redactPath(`/${"b".repeat(MAX_AUDIT_TEXT_CHARS - 1)}`).length, MAX_AUDIT_TEXT_CHARS);
});

test("capAuditText: short text unchanged, long text cut with the count of what was cut", () => {
  assert.equal(capAuditText("gpt-4o"), "gpt-4o");
  const cut = capAuditText("m".repeat(MAX_AUDIT_TEXT_CHARS + 10));
  assert.equal(cut, `${"m".repeat(MAX_AUDIT_TEXT_CHARS)}…[cut 10 chars]`);
});
