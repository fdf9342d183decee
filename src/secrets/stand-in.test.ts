import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { makeStandIn, publicPrefix } from "./stand-in.js";

const ALPHANUMERIC = /^[A-Za-z0-9]*$/;

/** [why the case matters, value, kept prefix, length of the random rest]. */
const cases: [string, string, string, number][] = [
  ["OpenAI project key", `sk-proj-${"a1B2".repeat(40)}`, "sk-proj-", 160],
  ["Anthropic key", `sk-ant-api03-${"x".repeat(95)}`, "sk-ant-api03-", 95],
  ["GitHub classic token", `ghp_${"Z".repeat(36)}`, "ghp_", 36],
  ["GitHub fine-grained token", `github_pat_${"Q".repeat(82)}`, "github_pat_", 82],
  ["no separator: no prefix, same length", "A".repeat(40), "", 40],
  ["no separator, short: 32 random", "A".repeat(16), "", 32],
  ["separator beyond the first 16", `${"a".repeat(20)}-${"b".repeat(30)}`, "", 51],
  ["fewer than 16 after the prefix: none kept", `sk-${"c".repeat(15)}`, "", 32],
  ["exactly 16 after the prefix: kept, rest short so 32", `sk-${"c".repeat(16)}`, "sk-", 32],
  ["rest of 21: 32 random", `ghp_${"d".repeat(21)}`, "ghp_", 32],
  ["rest of 22: same length", `ghp_${"d".repeat(22)}`, "ghp_", 22],
  ["the last separator in the window wins", `ab_cd-ef_${"g".repeat(30)}`, "ab_cd-ef_", 30],
];

for (const [why, value, prefix, restLength] of cases) {
  test(`makeStandIn: ${why}`, () => {
    assert.equal(publicPrefix(value), prefix);
    const standIn = makeStandIn(value, randomBytes);
    assert.ok(standIn.startsWith(prefix));
    assert.equal(standIn.length, prefix.length + restLength);
    assert.match(standIn.slice(prefix.length), ALPHANUMERIC);
    assert.notEqual(standIn, value);
    assert.ok(!standIn.includes(value));
  });
}

test("makeStandIn differs per call", () => {
  const value = `sk-proj-${"k".repeat(48)}`;
  const seen = new Set(Array.from({ length: 50 }, () => makeStandIn(value, randomBytes)));
  assert.equal(seen.size, 50);
});

test("makeStandIn maps bytes without bias: bytes 248..255 are redrawn", () => {
  // 248 = 4 × 62: a byte from there on would favour the first eight characters.
  const bytes = [248, 255, 0, 61, 62, 247, 250, 1];
  let at = 0;
  const source = (n: number): Buffer =>
    Buffer.from(Array.from({ length: n }, () => bytes[at++ % bytes.length] ?? 0));
  const standIn = makeStandIn("A".repeat(16), source);
  // 0 -> A, 61 -> 9, 62 -> A, 247 -> 247 % 62 = 61 -> 9, 1 -> B; 248, 255, 250 skipped.
  assert.equal(standIn.slice(0, 5), "A9A9B");
  assert.equal(standIn.length, 32);
});

test("makeStandIn redraws a stand-in that holds the value", () => {
  const value = "A".repeat(32);
  let calls = 0;
  // First draw: all zeros ("AAA…", the value itself); then a real source.
  const source = (n: number): Buffer => (calls++ === 0 ? Buffer.alloc(n) : randomBytes(n));
  const standIn = makeStandIn(value, source);
  assert.notEqual(standIn, value);
  assert.equal(standIn.length, 32);
});

test("makeStandIn refuses a source that keeps repeating the value", () => {
  assert.throws(() => makeStandIn("A".repeat(32), (n) => Buffer.alloc(n)), /repeating/);
});

test("the choice of characters is close to uniform", () => {
  const counts = new Map<string, number>();
  for (let i = 0; i < 200; i++) {
    for (const ch of makeStandIn("A".repeat(16), randomBytes)) {
      counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
  }
  // 6400 draws over 62 characters: about 103 each; every character shows up.
  assert.equal(counts.size, 62);
});
