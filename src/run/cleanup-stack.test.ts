import assert from "node:assert/strict";
import { test } from "node:test";

import { CleanupStack } from "./cleanup-stack.js";

test("unwind releases in reverse order of registration, awaiting each", async () => {
  const stack = new CleanupStack();
  const order: string[] = [];
  stack.defer("folder", () => order.push("folder"));
  stack.defer("proxy", async () => {
    await new Promise((r) => setTimeout(r, 5));
    order.push("proxy");
  });
  stack.defer("child", () => order.push("child"));
  assert.deepEqual(await stack.unwind(), []);
  assert.deepEqual(order, ["child", "proxy", "folder"]);
});

test("a release that throws is reported and the others still run", async () => {
  const stack = new CleanupStack();
  const order: string[] = [];
  stack.defer("audit", () => order.push("audit"));
  stack.defer("ledger", () => {
    throw new Error("disk full");
  });
  stack.defer("timer", () => Promise.reject(new Error("late")));
  const failures = await stack.unwind();
  assert.deepEqual(
    failures.map((f) => f.message),
    ["timer: late", "ledger: disk full"],
  );
  assert.deepEqual(order, ["audit"]);
});

test("each release runs once: a second unwind finds nothing", async () => {
  const stack = new CleanupStack();
  let runs = 0;
  stack.defer("once", () => runs++);
  await stack.unwind();
  await stack.unwind();
  assert.equal(stack.unwindNow().length, 0);
  assert.equal(runs, 1);
});

test("unwindNow runs everything synchronously, starting async releases", () => {
  const stack = new CleanupStack();
  const order: string[] = [];
  stack.defer("sync", () => order.push("sync"));
  stack.defer("async", async () => {
    order.push("async started");
    await Promise.resolve();
    throw new Error("ignored: the process is exiting");
  });
  stack.defer("throws", () => {
    throw new Error("boom");
  });
  const failures = stack.unwindNow();
  assert.deepEqual(order, ["async started", "sync"]);
  assert.deepEqual(
    failures.map((f) => f.message),
    ["throws: boom"],
  );
});
