import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { Home } from "../authority/index.js";
import type { VallignusError } from "../errors.js";
import { runChildScript, srcModule } from "../storage/run-child-script.js";
import { auditLockPath } from "./audit-log.js";
import {
  AuditLog,
  auditLogPath,
  auditRecordHash,
  GENESIS_HASH,
  readAuditRecords,
  verifyAuditLog,
  type AuditAppendInput,
} from "./index.js";

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function tempHome(): Home {
  const root = mkdtempSync(join(tmpdir(), "vallignus-audit-"));
  roots.push(root);
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  return home;
}

const identity = {
  session_id: "20261126t181500z-ab12cd34",
  agent_id: "support-bot",
  owner: "you@example.com",
  policy_id: "support",
  policy_version: 1,
  jti: "jti-1",
};

function allowed(n: number): AuditAppendInput {
  return {
    ...identity,
    decision: "allow",
    method: "GET",
    scheme: "https",
    host: "api.example.com",
    port: 443,
    path: `/v1/items/${n}`,
    status: 200,
    bytes_in: n,
    bytes_out: 10,
    duration_ms: 5,
  };
}

const fixedClock = () => new Date("2026-11-26T18:15:00.000Z");

function fileLines(home: Home): string[] {
  return readFileSync(auditLogPath(home), "utf8").split("\n").slice(0, -1);
}

test("the first record starts the chain, and every line's hash recomputes", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  const first = log.append(allowed(1));
  const second = log.append(allowed(2));
  log.close();

  assert.equal(first.seq, 1);
  assert.equal(first.prev_hash, GENESIS_HASH);
  assert.equal(first.ts, "2026-11-26T18:15:00.000Z");
  assert.equal(second.seq, 2);
  assert.equal(second.prev_hash, first.hash);
  const lines = fileLines(home);
  assert.equal(lines.length, 2);
  for (const line of lines) {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    assert.equal(parsed["hash"], auditRecordHash(parsed));
  }
  assert.equal(statSync(auditLogPath(home)).mode & 0o777, 0o600);
});

test("a line reads ts, seq, session_id, decision first and the chain last", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  log.append(allowed(1));
  log.append({ event: "run_end", ...identity, exit_status: 0, reason: "exited" });
  log.close();
  const [decision = [], event = []] = fileLines(home).map((l) =>
    Object.keys(JSON.parse(l) as object),
  );
  assert.deepEqual(decision.slice(0, 4), ["ts", "seq", "session_id", "decision"]);
  assert.deepEqual(decision.slice(-2), ["prev_hash", "hash"]);
  assert.deepEqual(event.slice(0, 4), ["ts", "seq", "session_id", "event"]);
});

test("a given ts is kept; a caller's seq, prev_hash and hash are not trusted", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  const forged = { ...allowed(1), ts: "2026-01-01T00:00:00.000Z", seq: 99, hash: "f".repeat(64) };
  const record = log.append(forged);
  log.close();
  assert.equal(record.ts, "2026-01-01T00:00:00.000Z");
  assert.equal(record.seq, 1);
  assert.equal(record.prev_hash, GENESIS_HASH);
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 1 });
});

test("two logs open on one home interleave into one contiguous chain", () => {
  const home = tempHome();
  const a = AuditLog.open(home, fixedClock);
  const b = AuditLog.open(home, fixedClock);
  for (let i = 0; i < 10; i++) (i % 3 === 0 ? b : a).append(allowed(i));
  a.close();
  b.close();
  assert.deepEqual(
    readAuditRecords(home).map((r) => r.seq),
    Array.from({ length: 10 }, (_, i) => i + 1),
  );
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 10 });
});

test("appending after an incomplete last line is refused and writes nothing", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  log.append(allowed(1));
  appendFileSync(auditLogPath(home), '{"ts":"2026-11-26T18:15:00.000Z","seq":2');
  const before = readFileSync(auditLogPath(home), "utf8");
  assert.throws(() => log.append(allowed(2)), { code: "ERR_AUDIT_CHAIN_BROKEN" });
  assert.equal(readFileSync(auditLogPath(home), "utf8"), before);
  log.close();
});

test("a log deleted while open is recreated, not written into the deleted file", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  log.append(allowed(1));
  unlinkSync(auditLogPath(home));
  log.append(allowed(2));
  log.close();
  const records = readAuditRecords(home);
  assert.deepEqual(
    records.map((r) => [r.seq, r.prev_hash]),
    [[1, GENESIS_HASH]],
  );
});

test("a closed log refuses to append", () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  log.close();
  log.close();
  assert.throws(() => log.append(allowed(1)), { code: "ERR_AUDIT_CLOSED" });
});

// Each child waits for the `go` file so that both append at the same time.
const CHILD_SCRIPT = `
const { AuditLog } = await import(process.env.AUDIT_MODULE);
const { Home } = await import(process.env.AUTHORITY_MODULE);
const { existsSync } = await import("node:fs");
const name = process.env.CHILD_NAME;
const log = AuditLog.open(new Home(process.env.HOME_ROOT));
process.stdout.write("ready\\n");
const pause = new Int32Array(new SharedArrayBuffer(4));
while (!existsSync(process.env.GO_FILE)) Atomics.wait(pause, 0, 0, 1);
for (let i = 0; i < 200; i++) {
  log.append({
    session_id: name, agent_id: "a", owner: "o", policy_id: "p", policy_version: 1, jti: "j",
    decision: "allow", method: "GET", scheme: "https", host: "h.test", port: 443,
    path: "/" + i, status: 200, bytes_in: i, bytes_out: 0, duration_ms: 0,
  });
}
log.close();
`;

function spawnAppender(home: Home, name: string, goFile: string) {
  const here = fileURLToPath(new URL(".", import.meta.url));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", CHILD_SCRIPT],
    {
      env: {
        ...process.env,
        AUDIT_MODULE: pathToFileURL(join(here, "index.ts")).href,
        AUTHORITY_MODULE: pathToFileURL(join(here, "../authority/index.ts")).href,
        HOME_ROOT: home.root,
        CHILD_NAME: name,
        GO_FILE: goFile,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const ready = new Promise<void>((resolve) => {
    child.stdout.once("data", () => {
      resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve)).then(
    (code) => {
      assert.equal(code, 0, stderr);
    },
  );
  return { ready, exited };
}

test("two processes appending 200 records each at once make one chain of 400", async () => {
  const home = tempHome();
  const goFile = join(home.root, "..", "go");
  const children = [spawnAppender(home, "first", goFile), spawnAppender(home, "second", goFile)];
  await Promise.all(children.map((c) => c.ready));
  writeFileSync(goFile, "");
  await Promise.all(children.map((c) => c.exited));

  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 400 });
  const records = readAuditRecords(home);
  assert.deepEqual(
    records.map((r) => r.seq),
    Array.from({ length: 400 }, (_, i) => i + 1),
  );
  for (const name of ["first", "second"]) {
    const mine = records.filter((r) => r.session_id === name);
    // Each process's own records keep their order.
    assert.deepEqual(
      mine.map((r) => ("bytes_in" in r ? r.bytes_in : -1)),
      Array.from({ length: 200 }, (_, i) => i),
    );
  }
});

/**
 * Starts a process that holds the audit lock the CLI's way for `ms`; `held` resolves once it
 * does. Just before letting go it counts the log's lines, so what was written under its lock is
 * measured by the holder itself.
 */
function holdLockElsewhere(home: Home, ms: number) {
  return runChildScript(`
    import { readFileSync } from "node:fs";
    import { withFileLock } from ${srcModule("storage/index.ts")};
    withFileLock(${JSON.stringify(auditLockPath(home))}, () => {
      process.stdout.write("held\\n");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${String(ms)});
      const lines = readFileSync(${JSON.stringify(auditLogPath(home))}, "utf8").split("\\n").length - 1;
      process.stdout.write("lines " + lines + "\\n");
    });
  `);
}

test("while another process holds the audit lock 1.5 s, the event loop keeps serving", async () => {
  const home = tempHome();
  const log = AuditLog.open(home, fixedClock);
  log.enqueue(allowed(0));
  await log.drain();
  const holder = holdLockElsewhere(home, 1500);
  await holder.firstLine;

  // A 10 ms timer stands for the proxy's traffic: how late does it fire while records queue?
  let worstLagMs = 0;
  let last = performance.now();
  let n = 1;
  const ticker = setInterval(() => {
    const now = performance.now();
    worstLagMs = Math.max(worstLagMs, now - last - 10);
    last = now;
    if (n <= 50) log.enqueue(allowed(n++));
  }, 10);
  const { code, stdout } = await holder.exited;
  clearInterval(ticker);
  await log.drain();
  log.close();

  assert.equal(code, 0);
  assert.ok(worstLagMs < 200, `the event loop stalled ${worstLagMs.toFixed(0)} ms`);
  assert.match(stdout, /^held\nlines 1\n$/, "nothing was written under another's lock");
  assert.ok(n > 1, "records were queued while the lock was held");
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: n });
});

test("a failed write calls onFailure once, and the log refuses every later record", async () => {
  const home = tempHome();
  // Every write to /dev/full fails with ENOSPC, as on a full disk.
  symlinkSync("/dev/full", auditLogPath(home));
  const failures: VallignusError[] = [];
  const log = AuditLog.open(home, fixedClock, { onFailure: (err) => failures.push(err) });
  log.enqueue(allowed(1));
  log.enqueue(allowed(2), true);
  await log.drain();
  const [first, ...more] = failures;
  assert.ok(first !== undefined && more.length === 0, "told once");
  assert.equal(first.code, "ERR_AUDIT_WRITE");
  assert.match(first.message, /ENOSPC|no space/i);
  assert.throws(() => log.enqueue(allowed(3)), { code: "ERR_AUDIT_WRITE" });
  assert.throws(() => log.append(allowed(4)), { code: "ERR_AUDIT_WRITE" });
  await log.drain();
  log.close();
  assert.equal(failures.length, 1, "told once");
});
