import { spawn, spawnSync, type SpawnOptionsWithoutStdio } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The built CLI: end-to-end tests run exactly what a user runs. */
export const CLI = resolve(import.meta.dirname, "../../dist/cli/main.js");

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface TempHome {
  readonly root: string;
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  run(...args: string[]): CliResult;
  runAsync(args: string[]): Promise<CliResult>;
  /** Runs and asserts exit 0, returning stdout. */
  ok(...args: string[]): string;
  cleanup(): void;
}

/** Spawns `file` and resolves, once it has exited, with its status and everything it printed. */
export function spawnToEnd(
  file: string,
  args: readonly string[],
  options: SpawnOptionsWithoutStdio,
): Promise<CliResult> {
  return new Promise((done) => {
    const child = spawn(file, args, options);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("close", (status) => {
      done({ status, stdout, stderr });
    });
  });
}

export function makeTempHome(prefix = "vallignus-test-"): TempHome {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const home = join(root, "home");
  const env: NodeJS.ProcessEnv = { ...process.env, VALLIGNUS_HOME: home, NO_COLOR: "1" };
  delete env["VALLIGNUS_TOKEN"];
  const run = (...args: string[]): CliResult => {
    const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8" });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return {
    root,
    home,
    env,
    run,
    runAsync: (args) => spawnToEnd(process.execPath, [CLI, ...args], { env }),
    ok: (...args) => {
      const r = run(...args);
      if (r.status !== 0) {
        throw new Error(`vallignus ${args.join(" ")} exited ${String(r.status)}: ${r.stderr}`);
      }
      return r.stdout;
    },
    cleanup: () => {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A home with the quickstart's agent and policy (these domains allowed), and a token for them. */
export function makeQuickstartHome(
  allowedDomains = "api.openai.com",
): TempHome & { token: string } {
  const t = makeTempHome();
  t.ok("auth", "init");
  t.ok("auth", "create-agent", "--agent-id", "support-bot", "--owner", "you@example.com");
  t.ok(
    "auth",
    "create-policy",
    "--policy-id",
    "support",
    "--max-spend-usd",
    "5",
    "--allowed-domains",
    allowedDomains,
  );
  const token = t
    .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
    .trim();
  return { ...t, token };
}

/** The one-line error format of the contract: `vallignus: <message> [ERR_…]`. */
export function errorCode(stderr: string): string | undefined {
  const lines = stderr.trimEnd().split("\n");
  if (lines.length !== 1) return undefined;
  return /^vallignus: .+ \[(ERR_[A-Z0-9_]+)\]$/.exec(lines[0] ?? "")?.[1];
}
