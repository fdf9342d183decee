import assert from "node:assert/strict";
import { test } from "node:test";

import { policyWith } from "../../test/helpers/policy-rules.js";
import { RequestCounter } from "./request-slots.js";

function counter(policyLimit: number | null, runLimit: number | undefined) {
  const hits = { count: 0 };
  const c = new RequestCounter(
    policyWith({ max_requests: policyLimit }),
    runLimit,
    () => hits.count++,
  );
  return { c, hits };
}

test("RequestCounter: takes up to the limit, then answers request_limit_exceeded and tells the run", () => {
  const { c, hits } = counter(null, 2);
  assert.equal(typeof c.take(), "object");
  assert.equal(typeof c.take(), "object");
  assert.equal(c.take(), "request_limit_exceeded");
  assert.equal(hits.count, 1);
  assert.equal(c.taken, 2);
});

test("RequestCounter: a released slot is free again; releasing twice gives back one", () => {
  const { c } = counter(1, undefined);
  const slot = c.take();
  assert.ok(typeof slot === "object");
  assert.equal(c.take(), "request_limit_exceeded");
  slot.release();
  slot.release();
  assert.equal(c.taken, 0);
  assert.equal(typeof c.take(), "object");
  assert.equal(c.take(), "request_limit_exceeded");
});

test("RequestCounter: held places count against the limit but are not checked", () => {
  const { c, hits } = counter(null, 1);
  const held = c.hold();
  const second = c.hold();
  assert.equal(c.taken, 2);
  assert.equal(c.take(), "request_limit_exceeded");
  held.release();
  second.release();
  assert.equal(typeof c.take(), "object");
  assert.equal(hits.count, 1);
});

test("RequestCounter: without limits every request is taken", () => {
  const { c, hits } = counter(null, undefined);
  for (let i = 0; i < 1000; i++) assert.equal(typeof c.take(), "object");
  assert.equal(c.taken, 1000);
  assert.equal(hits.count, 0);
});
