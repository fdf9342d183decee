import { existsSync, readFileSync } from "node:fs";

import { isErrnoException } from "../errors.js";

/**
 * Which process holds something (a lock, a reservation), recorded so that a later process can
 * tell whether that holder is still there. A pid alone is not enough: pids are reused, and a
 * zombie keeps its pid while holding nothing.
 */
export interface ProcessStamp {
  readonly pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null off Linux. */
  readonly start: string | null;
  /** The kernel's boot id; a stamp from an earlier boot names no live process. */
  readonly bootId: string | null;
}

/**
 * The state letter and start time (clock ticks since boot) of `pid` from /proc (Linux), or null
 * when /proc cannot tell. The start time tells a process from a later one given the same pid.
 */
export function readProcStat(pid: number): { state: string; start: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may itself hold spaces and parentheses: count from the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const start = fields[19];
  if (state === undefined || start === undefined || !/^[0-9]+$/.test(start)) return null;
  return { state, start };
}

let bootIdCache: string | null | undefined;
export function currentBootId(): string | null {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
    } catch {
      bootIdCache = null;
    }
  }
  return bootIdCache;
}

let procCache: boolean | undefined;
function hasProcfs(): boolean {
  procCache ??= existsSync("/proc/self/stat");
  return procCache;
}

/** The stamp of `pid` as it is now. */
export function stampProcess(pid: number): ProcessStamp {
  return { pid, start: readProcStat(pid)?.start ?? null, bootId: currentBootId() };
}

/** This process's stamp, taken once: its start time never changes. */
export const OWN_PROCESS: ProcessStamp = stampProcess(process.pid);

/** Whether `pid` names a process at all (a process of another user counts: EPERM). */
export function isPidInUse(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return !(isErrnoException(err) && err.code === "ESRCH");
  }
}

/**
 * False only when the stamped process is certainly gone: no such pid (ESRCH), another boot, a
 * zombie, or a pid now worn by a process that started at another time (pid reuse, Linux only).
 * When in doubt (EPERM, no /proc) it counts as alive: taking a live holder's lock or charging a
 * live run's reservation would be wrong, where waiting only costs time or holds budget back.
 */
export function isProcessAlive(stamp: ProcessStamp): boolean {
  const boot = currentBootId();
  if (stamp.bootId !== null && boot !== null && stamp.bootId !== boot) return false;
  let ours = true;
  try {
    process.kill(stamp.pid, 0);
  } catch (err) {
    if (isErrnoException(err) && err.code === "ESRCH") return false;
    ours = false;
  }
  if (!hasProcfs()) return true;
  const proc = readProcStat(stamp.pid);
  // Ours and gone from /proc: it exited just now. Another user's may be hidden (hidepid): doubt.
  if (proc === null) return !ours;
  if (proc.state === "Z" || proc.state === "X") return false;
  return stamp.start === null || proc.start === stamp.start;
}
