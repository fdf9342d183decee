import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";

import { VallignusError, isErrnoException } from "../errors.js";

const RETRY_MS = 5;
let holdings = 0;
const TIMEOUT_MS = 15_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return !(isErrnoException(err) && err.code === "ESRCH");
  }
}

function readLockOwner(path: string): { text: string; pid: number } | undefined {
  try {
    const text = readFileSync(path, "utf8");
    const pid = Number.parseInt(text.split(" ")[0] ?? "", 10);
    return { text, pid: Number.isSafeInteger(pid) && pid > 0 ? pid : 0 };
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` while holding an exclusive cross-process lock file (O_EXCL create).
 * Written by hand rather than with proper-lockfile because our holders are short-lived and
 * synchronous: a lock left by a crashed process is recognised by its dead pid, not by a timer.
 */
export function withFileLock<T>(path: string, fn: () => T): T {
  // Unique per holding, so a stealer re-reading the file can tell a new holder from the old one.
  const owner = `${process.pid} ${String(++holdings)} ${String(Date.now())}\n`;
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, owner);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if (!(isErrnoException(err) && err.code === "EEXIST")) throw err;
    }
    const holder = readLockOwner(path);
    if (holder !== undefined && holder.pid !== 0 && !isProcessAlive(holder.pid)) {
      // Re-read just before removing, so a lock taken meanwhile by a live process survives.
      if (readLockOwner(path)?.text === holder.text) {
        try {
          unlinkSync(path);
        } catch {
          // Another waiter removed it first.
        }
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new VallignusError("ERR_LOCK_TIMEOUT", `timed out waiting for lock ${path}`);
    }
    sleepSync(RETRY_MS + Math.floor(Math.random() * RETRY_MS));
  }
  try {
    return fn();
  } finally {
    // Ours to remove without reading it back: a lock is only ever taken over from a dead pid.
    unlinkSync(path);
  }
}
