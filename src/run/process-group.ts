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

/** A watchdog started before the command exists; `arm` tells it which group to guard. */
export interface GroupWatchdog {
  /** From now on, if this process dies, group `pgid` is killed and `runDir` removed. */
  arm(pgid: number, runDir: string): void;
  stop(): void;
}

/**
 * Kills the command's process group when this process dies, however it dies (kill -9, the OOM
 * killer): a shell in its own session blocks reading a pipe whose write end only we hold; the
 * kernel closes it when we die, the read returns, and the shell kills the group and removes the
 * run's folder (the CA bundle, the proxy socket). It is started early, before the run's
 * limits start counting, so its fork+exec (about 1 ms, more on a loaded machine) delays no
 * command; a normal end kills it first (`stop`).
 */
export function startGroupWatchdog(): GroupWatchdog {
  let watchdog: ChildProcess;
  try {
    watchdog = spawn(
      "/bin/sh",
      [
        "-c",
        'trap "" INT TERM HUP; read pgid dir; case $pgid in ""|*[!0-9]*) exit 0;; esac; read _; kill -KILL "-$pgid"; rm -rf -- "$dir"',
        "vallignus-watchdog",
      ],
      // An empty environment: the watchdog lives as long as the run, and must not carry the
      // token (readable in /proc by any process of the same user, the agent's included).
      { stdio: ["pipe", "ignore", "ignore"], detached: true, env: {} },
    );
  } catch {
    return { arm: () => undefined, stop: () => undefined };
  }
  // No sh: the group still ends with the run; only the kill -9 case is uncovered.
  watchdog.on("error", () => undefined);
  watchdog.stdin?.on("error", () => undefined);
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();
  return {
    arm: (pgid, runDir) => {
      watchdog.stdin?.write(`${pgid} ${runDir}\n`);
    },
    stop: () => {
      watchdog.kill("SIGKILL");
      watchdog.stdin?.destroy();
    },
  };
}
