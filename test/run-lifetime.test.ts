import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  CLI,
  errorCode,
  makeQuickstartHome,
  type CliResult,
  type TempHome,
} from "./helpers/cli.js";

import { isRunning, waitFor } from "./helpers/processes.js";

let t: TempHome & { token: string };
/** The pids of the runs this file started: their run folders are ours to look for. */
const ourRuns = new Set<number>();
/** Where every run of this user keeps its folder. */
const RUNS_BASE = join("/tmp", `vallignus-${process.getuid?.() ?? 0}`);

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...t.env, VALLIGNUS_TOKEN: t.token, ...extra };
}

function start(args: string[], extra: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [CLI, "run", ...args], { env: env(extra) });
  if (child.pid !== undefined) ourRuns.add(child.pid);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => {
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
  return { child, done };
}

function run(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return start(args, extra).done;
}

function auditText(): string {
  return readFileSync(join(t.home, "audit", "audit.jsonl"), "utf8");
}

/** The run folders left by runs this file started (other test files run at the same time). */
function runFolders(): string[] {
  if (!existsSync(RUNS_BASE)) return [];
  return readdirSync(RUNS_BASE).filter((name) => {
    try {
      const owner = JSON.parse(readFileSync(join(RUNS_BASE, name, "owner.json"), "utf8")) as {
        pid: number;
      };
      return ourRuns.has(owner.pid);
    } catch {
      return false;
    }
  });
}

/** What a run must never leave behind: its temp folder, lock files, owner stamps. */
function leftovers(): string[] {
  const left = runFolders();
  for (const dir of ["audit", "ledger"]) {
    const path = join(t.home, dir);
    if (!existsSync(path)) continue;
    for (const name of readdirSync(path))
      if (/^\.owner-|\.lock$|\.steal$/.test(name)) left.push(`${dir}/${name}`);
  }
  return left;
}

before(() => {
  t = makeQuickstartHome("allowed.test");
});

after(() => {
  t.cleanup();
});

describe("a start-up step that fails leaves nothing behind", () => {
  let busy: Server;
  let busyPort = 0;
  before(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    busyPort = (busy.address() as { port: number }).port;
    mkdirSync(join(t.root, "a-directory"));
    writeFileSync(join(t.root, "not-pem.txt"), "no certificate here\n");
  });
  after(async () => {
    await new Promise((r) => busy.close(r));
  });

  const cases: [string, () => string[], NodeJS.ProcessEnv, number, string][] = [
    [
      "a missing --upstream-ca",
      () => ["--upstream-ca", join(t.root, "nope.pem")],
      {},
      2,
      "ERR_RUN_UPSTREAM_CA",
    ],
    [
      "an --upstream-ca that is a folder",
      () => ["--upstream-ca", join(t.root, "a-directory")],
      {},
      2,
      "ERR_RUN_UPSTREAM_CA",
    ],
    [
      "an --upstream-ca without a certificate",
      () => ["--upstream-ca", join(t.root, "not-pem.txt")],
      {},
      2,
      "ERR_RUN_UPSTREAM_CA",
    ],
    ["a --port already in use", () => ["--port", String(busyPort)], {}, 1, "ERR_RUN_PORT_IN_USE"],
    [
      "an isolation recipe that does not exist",
      () => ["--isolate"],
      { VALLIGNUS_ISOLATE_METHOD: "none-such" },
      1,
      "ERR_ISOLATE_UNAVAILABLE",
    ],
  ];
  for (const [name, args, extra, status, code] of cases) {
    test(name, async () => {
      const marker = join(t.root, `started-${code}`);
      const r = await run([...args(), "--", "touch", marker], extra);
      assert.equal(r.status, status, r.stderr);
      assert.equal(errorCode(r.stderr), code, r.stderr);
      assert.equal(existsSync(marker), false, "the command never started");
      assert.deepEqual(leftovers(), []);
      // The audit log and the ledger were closed: the next run takes their locks and works.
      const next = await run(["--", "sh", "-c", "exit 0"]);
      assert.equal(next.status, 0, next.stderr);
      assert.deepEqual(leftovers(), []);
    });
  }

  test("a command that cannot be spawned", async () => {
    const r = await run(["--", join(t.root, "no-such-program")]);
    assert.equal(r.status, 127);
    assert.equal(errorCode(r.stderr), "ERR_RUN_SPAWN");
    assert.deepEqual(leftovers(), []);
    assert.match(auditText(), /"event":"run_end".*"exit_status":127/);
    assert.equal((await run(["--", "true"])).status, 0);
  });

  test("a local CA that cannot be read", async () => {
    const ca = join(t.home, "ca");
    renameSync(ca, `${ca}.away`);
    try {
      const r = await run(["--", "true"]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(errorCode(r.stderr), "ERR_CA_MISSING");
      assert.deepEqual(leftovers(), []);
    } finally {
      renameSync(`${ca}.away`, ca);
    }
    assert.equal((await run(["--", "true"])).status, 0);
  });
});

describe("long durations", () => {
  test("a token issued for 30 days runs, exits with the command's status, and says nothing", async () => {
    const token = t
      .ok(
        "auth",
        "issue-token",
        "--agent-id",
        "support-bot",
        "--policy-id",
        "support",
        "--ttl",
        "30d",
      )
      .trim();
    const r = await run(["--", "sh", "-c", "sleep 0.3; exit 5"], { VALLIGNUS_TOKEN: token });
    assert.equal(r.status, 5, r.stderr);
    assert.equal(r.stderr, "");
  });

  test("a --max-runtime of 40 days does not end the run", async () => {
    const r = await run(["--max-runtime", "960h", "--", "sh", "-c", "sleep 0.3; exit 6"]);
    assert.equal(r.status, 6, r.stderr);
    assert.equal(r.stderr, "");
  });
});

/** A shell command that records its pid and a grandchild's, the grandchild writing a file. */
function busyTree(dir: string): string[] {
  return [
    "sh",
    "-c",
    `echo $$ > ${dir}/child.pid; (while :; do date > ${dir}/beat; sleep 0.1; done) & echo $! > ${dir}/grandchild.pid; wait`,
  ];
}

async function treePids(dir: string): Promise<number[]> {
  await waitFor("the command and its grandchild", () =>
    ["child.pid", "grandchild.pid", "beat"].every((f) => existsSync(join(dir, f))),
  );
  return ["child.pid", "grandchild.pid"].map((f) => Number(readFileSync(join(dir, f), "utf8")));
}

describe("the command does not outlive vallignus", () => {
  test("kill -9 of vallignus ends the command and its grandchild within a second", async () => {
    const dir = mkdtempSync(join(t.root, "tree-"));
    const { child } = start(["--", ...busyTree(dir)]);
    // 'exit', not 'close': a survivor would hold vallignus's stdout open and hang the test.
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const pids = await treePids(dir);
    assert.ok(pids.every(isRunning));
    const killedAt = Date.now();
    child.kill("SIGKILL");
    await exited;
    await waitFor("the command's processes to end", () => !pids.some(isRunning));
    const elapsed = Date.now() - killedAt;
    // The watchdog reacts in milliseconds; the bound leaves room for a loaded machine.
    assert.ok(elapsed < 1500, `the command outlived vallignus by ${elapsed} ms`);
    // (Its lock stamps stay until the next run finds their owner dead and removes them.)
    await waitFor("the watchdog to remove the run's folder", () => runFolders().length === 0);
  });
});

describe("run folders", () => {
  test("the next run removes the folders of runs that died with their watchdog; a live one stays", async () => {
    const base = RUNS_BASE;
    mkdirSync(base, { recursive: true, mode: 0o700 });
    // Unique names: other test files' runs share this folder.
    const tag = `${process.pid}-${Date.now()}`;
    // A run killed together with its watchdog (kill -9 of its whole session, a crash): its
    // folder names a process that is gone.
    const dead = join(base, `run-dead-${tag}`);
    mkdirSync(dead);
    writeFileSync(
      join(dead, "owner.json"),
      JSON.stringify({ pid: 2 ** 22 + 1, start: "1", bootId: null }),
    );
    writeFileSync(join(dead, "ca-bundle.pem"), "x");
    const live = join(base, `run-live-${tag}`);
    mkdirSync(live);
    writeFileSync(
      join(live, "owner.json"),
      JSON.stringify({ pid: process.pid, start: null, bootId: null }),
    );
    const r = await run(["--", "sh", "-c", "exit 0"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(existsSync(dead), false, "the dead run's folder is removed");
    assert.equal(existsSync(live), true, "a live run's folder stays");
    rmSync(live, { recursive: true });
    assert.deepEqual(leftovers(), []);
  });
});

describe("signals from the agent", () => {
  test("SIGUSR1 opens no inspector in vallignus", async () => {
    const started = join(mkdtempSync(join(t.root, "usr1-")), "started");
    const { child, done } = start(["--", "sh", "-c", `touch ${started}; sleep 1; exit 3`]);
    await waitFor("the command to start", () => existsSync(started));
    child.kill("SIGUSR1");
    const r = await done;
    assert.equal(r.status, 3, r.stderr);
    assert.doesNotMatch(r.stderr, /Debugger listening/);
    assert.equal(r.stderr, "");
  });
});

// As root (as these tests run here): a real file system that fills up during the run.
describe("a store that cannot be written stops the run", () => {
  let auditDir: string;
  let mounted = false;
  before(() => {
    auditDir = join(t.home, "audit");
    renameSync(auditDir, `${auditDir}.disk`);
    mkdirSync(auditDir, { mode: 0o700 });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", auditDir]);
    mounted = true;
    execFileSync("sh", ["-c", `cp -a "${auditDir}.disk/." "${auditDir}/"`]);
  });
  after(() => {
    if (mounted) execFileSync("umount", [auditDir]);
    rmSync(auditDir, { recursive: true, force: true });
    renameSync(`${auditDir}.disk`, auditDir);
  });

  test("a full audit log: exit 4, one line, no orphan, no stack trace", async () => {
    const dir = mkdtempSync(join(t.root, "full-"));
    const proxyLoop = `while :; do curl -s -o /dev/null http://denied.test/x; sleep 0.05; done`;
    const { done } = start([
      "--",
      "sh",
      "-c",
      `echo $$ > ${dir}/child.pid; (${proxyLoop}) & echo $! > ${dir}/grandchild.pid; date > ${dir}/beat; wait`,
    ]);
    const pids = await treePids(dir);
    await waitFor("a denial in the audit log", () => auditText().includes('"deny_reason"'));
    // Fill the file system the log lives on; the next denial cannot be recorded.
    execFileSync("sh", ["-c", `dd if=/dev/zero of="${auditDir}/filler" bs=4k 2>/dev/null; true`]);
    const r = await done;
    assert.equal(r.status, 4, r.stderr);
    assert.match(
      r.stderr,
      /^vallignus: run stopped: the audit log cannot be written \(.*\) \[ERR_RUN_STOPPED_AUDIT_WRITE\]\n$/,
    );
    await waitFor("the command's processes to end", () => !pids.some(isRunning), 5_000);
    rmSync(join(auditDir, "filler"));
    const sessions = readdirSync(join(t.home, "sessions"))
      .map(
        (id) =>
          JSON.parse(readFileSync(join(t.home, "sessions", id, "session.json"), "utf8")) as Record<
            string,
            unknown
          >,
      )
      .filter((s) => s["end_reason"] === "audit_unwritable");
    assert.equal(sessions.length, 1, "the session is closed, naming the cause");
    assert.equal(sessions[0]?.["exit_status"], 4);
    // Nothing is left holding the log: the next run works.
    assert.equal((await run(["--", "true"])).status, 0);
    assert.deepEqual(leftovers(), []);
  });
});
