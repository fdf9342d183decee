import assert from "node:assert/strict";
import { test } from "node:test";

import { createSseSplitter } from "./sse-splitter.js";

/** Feeds `chunks` in order, then finishes; returns the events as text and what was left. */
function split(chunks: readonly Buffer[]): { events: string[]; rest: string } {
  const splitter = createSseSplitter();
  const events: string[] = [];
  for (const chunk of chunks) {
    for (const event of splitter.push(chunk)) events.push(event.toString());
  }
  for (const event of splitter.finish()) events.push(event.toString());
  return { events, rest: splitter.rest().toString() };
}

/** Every way of cutting `text` into two chunks, and one byte at a time. */
function cuts(text: string): Buffer[][] {
  const bytes = Buffer.from(text, "utf8");
  const out: Buffer[][] = [];
  for (let i = 0; i <= bytes.length; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  out.push([...bytes].map((b) => Buffer.from([b])));
  return out;
}

const cases: [string, string, string[], string][] = [
  ["LF", "data: a\n\ndata: b\n\n", ["data: a\n\n", "data: b\n\n"], ""],
  ["CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", ["data: a\r\n\r\n", "data: b\r\n\r\n"], ""],
  ["CR alone", "data: a\r\rdata: b\r\r", ["data: a\r\r", "data: b\r\r"], ""],
  [
    "mixed terminators",
    "id: 1\r\ndata: a\n\r\ndata: b\r\n",
    ["id: 1\r\ndata: a\n\r\n"],
    "data: b\r\n",
  ],
  ["a final lone CR ends the event", "data: a\r\r", ["data: a\r\r"], ""],
  ["multi-line event", "event: x\ndata: 1\ndata: 2\n\n", ["event: x\ndata: 1\ndata: 2\n\n"], ""],
  ["an event cut short stays in rest", "data: a\n\ndata: b", ["data: a\n\n"], "data: b"],
  ["leading blank line is an empty event", "\ndata: a\n\n", ["\n", "data: a\n\n"], ""],
];

for (const [name, text, events, rest] of cases) {
  test(`sse splitter: ${name}, however the bytes are cut`, () => {
    for (const chunks of cuts(text)) {
      const where = JSON.stringify(chunks.map((c) => c.toString()));
      assert.deepEqual(split(chunks), { events, rest }, where);
    }
  });
}

test("sse splitter: a CRLF is never split between two events", () => {
  const splitter = createSseSplitter();
  assert.deepEqual(splitter.push(Buffer.from("data: a\r\n\r")), []);
  assert.equal(splitter.pendingBytes(), 10);
  assert.deepEqual(
    splitter.push(Buffer.from("\ndata: b")).map((b) => b.toString()),
    ["data: a\r\n\r\n"],
  );
  assert.equal(splitter.rest().toString(), "data: b");
});

test("sse splitter: multi-byte UTF-8 passes through whole, cut anywhere", () => {
  const text = "data: héllo 🌍\n\n";
  for (const chunks of cuts(text)) assert.deepEqual(split(chunks).events, [text]);
});
