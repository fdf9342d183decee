import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_TIMER_DELAY_MS, setLongTimeout, type TimerHost } from "./long-timer.js";

/** A clock that only moves when the test says so, and the timers set against it. */
function fakeTimers() {
  let now = 0;
  let nextId = 0;
  const pending = new Map<number, { at: number; fn: () => void; ms: number }>();
  const host: TimerHost = {
    setTimeout: (fn, ms) => {
      const id = nextId++;
      pending.set(id, { at: now + ms, fn, ms });
      return id;
    },
    clearTimeout: (id) => {
      pending.delete(id as number);
    },
    now: () => now,
  };
  /** Moves the clock to `to`, firing due timers in order (as late as `lateBy` ms each). */
  const advance = (to: number, lateBy = 0): void => {
    for (;;) {
      const due = [...pending.entries()]
        .filter(([, t]) => t.at <= to)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (due === undefined) break;
      pending.delete(due[0]);
      now = Math.min(to, due[1].at + lateBy);
      due[1].fn();
    }
    now = to;
  };
  return { host, advance, pending };
}

const DAY = 24 * 3600 * 1000;

test("a 30-day delay fires after 30 days, not at once, and no link overflows", () => {
  const { host, advance, pending } = fakeTimers();
  let fired = 0;
  setLongTimeout(() => fired++, 30 * DAY, host);
  for (const t of pending.values()) assert.ok(t.ms <= MAX_TIMER_DELAY_MS);
  advance(1);
  assert.equal(fired, 0);
  advance(30 * DAY - 1);
  assert.equal(fired, 0);
  advance(30 * DAY);
  assert.equal(fired, 1);
  advance(90 * DAY);
  assert.equal(fired, 1, "fires once");
});

test("links that fire late do not push the deadline back", () => {
  const { host, advance } = fakeTimers();
  let firedAt = -1;
  let clock = 0;
  setLongTimeout(() => (firedAt = clock), 60 * DAY, { ...host, now: () => (clock = host.now()) });
  advance(60 * DAY + 5_000, 1_000);
  assert.ok(firedAt >= 60 * DAY && firedAt <= 60 * DAY + 1_000, `fired at ${firedAt}`);
});

test("short, zero and past delays fire on the next timer, never synchronously", () => {
  for (const delay of [1000, 0, -5]) {
    const { host, advance } = fakeTimers();
    let fired = 0;
    setLongTimeout(() => fired++, delay, host);
    assert.equal(fired, 0, `delay ${delay} fired synchronously`);
    advance(Math.max(0, delay));
    assert.equal(fired, 1, `delay ${delay}`);
  }
});

test("clear() stops the timer at any link", () => {
  const { host, advance, pending } = fakeTimers();
  let fired = 0;
  const timer = setLongTimeout(() => fired++, 50 * DAY, host);
  advance(30 * DAY);
  timer.clear();
  advance(60 * DAY);
  assert.equal(fired, 0);
  assert.equal(pending.size, 0);
});

test("the real timers: a delay over the 32-bit limit does not fire early", async () => {
  let fired = false;
  const timer = setLongTimeout(() => (fired = true), MAX_TIMER_DELAY_MS + 10);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fired, false);
  timer.clear();
});
