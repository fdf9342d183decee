import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { LinkedFileLock, withFileLock } from "./file-lock.js";
import { runChildScript, srcModule } from "./run-child-script.js";

const root = mkdtempSync(join(tmpdir(), "vallignus-lock-"));
after(() => rmSync(root, { recursive: true, force: true }));

const freshDir = () => mkdtempSync(join(root, "d-"));

/** A pid no process has: above the kernel's pid_max. */
const DEAD_PID = 4_194_305;

test("LinkedFileLock: runs fn under the lock, then leaves only its stamp until closed", () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  const lock = new LinkedFileLock(path);
  const seen = lock.run(() => existsSync(path));
  assert.equal(seen, true, "the lock file exists while fn runs");
  assert.equal(existsSync(path), false, "and is gone after");
  assert.deepEqual(
    readdirSync(dir).map((n) => n.replace(/-[0-9a-f]{16}$/, "")),
    [`.owner-${process.pid}`],
  );
  lock.close();
  assert.deepEqual(readdirSync(dir), []);
});

test("LinkedFileLock: a lock left by a dead process is taken over; a dead stamp is removed", () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  writeFileSync(path, `${DEAD_PID} gone\n`);
  writeFileSync(join(dir, `.owner-${DEAD_PID}-00`), `${DEAD_PID} gone\n`);
  const lock = new LinkedFileLock(path);
  assert.equal(existsSync(join(dir, `.owner-${DEAD_PID}-00`)), false);
  assert.equal(
    lock.run(() => 42),
    42,
  );
  lock.close();
  assert.deepEqual(readdirSync(dir), []);
});

test("LinkedFileLock and withFileLock exclude each other across processes", async () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  // The child takes the lock the O_EXCL way, says so, holds it 300 ms, and prints the last
  // instant it still held it (read before letting go: a time read after could come later than
  // the parent's entry, which is the race this test once lost).
  const script = `
    import { withFileLock } from ${JSON.stringify(join(import.meta.dirname, "file-lock.ts"))};
    let lastHeld = 0;
    withFileLock(${JSON.stringify(path)}, () => {
      process.stdout.write("held\\n");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      lastHeld = Date.now();
    });
    process.stdout.write("released " + lastHeld + "\\n");
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  await new Promise<void>((done) => {
    const poll = setInterval(() => {
      if (out.includes("held")) {
        clearInterval(poll);
        done();
      }
    }, 5);
  });
  const lock = new LinkedFileLock(path);
  const entered = lock.run(() => Date.now());
  lock.close();
  await new Promise((done) => child.on("close", done));
  const released = Number(/released (\d+)/.exec(out)?.[1]);
  assert.ok(Number.isFinite(released), out);
  assert.ok(entered >= released, `entered at ${entered}, released at ${released}`);
  // And the other way: while a LinkedFileLock holds it, an O_EXCL create (withFileLock's way
  // in) finds it taken; once it is released, withFileLock gets it.
  const second = new LinkedFileLock(path);
  second.run(() => assert.equal(tryCreate(path), "taken"));
  second.close();
  assert.equal(
    withFileLock(path, () => "free"),
    "free",
  );
});

/** Whether a fresh O_EXCL create of the lock file fails, as `withFileLock`'s first try does. */
function tryCreate(path: string): string {
  try {
    writeFileSync(path, "probe", { flag: "wx" });
    rmSync(path);
    return "free";
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EEXIST" ? "taken" : String(err);
  }
}

test("a lock whose pid now belongs to another process (pid reuse) is taken over", () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  // Our own pid, but a start time no process of that pid has: the holder that wrote it is gone.
  writeFileSync(path, `${process.pid} reused 1\n`);
  const started = Date.now();
  assert.equal(
    withFileLock(path, () => "taken"),
    "taken",
  );
  assert.ok(Date.now() - started < 1000);
});

test("a waiter that died while removing a dead lock does not hold the others back", () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  writeFileSync(path, `${DEAD_PID} crashed\n`);
  // Its turn at removing dead locks, left behind by its own crash.
  writeFileSync(`${path}.steal`, `${DEAD_PID} steal\n`);
  const started = Date.now();
  assert.equal(
    withFileLock(path, () => "taken"),
    "taken",
  );
  assert.ok(Date.now() - started < 1000);
  assert.deepEqual(readdirSync(dir), []);
});

test("dead holders' locks are removed by one waiter at a time: no two holders at once", async () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  const marker = join(dir, "inside");
  // Six processes, both kinds of lock, each leaving a dead holder's lock behind now and then;
  // inside the lock each creates `marker` exclusively: a second holder at once makes that fail.
  const script = (kind: string) => `
    import { closeSync, existsSync, openSync, unlinkSync, writeFileSync } from "node:fs";
    import { LinkedFileLock, withFileLock } from ${JSON.stringify(join(import.meta.dirname, "file-lock.ts"))};
    const path = ${JSON.stringify(path)}, marker = ${JSON.stringify(marker)};
    let overlaps = 0;
    const inside = () => {
      try { closeSync(openSync(marker, "wx")); } catch { overlaps++; return; }
      const until = Date.now() + 2;
      while (Date.now() < until);
      unlinkSync(marker);
    };
    const linked = ${kind === "linked" ? "new LinkedFileLock(path)" : "undefined"};
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 0 && !existsSync(path)) {
        try { writeFileSync(path, "${String(DEAD_PID)} dead-" + i + "-" + process.pid + "\\n", { flag: "wx" }); } catch {}
      }
      if (linked) linked.run(inside); else withFileLock(path, inside);
    }
    linked?.close();
    process.stdout.write(String(overlaps));
  `;
  const runs = ["linked", "excl", "linked", "excl", "linked", "excl"].map(
    (kind) =>
      new Promise<string>((done) => {
        const child = spawn(process.execPath, [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          script(kind),
        ]);
        let out = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
        child.on("close", () => done(out));
      }),
  );
  assert.deepEqual(await Promise.all(runs), ["0", "0", "0", "0", "0", "0"]);
});

test("runWhenFree: a free lock runs fn at once; a held one returns a promise, run once it is free", async () => {
  const dir = freshDir();
  const path = join(dir, ".lock");
  const lock = new LinkedFileLock(path);
  assert.equal(
    lock.runWhenFree(() => 1),
    1,
    "no promise, no await, when the lock is free",
  );
  // A lock file naming a live process (this one) is held; one naming a dead pid is not.
  writeFileSync(path, `${String(process.pid)} other\n`);
  let ran = false;
  const pending = lock.runWhenFree(() => (ran = true));
  assert.ok(pending instanceof Promise);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(ran, false, "fn waits while the lock is held");
  rmSync(path);
  assert.equal(await pending, true);
  writeFileSync(path, `${String(DEAD_PID)} gone\n`);
  assert.equal(
    lock.runWhenFree(() => 2),
    2,
    "a dead holder's lock is taken over at once",
  );
  lock.close();
  assert.deepEqual(readdirSync(dir), []);
});

test("withFileLock: a lock whose owner line cannot be written (disk full) is not left behind", async () => {
  const path = join(freshDir(), ".lock");
  // A file-size limit of 0 blocks: the lock file is created, writing its owner line fails.
  const child = runChildScript(
    `import { withFileLock } from ${srcModule("storage/file-lock.ts")};
try {
  withFileLock(${JSON.stringify(path)}, () => undefined);
  console.log("taken");
} catch (err) {
  console.log(err.code);
}`,
    0,
  );
  const { stdout } = await child.exited;
  assert.equal(stdout.trim(), "EFBIG");
  assert.equal(existsSync(path), false, "no empty lock that no one could ever take over");
});
