import { spawn, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";

/** Sends `signal` to the whole process group led by `pgid`; a group already gone is fine. */
export function signalGroup(pgid: number | undefined, signal: NodeJS.Signals): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is already gone.
  }
}

/**
 * Kills process group `pgid` when this process dies, however it dies (kill -9, the OOM
 * killer): a shell in its own session blocks reading a pipe whose write end only we hold;
 * the kernel closes it when we die, the read returns, and the shell kills the group and
 * removes the run's folder (which holds the CA bundle, and the proxy socket). A normal
 * end kills the watchdog first (`stop`). Costs one fork+exec of sh, about 1 ms.
 */
export function startGroupWatchdog(pgid: number, runDir: string): { stop(): void } {
  let watchdog: ChildProcess | undefined;
  try {
    watchdog = spawn(
      "/bin/sh",
      [
        "-c",
        'trap "" INT TERM HUP; read _; kill -KILL "-$1"; rm -rf -- "$2"',
        "vallignus-watchdog",
        `${pgid}`,
        runDir,
      ],
      { stdio: ["pipe", "ignore", "ignore"], detached: true },
    );
  } catch {
    return { stop: () => undefined };
  }
  // No sh: the group still ends with the run; only the kill -9 case is uncovered.
  watchdog.on("error", () => undefined);
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();
  return {
    stop: () => {
      watchdog.kill("SIGKILL");
      watchdog.stdin?.destroy();
    },
  };
}
