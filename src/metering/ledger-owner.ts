import { isProcessAlive, stampProcess } from "../storage/index.js";
import type { LedgerOwner } from "./ledger-types.js";

/**
 * Who holds a reservation, as its journal line records it: the run (session) and the process
 * that will settle it, stamped so that a later process can tell whether it is still there.
 * The field names are the journal's format.
 */
export interface OwnerStamp {
  readonly session_id: string;
  readonly pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null off Linux. */
  readonly pid_start: string | null;
  /** The kernel's boot id; a reservation from an earlier boot has no live owner. */
  readonly boot_id: string | null;
}

export function stampOwner(owner: LedgerOwner): OwnerStamp {
  const stamp = stampProcess(owner.pid);
  return {
    session_id: owner.sessionId,
    pid: owner.pid,
    pid_start: stamp.start,
    boot_id: stamp.bootId,
  };
}

/**
 * False only when the owner is certainly gone (see isProcessAlive): when in doubt the owner
 * counts as alive, since charging a live run's reservation would be wrong, and leaving it
 * reserved only holds budget back.
 */
export function isOwnerAlive(owner: OwnerStamp): boolean {
  return isProcessAlive({ pid: owner.pid, start: owner.pid_start, bootId: owner.boot_id });
}
