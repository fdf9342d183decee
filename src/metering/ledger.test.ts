import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { after, test } from "node:test";

import { Home } from "../authority/home.js";
import { VallignusError } from "../errors.js";
import {
  ledgerJournalPath,
  listLedgers,
  openLedger,
  readLedgerSummary,
  recoverDeadReservations,
  type Ledger,
  type LedgerState,
  type OpenLedgerOptions,
} from "./ledger.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const LEDGER_MODULE = pathToFileURL(fileURLToPath(new URL("./ledger.ts", import.meta.url))).href;
const HOME_MODULE = pathToFileURL(
  fileURLToPath(new URL("../authority/home.ts", import.meta.url)),
).href;

const roots: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "vallignus-ledger-"));
  roots.push(root);
  return root;
}

function tempHome(): Home {
  const home = new Home(join(tempRoot(), "home"));
  home.ensureLayout();
  return home;
}

const META = { provider: "openai", model: "gpt-4o-mini" };

function options(overrides: Partial<OpenLedgerOptions> = {}): OpenLedgerOptions {
  return {
    jti: "jti-1",
    agentId: "support-bot",
    policyId: "support",
    policyVersion: 1,
    budgetNano: 1000,
    owner: { sessionId: "s-test", pid: process.pid },
    now: () => new Date("2026-11-26T18:15:00.000Z"),
    ...overrides,
  };
}

/** Opens a ledger that the test closes at the end, whatever happens. */
const open: Ledger[] = [];
after(() => {
  for (const ledger of open) ledger.close();
});
function openTracked(home: Home, overrides: Partial<OpenLedgerOptions> = {}): Ledger {
  const ledger = openLedger(home, options(overrides));
  open.push(ledger);
  return ledger;
}

/** A pid that certainly belonged to a process that has exited (spawnSync reaps it). */
function deadPid(): number {
  const pid = spawnSync(process.execPath, ["-e", ""]).pid;
  assert.ok(pid > 0);
  return pid;
}

function journalLines(home: Home, jti = "jti-1"): Record<string, unknown>[] {
  return readFileSync(ledgerJournalPath(home, jti), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Encodes a line the way the ledger does, so a test can forge a well-formed one. */
function forgeLine(fields: Record<string, unknown>): string {
  const body = JSON.stringify(fields);
  const ck = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return `${body.slice(0, -1)},"ck":"${ck}"}\n`;
}

/**
 * Replays a journal independently of the ledger's own fold and checks that at no point did
 * spent + reserved exceed the budget through a reservation (settles may overshoot: spent is spent).
 */
function replayJournal(lines: Record<string, unknown>[]): {
  budget: number;
  spent: number;
  reserved: number;
  reservations: number;
} {
  const budget = lines[0]?.["budget_nano"] as number;
  const open = new Map<string, number>();
  let spent = 0;
  let reserved = 0;
  let reservations = 0;
  lines.forEach((line, i) => {
    assert.equal(line["seq"], i);
    if (line["type"] === "reserve") {
      const amount = line["amount_nano"] as number;
      assert.ok(!open.has(line["id"] as string), "reservation ids are unique");
      reserved += amount;
      reservations++;
      assert.ok(spent + reserved <= budget, `line ${i}: ${spent} + ${reserved} > ${budget}`);
      open.set(line["id"] as string, amount);
    } else if (line["type"] === "settle" || line["type"] === "recover") {
      const amount = open.get(line["id"] as string);
      assert.ok(amount !== undefined);
      reserved -= amount;
      spent += (line["actual_nano"] ?? line["charged_nano"]) as number;
      open.delete(line["id"] as string);
    }
  });
  return { budget, spent, reserved, reservations };
}

function assertLedgerError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof VallignusError && err.code === code);
}

// ---------------------------------------------------------------------------------------------

test("reserve and settle keep budget, spent, reserved and left exact", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.deepEqual(ledger.state(), {
    budgetNano: 1000,
    spentNano: 0,
    reservedNano: 0,
    leftNano: 1000,
    calls: 0,
    openReservations: 0,
  });
  const a = ledger.reserve(400, META);
  assert.ok(a.ok);
  assert.deepEqual(a.state, {
    budgetNano: 1000,
    spentNano: 0,
    reservedNano: 400,
    leftNano: 600,
    calls: 0,
    openReservations: 1,
  });
  const b = ledger.reserve(600, META);
  assert.ok(b.ok);
  assert.equal(b.state.leftNano, 0);
  assert.notEqual(a.id, b.id);
  assert.deepEqual(ledger.settle(a.id, 250, { inputTokens: 10, outputTokens: 5 }), {
    budgetNano: 1000,
    spentNano: 250,
    reservedNano: 600,
    leftNano: 150,
    calls: 1,
    openReservations: 1,
  });
  // More than the bound: recorded anyway; left never goes below 0.
  assert.deepEqual(ledger.settle(b.id, 900, { charged_full: true, reason: "over bound" }), {
    budgetNano: 1000,
    spentNano: 1150,
    reservedNano: 0,
    leftNano: 0,
    calls: 2,
    openReservations: 0,
  });
  const settle = journalLines(home).find((l) => l["id"] === a.id && l["type"] === "settle");
  assert.equal(settle?.["input_tokens"], 10);
  assert.equal(settle["output_tokens"], 5);
});

test("a reservation that does not fit is refused and writes nothing", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.ok(ledger.reserve(700, META).ok);
  const size = statSync(ledgerJournalPath(home, "jti-1")).size;
  const refused = ledger.reserve(301, META);
  assert.equal(refused.ok, false);
  assert.equal(refused.state.reservedNano, 700);
  assert.equal(statSync(ledgerJournalPath(home, "jti-1")).size, size);
  assert.ok(ledger.reserve(300, META).ok, "exactly the budget fits");
  assert.equal(ledger.reserve(0, META).ok, true, "a free request fits while nothing is over");
});

test("settle is idempotent per id; an unknown id and a bad amount are errors", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  const r = ledger.reserve(500, META);
  assert.ok(r.ok);
  const first = ledger.settle(r.id, 120);
  const lines = journalLines(home).length;
  assert.deepEqual(ledger.settle(r.id, 999), first);
  assert.deepEqual(ledger.settle(r.id, 120), first);
  assert.equal(journalLines(home).length, lines, "a repeated settle writes nothing");
  assertLedgerError(() => ledger.settle("r99", 1), "ERR_LEDGER_UNKNOWN_RESERVATION");
  assertLedgerError(() => ledger.reserve(-1, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.reserve(1.5, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.reserve(Number.MAX_SAFE_INTEGER + 2, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.settle(r.id, Number.NaN), "ERR_LEDGER_AMOUNT");
});

test("the journal holds the ledger's metadata, one checked line per event, mode 0600", () => {
  const home = tempHome();
  const ledger = openTracked(home, { jti: "abc123", policyVersion: 3, budgetNano: 5_250_000_000 });
  const r = ledger.reserve(10, META);
  assert.ok(r.ok);
  ledger.settle(r.id, 0, { reason: "upstream connect failed" });
  const lines = journalLines(home, "abc123");
  assert.deepEqual(
    { ...lines[0], ck: undefined },
    {
      seq: 0,
      type: "open",
      v: 1,
      jti: "abc123",
      agent_id: "support-bot",
      policy_id: "support",
      policy_version: 3,
      budget_nano: 5_250_000_000,
      created_at: "2026-11-26T18:15:00.000Z",
      ck: undefined,
    },
  );
  assert.deepEqual(
    lines.map((l) => l["type"]),
    ["open", "reserve", "settle"],
  );
  assert.equal(lines[1]?.["session_id"], "s-test");
  assert.equal(lines[1]["pid"], process.pid);
  assert.equal(lines[1]["model"], "gpt-4o-mini");
  for (const line of lines) assert.match(String(line["ck"]), /^[0-9a-f]{16}$/);
  assert.equal(statSync(ledgerJournalPath(home, "abc123")).mode & 0o777, 0o600);
});

test("a second open shares and continues the same state; a different budget is refused", () => {
  const home = tempHome();
  const first = openTracked(home);
  const r = first.reserve(300, META);
  assert.ok(r.ok);
  const second = openTracked(home, { owner: { sessionId: "s-two", pid: process.pid } });
  assert.equal(second.state().reservedNano, 300);
  assert.equal(second.reserve(701, META).ok, false, "the first open's reservation counts");
  assert.ok(second.reserve(700, META).ok);
  assert.equal(first.reserve(1, META).ok, false, "and the second's counts for the first");
  // The first settles its own reservation; the second sees it.
  first.settle(r.id, 100);
  assert.equal(second.state().spentNano, 100);
  first.close();
  second.close();

  const later = openTracked(home);
  assert.deepEqual(later.state(), {
    budgetNano: 1000,
    spentNano: 100,
    reservedNano: 700,
    leftNano: 200,
    calls: 1,
    openReservations: 1,
  });
  assertLedgerError(() => openLedger(home, options({ budgetNano: 2000 })), "ERR_LEDGER_MISMATCH");
  assertLedgerError(() => openLedger(home, options({ policyVersion: 2 })), "ERR_LEDGER_MISMATCH");
  assertLedgerError(() => openLedger(home, options({ agentId: "other" })), "ERR_LEDGER_MISMATCH");
});

test("bad input is refused before anything is written; a closed ledger refuses work", () => {
  const home = tempHome();
  assertLedgerError(() => openLedger(home, options({ jti: "../etc" })), "ERR_LEDGER_INPUT");
  assertLedgerError(() => openLedger(home, options({ policyVersion: 0 })), "ERR_LEDGER_INPUT");
  assertLedgerError(() => openLedger(home, options({ budgetNano: -5 })), "ERR_LEDGER_INPUT");
  assertLedgerError(
    () => openLedger(home, options({ owner: { sessionId: "s", pid: 0 } })),
    "ERR_LEDGER_INPUT",
  );
  assert.deepEqual(listLedgers(home), []);
  const ledger = openLedger(home, options());
  ledger.close();
  assertLedgerError(() => ledger.reserve(1, META), "ERR_LEDGER_CLOSED");
});

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

// ---------------------------------------------------------------------------------------------
// Damage

test("a torn last line (a write cut short) is ignored, then cut off by the next writer", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  const r = ledger.reserve(400, META);
  assert.ok(r.ok);
  ledger.close();
  const path = ledgerJournalPath(home, "jti-1");
  const good = readFileSync(path, "utf8");
  appendFileSync(path, '{"seq":2,"type":"reserve","id":"r2","amount_nano":5');
  // A reader ignores it and leaves the file alone.
  assert.equal(readLedgerSummary(home, "jti-1")?.reservedNano, 400);
  assert.notEqual(readFileSync(path, "utf8"), good);
  // A writer cuts it off before appending, so lines never glue together.
  const again = openTracked(home);
  assert.equal(readFileSync(path, "utf8"), good);
  assert.ok(again.reserve(100, META).ok);
  again.settle(r.id, 400);
  const lines = journalLines(home);
  assert.deepEqual(
    lines.map((l) => l["seq"]),
    [0, 1, 2, 3],
  );
  assert.equal(readLedgerSummary(home, "jti-1")?.spentNano, 400);
});

test("a damaged line that is not an unfinished tail is ERR_LEDGER_CORRUPT, everywhere", () => {
  const cases: [string, (text: string) => string][] = [
    ["a changed amount (checksum)", (t) => t.replace('"amount_nano":400', '"amount_nano":40')],
    ["garbage in the middle", (t) => t.replace(/\n/, "\nnot json at all\n")],
    ["a complete last line with a bad checksum", (t) => `${t}{"seq":3,"ck":"0000000000000000"}\n`],
    [
      "a removed line (seq gap)",
      (t) =>
        t
          .split("\n")
          .filter((_, i) => i !== 1)
          .join("\n"),
    ],
    ["an empty file", () => ""],
  ];
  for (const [name, damage] of cases) {
    const home = tempHome();
    const ledger = openLedger(home, options());
    const r = ledger.reserve(400, META);
    assert.ok(r.ok);
    ledger.settle(r.id, 300);
    ledger.close();
    const path = ledgerJournalPath(home, "jti-1");
    writeFileSync(path, damage(readFileSync(path, "utf8")));
    for (const [what, fn] of [
      ["openLedger", () => openLedger(home, options())],
      ["readLedgerSummary", () => readLedgerSummary(home, "jti-1")],
      ["listLedgers", () => listLedgers(home)],
      ["recoverDeadReservations", () => recoverDeadReservations(home)],
    ] as const) {
      assert.throws(
        fn,
        (err: unknown) => err instanceof VallignusError && err.code === "ERR_LEDGER_CORRUPT",
        `${name}: ${what}`,
      );
    }
  }
});

test("damage appearing under an open ledger stops it for good (fail closed)", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.ok(ledger.reserve(100, META).ok);
  appendFileSync(ledgerJournalPath(home, "jti-1"), "garbage\n");
  assertLedgerError(() => ledger.reserve(1, META), "ERR_LEDGER_CORRUPT");
  assertLedgerError(() => ledger.state(), "ERR_LEDGER_CORRUPT");
});

test("listLedgers summarises every token, oldest first", () => {
  const home = tempHome();
  const a = openTracked(home, {
    jti: "b-token",
    budgetNano: 5_000_000_000,
    now: () => new Date("2026-11-26T10:00:00.000Z"),
  });
  const r = a.reserve(1_000_000, META);
  assert.ok(r.ok);
  a.settle(r.id, 250_000);
  assert.ok(a.reserve(2_000_000, META).ok);
  openTracked(home, {
    jti: "a-token",
    agentId: "other",
    policyVersion: 2,
    now: () => new Date("2026-11-26T11:00:00.000Z"),
  });
  assert.deepEqual(listLedgers(home), [
    {
      jti: "b-token",
      agent_id: "support-bot",
      policy_id: "support",
      policy_version: 1,
      created_at: "2026-11-26T10:00:00.000Z",
      budgetNano: 5_000_000_000,
      spentNano: 250_000,
      reservedNano: 2_000_000,
      leftNano: 4_997_750_000,
      calls: 1,
      openReservations: 1,
    },
    {
      jti: "a-token",
      agent_id: "other",
      policy_id: "support",
      policy_version: 2,
      created_at: "2026-11-26T11:00:00.000Z",
      budgetNano: 1000,
      spentNano: 0,
      reservedNano: 0,
      leftNano: 1000,
      calls: 0,
      openReservations: 0,
    },
  ]);
  assert.equal(readLedgerSummary(home, "missing"), undefined);
});

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
