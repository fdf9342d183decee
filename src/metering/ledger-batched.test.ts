import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { Home } from "../authority/home.js";
import { openLedger, readLedgerSummary, type Ledger, type LedgerState } from "./ledger.js";
import { runChildScript, srcModule } from "../storage/run-child-script.js";
import { deadPid, journalLines, META } from "./ledger-test-support.js";

/** A test with a fresh home and a 1,000-nano ledger in it, removed afterwards. */
function batchTest(name: string, fn: (home: Home, ledger: Ledger) => Promise<void>): void {
  test(name, async () => {
    const { home, cleanup } = batchHome();
    try {
      await fn(home, openBatchLedger(home));
    } finally {
      cleanup();
    }
  });
}

function openBatchLedger(home: Home, budgetNano = 1000): Ledger {
  return openLedger(home, {
    jti: "b".repeat(32),
    agentId: "a",
    policyId: "p",
    policyVersion: 1,
    budgetNano,
    owner: { sessionId: "s", pid: process.pid },
  });
}

batchTest(
  "reserveBatched: one turn's reservations are checked in order and written together",
  async (home, ledger) => {
    const results = await Promise.all([600, 500, 400].map((n) => ledger.reserveBatched(n, META)));
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, false, true],
    );
    assert.equal(ledger.state().reservedNano, 1000);
    const ids = results.flatMap((r) => (r.ok ? [r.id] : []));
    assert.equal(new Set(ids).size, 2);
    // The header, then the two accepted reservations; the refusal wrote nothing.
    assert.equal(journalLines(home, "b".repeat(32)).length, 3);
    const states = await Promise.all(ids.map((id) => ledger.settleBatched(id, 100)));
    assert.equal(states.at(-1)?.spentNano, 200);
    assert.equal(ledger.state().reservedNano, 0);
    ledger.close();
  },
);

batchTest(
  "settleBatched: a turn's settlements go first, so what they free pays its reservations",
  async (home, ledger) => {
    const first = await ledger.reserveBatched(900, META);
    assert.ok(first.ok);
    const [settled, second] = await Promise.all([
      ledger.settleBatched(first.id, 100),
      ledger.reserveBatched(800, META),
    ]);
    assert.equal(settled.spentNano, 100);
    assert.equal(second.ok, true);
    assert.equal(ledger.state().reservedNano, 800);
    ledger.close();
  },
);

batchTest(
  "settleBatched: an unknown reservation fails alone; the rest of its batch is written",
  async (home, ledger) => {
    const [bad, good] = await Promise.allSettled([
      ledger.settleBatched("r99", 1),
      ledger.reserveBatched(10, META),
    ]);
    assert.equal(bad.status, "rejected");
    assert.match(String(bad.reason), /no reservation "r99"/);
    assert.equal(good.status === "fulfilled" && good.value.ok, true);
    assert.equal(ledger.state().reservedNano, 10);
    ledger.close();
  },
);

batchTest(
  "close() writes and syncs what is still queued; drain() waits for it",
  async (home, ledger) => {
    const pending = ledger.reserveBatched(300, META);
    ledger.close();
    const result = await pending;
    assert.equal(result.ok, true);
    const again = openBatchLedger(home);
    assert.equal(again.state().reservedNano, 300);
    const queued = again.reserveBatched(200, META);
    await again.drain();
    // drain() has written and synced the batch, so the reservation's promise has resolved.
    let done = false;
    void queued.then(() => (done = true));
    await Promise.resolve();
    assert.equal(done, true);
    assert.equal(again.state().reservedNano, 500);
    again.close();
  },
);

function batchHome(): { home: Home; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), "vallignus-ledger-batch-"));
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  return { home, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: a long-used token's ledger opens from `ledger/<jti>.fold`, not from line 1.

const BATCH_JTI = "b".repeat(32);
const checkpointPath = (home: Home) => home.path("ledger", `${BATCH_JTI}.fold`);

/** Adds `calls` reserve + settle pairs (2 lines each) in a few batches; leaves one reservation open. */
async function fill(ledger: Ledger, calls: number): Promise<string> {
  const reserved = await Promise.all(
    Array.from({ length: calls }, () => ledger.reserveBatched(1, META)),
  );
  const ids = reserved.flatMap((r) => (r.ok ? [r.id] : []));
  assert.equal(ids.length, calls);
  const open = ids.pop() ?? "";
  await Promise.all(ids.map((id) => ledger.settleBatched(id, 1)));
  return open;
}

/** The state of the journal folded from line 1, the checkpoint out of the way. */
function fullFoldState(home: Home): LedgerState {
  const cp = checkpointPath(home);
  const saved = existsSync(cp) ? readFileSync(cp) : undefined;
  rmSync(cp, { force: true });
  try {
    const ledger = openBatchLedger(home);
    const state = ledger.state();
    ledger.close();
    return state;
  } finally {
    if (saved !== undefined) writeFileSync(cp, saved);
  }
}

batchTest(
  "checkpoint: written on close after 1,000 lines; reopening gives the same state",
  async (home, ledger) => {
    const open = await fill(ledger, 600);
    const before = ledger.state();
    ledger.close();
    assert.ok(existsSync(checkpointPath(home)), "a checkpoint was written");
    const again = openBatchLedger(home);
    assert.deepEqual(again.state(), before);
    // Work goes on from it: a repeated settle of an old id changes nothing, the open one settles,
    // and new reservations get ids after every line.
    assert.deepEqual(again.settle("r1", 5), before);
    assert.equal(again.settle(open, 1).openReservations, 0);
    const next = again.reserve(3, META);
    assert.ok(next.ok && Number(next.id.slice(1)) >= 1199);
    const after = again.state();
    again.close();
    assert.deepEqual(fullFoldState(home), after);
  },
);

batchTest(
  "checkpoint: one that does not match the journal, or is torn, is ignored",
  async (home, ledger) => {
    await fill(ledger, 600);
    ledger.close();
    const cp = checkpointPath(home);
    const good = readFileSync(cp, "utf8");
    const truth = fullFoldState(home);
    // A checkpoint whose state was edited fails its checksum; a torn one too; one naming a line
    // that is not where it says fails the match. Each time the full fold decides.
    const edited = good.replace(
      /"spent":(\d+)/,
      (_, n: string) => `"spent":${String(Number(n) - 100)}`,
    );
    const moved = good.replace(/"size":(\d+)/, (_, n: string) => `"size":${String(Number(n) - 1)}`);
    for (const bad of [edited, good.slice(0, good.length / 2), moved, "garbage\n"]) {
      writeFileSync(cp, bad);
      const again = openBatchLedger(home);
      assert.deepEqual(again.state(), truth);
      again.close();
    }
  },
);

batchTest(
  "checkpoint: a reservation open in it, whose owner died, is recovered",
  async (home, ours) => {
    ours.close();
    const dead = openLedger(home, {
      jti: BATCH_JTI,
      agentId: "a",
      policyId: "p",
      policyVersion: 1,
      budgetNano: 1000,
      owner: { sessionId: "gone", pid: deadPid() },
    });
    await fill(dead, 600);
    dead.close();
    const again = openBatchLedger(home);
    assert.equal(again.recovered.length, 1);
    assert.equal(again.state().openReservations, 0);
    again.close();
    assert.deepEqual(readLedgerSummary(home, BATCH_JTI)?.openReservations, 0);
  },
);

// ---------------------------------------------------------------------------------------------
// The event loop never waits for the lock, and a failed write stops the ledger for good.

batchTest(
  "while another process holds the ledger lock 1.5 s, the event loop keeps serving",
  async (home, ledger) => {
    const lockPath = home.path("ledger", `${BATCH_JTI}.lock`);
    const holder = runChildScript(`
      import { withFileLock } from ${srcModule("storage/index.ts")};
      withFileLock(${JSON.stringify(lockPath)}, () => {
        process.stdout.write("held\\n");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
      });
    `);
    await holder.firstLine;
    const heldAt = performance.now();
    let worstLagMs = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      worstLagMs = Math.max(worstLagMs, now - last - 10);
      last = now;
    }, 10);
    const results = await Promise.all([100, 200, 300].map((n) => ledger.reserveBatched(n, META)));
    const reservedAt = performance.now();
    clearInterval(ticker);
    await holder.exited;
    assert.ok(worstLagMs < 200, `the event loop stalled ${worstLagMs.toFixed(0)} ms`);
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, true, true],
    );
    // Durable only once the holder let go: nothing was written under another's lock.
    assert.ok(reservedAt - heldAt >= 1000, "the reservations waited for the lock");
    assert.equal(ledger.state().reservedNano, 600);
    ledger.close();
  },
);

batchTest(
  "a write that fails (file size limit) calls onFailure once; the ledger refuses from then on",
  async (home, ledger) => {
    ledger.close();
    const child = runChildScript(
      `
      import { Home } from ${srcModule("authority/home.ts")};
      import { openLedger } from ${srcModule("metering/ledger.ts")};
      const failures = [];
      const ledger = openLedger(new Home(${JSON.stringify(home.root)}), {
        jti: ${JSON.stringify(BATCH_JTI)}, agentId: "a", policyId: "p", policyVersion: 1,
        budgetNano: 1000, owner: { sessionId: "s", pid: process.pid },
        onFailure: (err) => failures.push(err.code),
      });
      const outcomes = [];
      for (let i = 0; i < 8; i++) {
        try {
          outcomes.push((await ledger.reserveBatched(1, { provider: "openai", model: "m" })).ok);
        } catch (err) {
          outcomes.push(err.code);
        }
      }
      ledger.close();
      process.stdout.write(JSON.stringify({ failures, outcomes }) + "\\n");
    `,
      // 2 x 512 bytes: the header and a few reservation lines fit, the next write does not.
      2,
    );
    const { code, stdout } = await child.exited;
    assert.equal(code, 0);
    const { failures, outcomes } = JSON.parse(stdout) as {
      failures: string[];
      outcomes: (boolean | string)[];
    };
    assert.deepEqual(failures, ["ERR_LEDGER_WRITE"]);
    const firstFailure = outcomes.indexOf("ERR_LEDGER_WRITE");
    assert.ok(firstFailure > 0, `some reservations fit first: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.slice(0, firstFailure).every((o) => o === true));
    assert.ok(outcomes.slice(firstFailure).every((o) => o === "ERR_LEDGER_WRITE"));
    // The cut-short line was taken back: the journal reads clean, with exactly what succeeded.
    const summary = readLedgerSummary(home, BATCH_JTI);
    assert.equal(summary?.reservedNano, firstFailure);
    assert.ok(readFileSync(home.path("ledger", `${BATCH_JTI}.jsonl`), "utf8").endsWith("\n"));
  },
);
