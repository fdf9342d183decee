import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Home } from "../authority/home.js";
import { ledgerJournalPath, readLedgerSummary, recoverDeadReservations } from "./ledger.js";
import {
  children,
  deadPid,
  forgeLine,
  HOME_MODULE,
  journalLines,
  LEDGER_MODULE,
  META,
  openTracked,
  replayJournal,
  REPO,
  tempHome,
  tempRoot,
} from "./ledger-test-support.js";

// ---------------------------------------------------------------------------------------------
// Across processes

function workerScript(dir: string): string {
  const path = join(dir, "worker.mjs");
  writeFileSync(
    path,
    `import { existsSync } from "node:fs";
import { Home } from ${JSON.stringify(HOME_MODULE)};
import { openLedger } from ${JSON.stringify(LEDGER_MODULE)};

const [root, sessionId, budget, amountSpec, count, goFile, settle] = process.argv.slice(2);
const ledger = openLedger(new Home(root), {
  jti: "shared", agentId: "agent", policyId: "policy", policyVersion: 1,
  budgetNano: Number(budget), owner: { sessionId, pid: process.pid },
});
process.stdout.write("ready\\n");
while (!existsSync(goFile)) await new Promise((r) => setTimeout(r, 2));
const results = [];
for (let i = 0; i < Number(count); i++) {
  const amount = amountSpec === "random" ? 1 + Math.floor(Math.random() * 60) : Number(amountSpec);
  const r = ledger.reserve(amount, { provider: "openai", model: "m" });
  let actual = null;
  if (r.ok && settle === "settle" && i % 2 === 0) {
    actual = Math.floor(amount / 2);
    ledger.settle(r.id, actual);
  }
  results.push({ ok: r.ok, amount, actual });
}
ledger.close();
process.stdout.write(JSON.stringify(results) + "\\n");
`,
  );
  return path;
}

interface Spawned {
  readonly child: ChildProcess;
  /** Resolves with everything the child wrote once it has exited. */
  readonly done: Promise<{ stdout: string; code: number | null; signal: string | null }>;
  /** Resolves when the child's stdout contains `text`. */
  waitFor(text: string): Promise<string>;
}

function spawnTs(script: string, args: string[]): Spawned {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  const waiters: { text: string; resolve: (s: string) => void }[] = [];
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    for (const w of waiters.filter((w) => stdout.includes(w.text))) w.resolve(stdout);
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<{ stdout: string; code: number | null; signal: string | null }>(
    (resolve) => {
      child.on("exit", (code, signal) => {
        if (code !== 0 && signal === null) console.error(stderr);
        resolve({ stdout, code, signal });
      });
    },
  );
  return {
    child,
    done,
    waitFor: (text) =>
      new Promise((resolve, reject) => {
        if (stdout.includes(text)) {
          resolve(stdout);
          return;
        }
        waiters.push({ text, resolve });
        void done.then(() => {
          reject(new Error(`child exited before printing ${text}: ${stderr}`));
        });
      }),
  };
}

interface WorkerResult {
  ok: boolean;
  amount: number;
  actual: number | null;
}

async function runWorkers(
  home: Home,
  budget: number,
  amountSpec: string,
  settle: boolean,
): Promise<WorkerResult[]> {
  const dir = tempRoot();
  const script = workerScript(dir);
  const goFile = join(dir, "go");
  const workers = [1, 2, 3, 4].map((n) =>
    spawnTs(script, [
      home.root,
      `worker-${n}`,
      String(budget),
      amountSpec,
      "50",
      goFile,
      settle ? "settle" : "hold",
    ]),
  );
  // All four are ready (ledger open) before any reserves, so the reserves really race.
  await Promise.all(workers.map((w) => w.waitFor("ready\n")));
  writeFileSync(goFile, "");
  const outputs = await Promise.all(workers.map((w) => w.done));
  return outputs.flatMap(({ stdout, code }) => {
    assert.equal(code, 0);
    const last = stdout.trim().split("\n").at(-1) ?? "[]";
    return JSON.parse(last) as WorkerResult[];
  });
}

test("4 processes x 50 reserves of 10 on a budget of 1000: exactly 100 succeed", async () => {
  const home = tempHome();
  const results = await runWorkers(home, 1000, "10", false);
  assert.equal(results.length, 200);
  assert.equal(results.filter((r) => r.ok).length, 100);
  const summary = readLedgerSummary(home, "shared");
  assert.equal(summary?.reservedNano, 1000);
  assert.equal(summary.spentNano, 0);
  assert.equal(summary.openReservations, 100);
  const replay = replayJournal(journalLines(home, "shared"));
  assert.equal(replay.reservations, 100);
  assert.equal(replay.reserved, 1000);
  // The workers have exited without settling: the next open charges all of it, in full.
  const ledger = openTracked(home, {
    jti: "shared",
    agentId: "agent",
    policyId: "policy",
    budgetNano: 1000,
  });
  assert.equal(ledger.recovered.length, 100);
  assert.deepEqual(ledger.state(), {
    budgetNano: 1000,
    spentNano: 1000,
    reservedNano: 0,
    leftNano: 0,
    calls: 100,
    openReservations: 0,
  });
});

test("4 processes x 50 reserves of random amounts never together exceed the budget", async () => {
  const home = tempHome();
  const budget = 3000;
  const results = await runWorkers(home, budget, "random", true);
  const granted = results.filter((r) => r.ok);
  assert.ok(granted.length > 0 && granted.length < 200, "the budget ran out part way");
  const lines = journalLines(home, "shared");
  const replay = replayJournal(lines);
  // Every acknowledged reservation and settle is in the journal; nothing else is.
  assert.equal(replay.reservations, granted.length);
  const reservedAmounts = lines.filter((l) => l["type"] === "reserve").map((l) => l["amount_nano"]);
  assert.equal(
    reservedAmounts.reduce((a, b) => (a as number) + (b as number), 0),
    granted.reduce((a, r) => a + r.amount, 0),
  );
  const settled = granted.filter((r) => r.actual !== null);
  const summary = readLedgerSummary(home, "shared");
  assert.ok(summary !== undefined);
  assert.equal(summary.calls, settled.length);
  assert.equal(
    summary.spentNano,
    settled.reduce((a, r) => a + (r.actual ?? 0), 0),
  );
  assert.ok(summary.spentNano + summary.reservedNano <= budget);
  assert.equal(summary.spentNano, replay.spent);
  assert.equal(summary.reservedNano, replay.reserved);
});

function holderScript(dir: string): string {
  const path = join(dir, "holder.mjs");
  writeFileSync(
    path,
    `import { Home } from ${JSON.stringify(HOME_MODULE)};
import { openLedger } from ${JSON.stringify(LEDGER_MODULE)};

const [root, sessionId, amount] = process.argv.slice(2);
const ledger = openLedger(new Home(root), {
  jti: "jti-1", agentId: "support-bot", policyId: "support", policyVersion: 1,
  budgetNano: 1000, owner: { sessionId, pid: process.pid },
});
const r = ledger.reserve(Number(amount), { provider: "anthropic", model: "claude" });
process.stdout.write(JSON.stringify(r) + "\\n");
// Mid-stream: the reservation is open and this process never settles it.
setInterval(() => {}, 1000);
`,
  );
  return path;
}

test("kill -9 before settling: the next open charges the reservation in full; a live one is kept", async () => {
  const home = tempHome();
  const script = holderScript(tempRoot());
  const doomed = spawnTs(script, [home.root, "doomed", "300"]);
  const alive = spawnTs(script, [home.root, "alive", "200"]);
  await Promise.all([doomed.waitFor("\n"), alive.waitFor("\n")]);

  // Both owners are alive: opening charges nothing.
  const before = openTracked(home);
  assert.deepEqual(before.recovered, []);
  assert.equal(before.state().reservedNano, 500);
  assert.deepEqual(recoverDeadReservations(home), []);

  doomed.child.kill("SIGKILL");
  assert.equal((await doomed.done).signal, "SIGKILL");
  const after_ = openTracked(home, { owner: { sessionId: "s-next", pid: process.pid } });
  assert.deepEqual(
    after_.recovered.map((r) => [r.sessionId, r.amountNano, r.pid]),
    [["doomed", 300, doomed.child.pid]],
  );
  assert.deepEqual(after_.state(), {
    budgetNano: 1000,
    spentNano: 300,
    reservedNano: 200,
    leftNano: 500,
    calls: 1,
    openReservations: 1,
  });
  // The earlier open sees the recovery too.
  assert.equal(before.state().spentNano, 300);

  alive.child.kill("SIGKILL");
  await alive.done;
  const recovered = recoverDeadReservations(home, "jti-1");
  assert.deepEqual(
    recovered.map((r) => [r.jti, r.sessionId, r.amountNano]),
    [["jti-1", "alive", 200]],
  );
  assert.equal(after_.state().spentNano, 500);
  assert.equal(after_.state().reservedNano, 0);
});

test("a reservation whose owner pid is gone, or reused, or from another boot, is charged", () => {
  const home = tempHome();
  const gone = openTracked(home, { owner: { sessionId: "gone", pid: deadPid() } });
  assert.ok(gone.reserve(100, META).ok);
  gone.close();
  const path = ledgerJournalPath(home, "jti-1");
  const base = {
    type: "reserve",
    amount_nano: 50,
    provider: "openai",
    model: "m",
    session_id: "forged",
    ts: "2026-11-26T18:15:00.000Z",
  };
  const bootId = existsSync("/proc/sys/kernel/random/boot_id")
    ? readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    : null;
  const procfs = existsSync("/proc/self/stat");
  // Our own, live pid, but stamped with another start time: the pid was reused.
  appendFileSync(
    path,
    forgeLine({ seq: 2, id: "r2", ...base, pid: process.pid, pid_start: "1", boot_id: bootId }),
  );
  // Our own pid, from another boot.
  appendFileSync(
    path,
    forgeLine({ seq: 3, id: "r3", ...base, pid: process.pid, pid_start: null, boot_id: "x" }),
  );
  // Our own pid, no stamps at all: alive, kept.
  appendFileSync(
    path,
    forgeLine({ seq: 4, id: "r4", ...base, pid: process.pid, pid_start: null, boot_id: null }),
  );
  const recovered = recoverDeadReservations(home).map((r) => r.id);
  const expected = ["r1"];
  if (procfs) expected.push("r2");
  if (bootId !== null) expected.push("r3");
  assert.deepEqual(recovered, expected);
  const summary = readLedgerSummary(home, "jti-1");
  assert.equal(summary?.reservedNano, 50 * (5 - 1 - expected.length));
  assert.equal(summary.openReservations, 4 - expected.length);
});
