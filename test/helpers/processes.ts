import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

/** A zombie waiting for its reaper no longer runs. */
export function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * Waits for `check` to hold, polling, instead of sleeping a fixed time; fails after a generous
 * deadline, since a loaded machine is slow but the event still comes.
 */
export async function waitFor(
  what: string,
  check: () => boolean,
  deadlineMs = 15_000,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
