import assert from "node:assert/strict";
import { test } from "node:test";

import type { Gatekeeper, Outcome } from "./judgement.js";
import { RequestRecords } from "./request-records.js";
import { settledWithin } from "./settled-within.js";

function recorder(): Gatekeeper & { outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  return {
    outcomes,
    judge: () => Promise.reject(new Error("not used")),
    denyBody: () => "",
    record: (outcome) => outcomes.push(outcome),
  };
}

const ALLOW = { allow: true, address: "192.0.2.1" } as const;

test("RequestRecords: each request is recorded once, however many times its end is reported", () => {
  const g = recorder();
  const records = new RequestRecords(g);
  const entry = records.begin("http://a.test/", "GET", undefined);
  entry.bytesIn = 10;
  entry.finish(ALLOW, 200);
  entry.finish(ALLOW, 502, "late error");
  const [outcome, ...more] = g.outcomes;
  assert.ok(outcome !== undefined && more.length === 0);
  assert.equal(outcome.status, 200);
  assert.equal(outcome.bytesIn, 10);
});

test("RequestRecords.settled resolves when the last open request ends, not at its bound", async () => {
  const records = new RequestRecords(recorder());
  const a = records.begin("", "GET", undefined);
  const b = records.begin("", "GET", undefined);
  const started = performance.now();
  setImmediate(() => a.finish(ALLOW, 200));
  setImmediate(() => b.finish(ALLOW, 200));
  await records.settled(60_000);
  assert.ok(performance.now() - started < 30_000);
});

test("RequestRecords.settled gives up at its bound; finishAll records the rest as cut off", async () => {
  const g = recorder();
  const records = new RequestRecords(g);
  const judged = records.begin("", "CONNECT", undefined);
  judged.judgement = ALLOW;
  records.begin("", "GET", undefined);
  await records.settled(20);
  assert.equal(g.outcomes.length, 0);
  records.finishAll("closed when the run ended");
  assert.deepEqual(
    g.outcomes.map((o) => [o.judgement.allow, o.status, o.error]),
    [
      [true, 0, "closed when the run ended"],
      [false, 0, "closed when the run ended"],
    ],
  );
  await records.settled(60_000);
});

test("settledWithin waits for every promise, or its bound, whichever is first", async () => {
  let done!: () => void;
  const pending = new Set([new Promise<void>((r) => (done = r)), Promise.reject(new Error("x"))]);
  const started = performance.now();
  await settledWithin(pending, 20);
  assert.ok(performance.now() - started >= 15, "an unsettled promise holds it until the bound");
  setImmediate(done);
  await settledWithin(pending, 60_000);
  await settledWithin(new Set(), 60_000);
});
