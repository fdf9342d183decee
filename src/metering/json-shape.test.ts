import assert from "node:assert/strict";
import { test } from "node:test";

import { checkJsonShape, MAX_JSON_DEPTH } from "./json-shape.js";

const nested = (depth: number, open = "[", close = "]") => open.repeat(depth) + close.repeat(depth);
const nestedObjects = (depth: number) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);

const DUPLICATE = "request body repeats a key in an object";
const TOO_DEEP = `request body nests deeper than ${MAX_JSON_DEPTH} levels`;
const NOT_JSON = "request body is not valid JSON";

const cases: [string, string, string | undefined][] = [
  // Accepted: what SDKs send.
  ["a chat request", '{"model":"m","messages":[{"role":"user","content":"hi"}]}', undefined],
  ["scalars", '1 "s" true null', undefined],
  ["empty containers", '{"a":{},"b":[],"c":[{}]}', undefined],
  ["equal keys in sibling objects", '[{"a":1},{"a":2}]', undefined],
  ["equal keys at different depths", '{"a":{"a":{"a":1}}}', undefined],
  ["a value equal to a key", '{"a":"a","b":"a"}', undefined],
  ["keys differing only in case", '{"max_tokens":1,"MAX_TOKENS":2}', undefined],
  ["structure characters inside strings", '{"a":"{[,\\"}]","b":"\\\\"}', undefined],
  ["an escaped backslash before the closing quote", '{"a\\\\":1,"a":2}', undefined],
  ["exactly the depth limit, arrays", nested(MAX_JSON_DEPTH), undefined],
  ["exactly the depth limit, objects", nestedObjects(MAX_JSON_DEPTH), undefined],
  // Repeated keys, however they are spelled.
  ["a repeated cost field", '{"max_tokens":1,"model":"m","max_tokens":100000}', DUPLICATE],
  ["a repeated model", '{"model":"cheap","model":"dear"}', DUPLICATE],
  ["a repeat deep inside", '{"m":[{"x":{"k":1,"k":2}}]}', DUPLICATE],
  ["a repeat after a nested object", '{"a":{"b":1},"a":2}', DUPLICATE],
  ["a repeat spelled with a \\u escape", '{"max_tokens":1,"max_\\u0074okens":9}', DUPLICATE],
  ["a repeat spelled with an escaped slash", '{"a/b":1,"a\\/b":2}', DUPLICATE],
  ["the empty key twice", '{"":1,"":2}', DUPLICATE],
  ["__proto__ twice", '{"__proto__":1,"__proto__":2}', DUPLICATE],
  // Too deep: refused before any recursive code sees it.
  ["one past the limit, arrays", nested(MAX_JSON_DEPTH + 1), TOO_DEEP],
  ["one past the limit, objects", nestedObjects(MAX_JSON_DEPTH + 1), TOO_DEEP],
  ["20,000 arrays", nested(20_000), TOO_DEEP],
  ["20,000 objects", nestedObjects(20_000), TOO_DEEP],
  ["opened and never closed", "[".repeat(100_000), TOO_DEEP],
  // Broken text: refused here or by JSON.parse after; never a crash.
  ["an unterminated string", '{"a":"b', NOT_JSON],
  ["a key with a bad escape", '{"\\x":1}', NOT_JSON],
];

for (const [name, text, why] of cases) {
  test(`checkJsonShape: ${name}`, () => {
    const shape = checkJsonShape(text);
    assert.deepEqual(shape, why === undefined ? { ok: true } : { ok: false, why });
  });
}

test("checkJsonShape: linear in the body, even with long runs of escapes", () => {
  // 8 MB of escaped quotes and backslashes: a quadratic scan would not end within the test.
  const body = `{"a":"${'\\"\\\\'.repeat(2_000_000)}","a":1}`;
  assert.deepEqual(checkJsonShape(body), { ok: false, why: DUPLICATE });
  const keys = `{${Array.from({ length: 200_000 }, (_, i) => `"k${i}":${i}`).join(",")}}`;
  assert.deepEqual(checkJsonShape(keys), { ok: true });
});
