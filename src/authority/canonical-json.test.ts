import assert from "node:assert/strict";
import { test } from "node:test";

import { canonicalJson, policyContentHash, sha256Hex } from "./canonical-json.js";

test("canonicalJson: key order does not change the text", () => {
  assert.equal(canonicalJson({ b: 1, a: 2, c: 3 }), canonicalJson({ c: 3, a: 2, b: 1 }));
  assert.equal(canonicalJson({ b: 1, a: 2 }), '{"a":2,"b":1}');
});

test("canonicalJson: nested objects are sorted too", () => {
  assert.equal(
    canonicalJson({ z: { y: 1, x: { b: true, a: null } }, a: "s" }),
    '{"a":"s","z":{"x":{"a":null,"b":true},"y":1}}',
  );
});

test("canonicalJson: arrays keep their order, and objects inside them are sorted", () => {
  assert.equal(canonicalJson([3, 1, 2]), "[3,1,2]");
  assert.equal(canonicalJson([{ b: 1, a: 2 }, "x"]), '[{"a":2,"b":1},"x"]');
  assert.notEqual(canonicalJson(["a", "b"]), canonicalJson(["b", "a"]));
});

test("canonicalJson: no whitespace, whatever the formatting of the source", () => {
  const pretty = JSON.parse('{\n  "b" : [ 1 , 2 ],\n  "a" : { }\n}') as unknown;
  assert.equal(canonicalJson(pretty), '{"a":{},"b":[1,2]}');
});

test("canonicalJson: keys are sorted by code unit, not by locale", () => {
  assert.equal(canonicalJson({ a: 1, B: 2, é: 3, _: 4 }), '{"B":2,"_":4,"a":1,"é":3}');
});

test("canonicalJson: strings are escaped as JSON.stringify escapes them", () => {
  assert.equal(canonicalJson({ 'k"': 'a"b\n' }), '{"k\\"":"a\\"b\\n"}');
});

test("canonicalJson: undefined members are left out", () => {
  assert.equal(canonicalJson({ a: 1, b: undefined }), '{"a":1}');
});

test("sha256Hex: the known digest of the empty string", () => {
  assert.equal(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});

const doc = {
  policy_id: "support",
  version: 1,
  allowed_domains: ["api.openai.com", "*.example.com"],
  max_spend_usd: "5",
};

test("policyContentHash: ignores the sha256 field", () => {
  const bare = policyContentHash(doc);
  assert.equal(policyContentHash({ ...doc, sha256: bare }), bare);
  assert.equal(policyContentHash({ ...doc, sha256: "0".repeat(64) }), bare);
});

test("policyContentHash: is the sha256 of the canonical JSON of the other fields", () => {
  assert.equal(policyContentHash({ ...doc, sha256: "x" }), sha256Hex(canonicalJson(doc)));
});

test("policyContentHash: does not depend on key order", () => {
  const reordered = {
    max_spend_usd: "5",
    allowed_domains: ["api.openai.com", "*.example.com"],
    version: 1,
    policy_id: "support",
  };
  assert.equal(policyContentHash(reordered), policyContentHash(doc));
});

test("policyContentHash: changes when any other field changes", () => {
  const base = policyContentHash(doc);
  assert.notEqual(policyContentHash({ ...doc, max_spend_usd: "6" }), base);
  assert.notEqual(policyContentHash({ ...doc, version: 2 }), base);
  assert.notEqual(
    policyContentHash({ ...doc, allowed_domains: ["*.example.com", "api.openai.com"] }),
    base,
  );
});
