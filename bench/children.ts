// Child processes of the benchmarks: every one is tracked by PID and stopped, with its
// descendants, on the way out (bench/all.ts and bench/proxy.ts share this).
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Any one child process gets this long (unless told otherwise) before it is stopped. */
const DEFAULT_TIMEOUT_MS = 90_000;

export const children = new Set<ChildProcess>();

/** The PIDs of a process's descendants, from /proc (Linux); deepest first. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const task of tasks) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8");
    } catch {
      continue;
    }
    for (const child of text.trim().split(/\s+/).filter(Boolean).map(Number)) {
      out.push(...descendants(child), child);
    }
  }
  return out;
}

export const isAlive = (child: ChildProcess) =>
  child.exitCode === null && child.signalCode === null;

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** SIGTERM (vallignus relays it to its process group), then SIGKILL to whatever is left. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || !isAlive(child)) return;
  const tree = descendants(pid);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  signal(pid, "SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  for (const p of [...tree, pid]) signal(p, "SIGKILL");
}

export function killAllNow(): void {
  for (const child of children) {
    const pid = child.pid;
    if (pid === undefined || !isAlive(child)) continue;
    for (const p of [...descendants(pid), pid]) signal(p, "SIGKILL");
  }
}

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export interface Exit {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Called with the PID once started (e.g. to sample its memory). */
  onStart?: (pid: number) => void;
  /** Called with each whole stdout line. */
  onLine?: (line: string, child: ChildProcess) => void;
}

export function runChild(
  command: string,
  args: readonly string[],
  options: RunOptions,
): Promise<Exit> {
  return new Promise((done, fail) => {
    const child = track(
      spawn(command, args, {
        env: options.env,
        stdio: [options.onLine === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      }),
    );
    if (child.pid !== undefined) options.onStart?.(child.pid);
    let stdout = "";
    let stderr = "";
    let pending = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      if (options.onLine === undefined) return;
      pending += d;
      let cut;
      while ((cut = pending.indexOf("\n")) !== -1) {
        options.onLine(pending.slice(0, cut), child);
        pending = pending.slice(cut + 1);
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(() => {
      void stopChild(child);
      fail(new Error(`${[command, ...args].join(" ")}: no result after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once("close", (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

const ORIGIN = join(import.meta.dirname, "origin.mjs");

export interface OriginProcess {
  child: ChildProcess;
  httpPort: number;
  httpsPort: number;
  chatPort: number;
}

/** Starts bench/origin.mjs (tracked like every child) and waits for the ports it listens on. */
export function startOrigin(certPath: string, keyPath: string): Promise<OriginProcess> {
  return new Promise((done, fail) => {
    const child = track(
      spawn(
        process.execPath,
        [ORIGIN, "--cert", certPath, "--key", keyPath, "--max-lifetime-ms", "1800000"],
        { stdio: ["pipe", "pipe", "inherit"] },
      ),
    );
    let out = "";
    const timer = setTimeout(() => fail(new Error("origin did not start within 10 s")), 10_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`origin exited early (${String(code)})`));
    });
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const line = out.split("\n")[0];
      if (!out.includes("\n") || line === undefined) return;
      clearTimeout(timer);
      done({ child, ...(JSON.parse(line) as Omit<OriginProcess, "child">) });
    });
  });
}
