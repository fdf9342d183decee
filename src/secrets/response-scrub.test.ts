import assert from "node:assert/strict";
import { test } from "node:test";

import { createScrubber } from "./response-scrub.js";

const KEY = "sk-proj-REALvalue0123456789";
const STAND_IN = "sk-proj-STANDin0123456789ab";

/** All output of the scrubber for `chunks`, and what each push returned. */
function run(
  pairs: { value: string; replacement: string }[],
  chunks: string[],
): { text: string; pushed: string[] } {
  const scrubber = createScrubber(pairs);
  const pushed = chunks.map((c) => scrubber.push(Buffer.from(c)).toString());
  return { text: pushed.join("") + scrubber.end().toString(), pushed };
}

/** [why, pairs, stream, expected output]. */
const cases: [string, { value: string; replacement: string }[], string, string][] = [
  [
    "a value in an error message",
    [{ value: KEY, replacement: STAND_IN }],
    `{"error":"Incorrect API key provided: ${KEY}."}\n`,
    `{"error":"Incorrect API key provided: ${STAND_IN}."}\n`,
  ],
  [
    "a value twice, back to back",
    [{ value: KEY, replacement: STAND_IN }],
    `${KEY}${KEY}`,
    `${STAND_IN}${STAND_IN}`,
  ],
  [
    "two values",
    [
      { value: KEY, replacement: STAND_IN },
      { value: "ghp_OTHERvalue0123456789", replacement: "ghp_STANDIN" },
    ],
    `a ${KEY} b ghp_OTHERvalue0123456789 c`,
    `a ${STAND_IN} b ghp_STANDIN c`,
  ],
  [
    "overlapping prefixes: the longer value wins where both start",
    [
      { value: "abcdefgh", replacement: "[short]" },
      { value: "abcdefghXYZ", replacement: "[long]" },
    ],
    "1abcdefghXYZ2abcdefgh3abcdefghXY",
    "1[long]2[short]3[short]XY",
  ],
  [
    "a value inside a longer one that does not complete",
    [
      { value: "abcdX", replacement: "[a]" },
      { value: "cd", replacement: "[c]" },
    ],
    "abcdY abcdX",
    "ab[c]Y [a]",
  ],
  [
    "a value whose start repeats inside it",
    [{ value: "aab", replacement: "[x]" }],
    "aaab aaaab",
    "a[x] aa[x]",
  ],
  ["no value present", [{ value: KEY, replacement: STAND_IN }], "data: {}\n\n", "data: {}\n\n"],
  ["no values at all", [], `data: ${KEY}\n\n`, `data: ${KEY}\n\n`],
];

for (const [why, pairs, stream, expected] of cases) {
  test(`createScrubber: ${why}, split at every byte`, () => {
    assert.equal(run(pairs, [stream]).text, expected);
    for (let cut = 0; cut <= stream.length; cut++) {
      const { text } = run(pairs, [stream.slice(0, cut), stream.slice(cut)]);
      assert.equal(text, expected, `split at ${cut}`);
    }
    assert.equal(
      run(
        pairs,
        Array.from(stream, (c) => c),
      ).text,
      expected,
      "one byte per chunk",
    );
  });
}

test("createScrubber: without a value, each chunk comes back as is, nothing held", () => {
  const scrubber = createScrubber([{ value: KEY, replacement: STAND_IN }]);
  for (const text of ["event: message\n", 'data: {"a":1}\n\n', "x", "data: sk\n\n"]) {
    const chunk = Buffer.from(text);
    assert.equal(scrubber.push(chunk), chunk);
  }
  assert.equal(scrubber.end().length, 0);
});

test("createScrubber: only a tail that can begin a value is held back", () => {
  const scrubber = createScrubber([{ value: KEY, replacement: STAND_IN }]);
  assert.equal(scrubber.push(Buffer.from("data: sk-pr")).toString(), "data: ");
  assert.equal(scrubber.push(Buffer.from("oj-nope\n\n")).toString(), "sk-proj-nope\n\n");
  assert.equal(scrubber.push(Buffer.from(`x ${KEY.slice(0, 10)}`)).toString(), "x ");
  assert.equal(scrubber.end().toString(), KEY.slice(0, 10));
});

test("createScrubber: a value split across many chunks never shows in any one output", () => {
  const scrubber = createScrubber([{ value: KEY, replacement: STAND_IN }]);
  const outputs = [
    `data: {"e":"${KEY.slice(0, 5)}`,
    KEY.slice(5, 20),
    `${KEY.slice(20)}"}\n\n`,
  ].map((c) => scrubber.push(Buffer.from(c)).toString());
  const all = outputs.join("") + scrubber.end().toString();
  assert.equal(all, `data: {"e":"${STAND_IN}"}\n\n`);
  // The event's closing blank line goes out with the chunk that carried it.
  assert.ok(outputs[2]?.endsWith("\n\n"));
});

test("createScrubber: a held tail is a copy, not the caller's chunk memory", () => {
  const scrubber = createScrubber([{ value: KEY, replacement: STAND_IN }]);
  const chunk = Buffer.from(`x ${KEY.slice(0, 8)}`);
  assert.equal(scrubber.push(chunk).toString(), "x ");
  chunk.fill(0x2e); // a stream may reuse its buffer once the chunk was handled
  assert.equal(scrubber.push(Buffer.from(KEY.slice(8))).toString(), STAND_IN);
});
