import { randomBytes } from "node:crypto";
import {
  closeSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

import { VallignusError, isErrnoException } from "../errors.js";
import { isPidInUse, isProcessAlive, OWN_PROCESS } from "./process-identity.js";

const RETRY_MS = 5;
let holdings = 0;
const TIMEOUT_MS = 15_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Only for a short CLI command, which serves nobody while it waits; never in a run. */
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** This process's start time, written into every lock it takes ("" off Linux). */
const ownStart = OWN_PROCESS.start ?? "";

/** Whether the process that wrote a lock (`pid … start`) can still hold it. */
function isHolderAlive(holder: { pid: number; start: string }): boolean {
  return isProcessAlive({
    pid: holder.pid,
    start: holder.start === "" ? null : holder.start,
    bootId: null,
  });
}

function readLockOwner(path: string): { text: string; pid: number; start: string } | undefined {
  try {
    const text = readFileSync(path, "utf8");
    const fields = text.trim().split(" ");
    const pid = Number.parseInt(fields[0] ?? "", 10);
    // Third field: the holder's start time; older locks have none.
    const start = fields.length >= 3 && /^[0-9]+$/.test(fields[2] ?? "") ? (fields[2] ?? "") : "";
    return { text, pid: Number.isSafeInteger(pid) && pid > 0 ? pid : 0, start };
  } catch {
    return undefined;
  }
}

/** One try at the lock: taken, held by a live process, or freed from a dead one (try again). */
type Attempt = "taken" | "held" | "again" | "contended";

function attempt(path: string, take: () => boolean): Attempt {
  if (take()) return "taken";
  const holder = readLockOwner(path);
  if (holder !== undefined && holder.pid !== 0 && !isHolderAlive(holder)) {
    // Another waiter may be removing the same dead lock: "contended" waits a moment first.
    return removeDeadLock(path, holder.text) ? "again" : "contended";
  }
  return "held";
}

const timedOut = (path: string) =>
  new VallignusError("ERR_LOCK_TIMEOUT", `timed out waiting for lock ${path}`);
const retryDelay = () => RETRY_MS + Math.floor(Math.random() * RETRY_MS);

/**
 * Waits until `take()` gets the lock at `path`, sleeping the thread in between. A lock whose
 * holder is dead is removed; after TIMEOUT_MS of a live holder, ERR_LOCK_TIMEOUT.
 */
function acquireSync(path: string, take: () => boolean): void {
  const deadline = Date.now() + TIMEOUT_MS;
  for (let a = attempt(path, take); a !== "taken"; a = attempt(path, take)) {
    if (a === "again") continue;
    if (a === "contended") {
      sleepSync(1);
      continue;
    }
    if (Date.now() > deadline) throw timedOut(path);
    sleepSync(retryDelay());
  }
}

/** `acquireSync`, waiting on timers instead: the event loop goes on serving meanwhile. */
async function acquireAsync(path: string, take: () => boolean): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (let a = attempt(path, take); a !== "taken"; a = attempt(path, take)) {
    if (a === "again") continue;
    if (a === "held" && Date.now() > deadline) throw timedOut(path);
    await delay(a === "contended" ? 1 : retryDelay());
  }
}

const tryUnlink = (path: string) => {
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
};

/**
 * Removes a lock left by a dead holder if it is still that holder's; true when this call removed
 * it. Waiters that saw the same dead holder take turns on a second lock (`<lock>.steal`) and
 * re-read under it, so only the first removes the dead lock: a later one finds the lock taken by
 * a live process and leaves it (checking and removing without turns could remove that live lock).
 */
function removeDeadLock(path: string, deadText: string): boolean {
  const turn = `${path}.steal`;
  let fd: number;
  try {
    fd = openSync(turn, "wx", 0o600);
  } catch (err) {
    if (!isExists(err)) throw err;
    // Another waiter's turn; one that died during its turn gives it up by its dead pid.
    const other = readLockOwner(turn);
    if (other !== undefined && other.pid !== 0 && !isHolderAlive(other)) tryUnlink(turn);
    return false;
  }
  try {
    try {
      writeSync(fd, `${process.pid} steal ${ownStart}\n`);
    } finally {
      closeSync(fd);
    }
    if (readLockOwner(path)?.text !== deadText) return false;
    tryUnlink(path);
    return true;
  } finally {
    tryUnlink(turn);
  }
}

function runAndRelease<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } finally {
    releaseLock(path);
  }
}

/** Ours to remove without reading it back: a lock is only ever taken over from a dead pid. */
function releaseLock(path: string): void {
  unlinkSync(path);
}

const isExists = (err: unknown) => isErrnoException(err) && err.code === "EEXIST";

/**
 * Runs `fn` while holding an exclusive cross-process lock file (O_EXCL create), waiting for it
 * with the thread asleep: for short CLI commands and one-off writes of the authority state, never
 * on a path that serves traffic (see `LinkedFileLock.runWhenFree`).
 * Written by hand rather than with proper-lockfile because our holders are short-lived and
 * synchronous: a lock left by a crashed process is recognised by its dead pid, not by a timer.
 */
export function withFileLock<T>(path: string, fn: () => T): T {
  // Unique per holding, so a stealer re-reading the file can tell a new holder from the old one.
  const owner = `${process.pid} ${String(++holdings)}-${String(Date.now())} ${ownStart}\n`;
  acquireSync(path, () => {
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600);
    } catch (err) {
      if (isExists(err)) return false;
      throw err;
    }
    try {
      writeSync(fd, owner);
    } catch (err) {
      // An empty lock names no holder, so no waiter could ever take it over: a full disk would
      // leave every later command timing out on it. Not taken, it must not exist.
      closeSync(fd);
      tryUnlink(path);
      throw err;
    }
    closeSync(fd);
    return true;
  });
  return runAndRelease(path, fn);
}

const OWNER_PREFIX = ".owner-";

/**
 * The same lock (same file, same protocol for waiters and for dead holders, so it excludes
 * `withFileLock` users too), for a process that takes it thousands of times: the audit log and
 * the ledger of a busy run. Taking it is one link(2) of a stamp file made once, instead of
 * create + write + close: a third of the cost on ext4, where a new inode waits for the journal.
 */
export class LinkedFileLock {
  private readonly stampPath: string;
  private readonly stampText: string;
  private readonly take = (): boolean => this.link();

  constructor(private readonly path: string) {
    const dir = dirname(path);
    removeDeadStamps(dir);
    const token = randomBytes(8).toString("hex");
    this.stampText = `${process.pid} ${token} ${ownStart}\n`;
    this.stampPath = join(dir, `${OWNER_PREFIX}${process.pid}-${token}`);
    this.writeStamp();
  }

  /** Runs `fn` under the lock, the thread asleep while another process holds it (CLI only). */
  run<T>(fn: () => T): T {
    acquireSync(this.path, this.take);
    return runAndRelease(this.path, fn);
  }

  /**
   * Runs `fn` under the lock without ever blocking the event loop: at once (and its value
   * returned as is) when the lock is free, which costs no await; otherwise a promise of its
   * value, `fn` running once a timer-paced wait got the lock.
   */
  runWhenFree<T>(fn: () => T): T | Promise<T> {
    let first = attempt(this.path, this.take);
    // A dead holder's lock just removed: trying again costs no wait.
    while (first === "again") first = attempt(this.path, this.take);
    if (first === "taken") return runAndRelease(this.path, fn);
    return acquireAsync(this.path, this.take).then(() => runAndRelease(this.path, fn));
  }

  /** Removes the stamp; the lock itself is never held between calls of `run`. */
  close(): void {
    try {
      unlinkSync(this.stampPath);
    } catch {
      // Already gone.
    }
  }

  private link(): boolean {
    try {
      linkSync(this.stampPath, this.path);
      return true;
    } catch (err) {
      if (isExists(err)) return false;
      // Our stamp was removed under us: make it again; the next try links it.
      if (isErrnoException(err) && err.code === "ENOENT") {
        this.writeStamp();
        return false;
      }
      throw err;
    }
  }

  private writeStamp(): void {
    writeFileSync(this.stampPath, this.stampText, { mode: 0o600, flag: "w" });
  }
}

/** Stamps of processes that died without closing their lock (a crash), removed best-effort. */
function removeDeadStamps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(OWNER_PREFIX)) continue;
    const pid = Number.parseInt(name.slice(OWNER_PREFIX.length), 10);
    if (Number.isSafeInteger(pid) && pid > 0 && !isPidInUse(pid)) tryUnlink(join(dir, name));
  }
}
