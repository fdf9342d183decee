import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { VallignusError } from "../errors.js";
import { FailureLatch } from "./failure-latch.js";
import { LinkedFileLock } from "./file-lock.js";
import { JournalFile } from "./journal-file.js";
import { OWN_PROCESS } from "./process-identity.js";
import { TurnBatcher, type BatchTarget } from "./turn-batcher.js";

const root = mkdtempSync(join(tmpdir(), "vallignus-batcher-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A batcher over a real file and lock, whose lines are the items; it records what happened. */
function harness(options: { failWrite?: boolean } = {}) {
  const dir = mkdtempSync(join(root, "d-"));
  const path = join(dir, "journal.jsonl");
  const lockPath = join(dir, ".lock");
  const file = JournalFile.open(path, "create", "ERR_AUDIT_WRITE");
  assert.ok(file !== undefined);
  const lock = new LinkedFileLock(lockPath);
  const failures: VallignusError[] = [];
  const latch = new FailureLatch(
    (err) => new VallignusError("ERR_AUDIT_WRITE", String(err)),
    (err) => failures.push(err),
  );
  const batches: string[][] = [];
  const delivered: string[] = [];
  const rejected: string[] = [];
  const target: BatchTarget<string, number> = {
    write: (items) => {
      if (options.failWrite === true) throw new Error("EIO: i/o error, write");
      batches.push([...items]);
      const size = file.size();
      file.append(Buffer.from(items.map((i) => `${i}\n`).join("")), size);
      return { result: items.length, durable: items.includes("durable") };
    },
    deliver: (items) => delivered.push(...items),
    reject: (items) => rejected.push(...items),
  };
  const batcher = new TurnBatcher({ lock, file, failure: latch, target });
  const close = () => {
    file.close();
    lock.close();
  };
  return { batcher, path, lockPath, batches, delivered, rejected, failures, close };
}

test("what is added in one turn is written as one batch, then delivered", async () => {
  const h = harness();
  for (const item of ["a", "b", "durable", "c"]) h.batcher.add(item);
  assert.deepEqual(h.batches, [], "nothing is written before the turn ends");
  await h.batcher.drain();
  h.batcher.add("d");
  await h.batcher.drain();
  assert.deepEqual(h.batches, [["a", "b", "durable", "c"], ["d"]]);
  assert.deepEqual(h.delivered, ["a", "b", "durable", "c", "d"]);
  assert.equal(readFileSync(h.path, "utf8"), "a\nb\ndurable\nc\nd\n");
  h.close();
});

test("while the lock is held, items wait (the loop free) and go as one batch once it is not", async () => {
  const h = harness();
  // A lock file naming a live process (this one) is a held lock.
  writeFileSync(h.lockPath, `${String(process.pid)} other ${OWN_PROCESS.start ?? ""}\n`);
  h.batcher.add("a");
  // Ten turns of a 10 ms timer (each one proof that the loop is free) add items, then free it.
  let writtenWhileHeld = -1;
  let ticker: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    let ticks = 0;
    ticker = setInterval(() => {
      ticks++;
      if (ticks <= 3) h.batcher.add(`t${String(ticks)}`);
      if (ticks < 10) return;
      writtenWhileHeld = h.batches.length;
      unlinkSync(h.lockPath);
      resolve();
    }, 10);
  });
  clearInterval(ticker);
  await h.batcher.drain();
  assert.equal(writtenWhileHeld, 0, "nothing written under another's lock");
  assert.deepEqual(h.batches, [["a", "t1", "t2", "t3"]]);
  h.close();
});

test("a failed write fails the journal once: onFailure, the batch rejected, later adds refused", async () => {
  const h = harness({ failWrite: true });
  h.batcher.add("a");
  h.batcher.add("b");
  await h.batcher.drain();
  assert.deepEqual(h.rejected, ["a", "b"]);
  assert.equal(h.failures.length, 1);
  assert.match(h.failures[0]?.message ?? "", /EIO/);
  assert.throws(() => {
    h.batcher.add("c");
  }, /EIO/);
  assert.equal(h.failures.length, 1, "told once");
  h.close();
});

test("a journal on a full disk (/dev/full) refuses a write with its code and the errno", () => {
  const file = JournalFile.open("/dev/full", "existing", "ERR_LEDGER_WRITE");
  assert.ok(file !== undefined);
  assert.throws(
    () => {
      file.append(Buffer.from("line\n"), 0);
    },
    (err: unknown) =>
      err instanceof VallignusError &&
      err.code === "ERR_LEDGER_WRITE" &&
      /ENOSPC|no space/i.test(err.message),
  );
  file.close();
});
