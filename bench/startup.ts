// Wall time of `vallignus run -- true` next to `true` alone, with and without --isolate (each
// recipe). The median of several runs; the difference is what the firewall adds at start-up.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const RUNS = 15;
const root = mkdtempSync(join(tmpdir(), "vallignus-bench-startup-"));
const env: NodeJS.ProcessEnv = { ...process.env, VALLIGNUS_HOME: join(root, "home") };

function cli(...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`vallignus ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function time(argv: string[], extraEnv: NodeJS.ProcessEnv = {}): number | undefined {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = process.hrtime.bigint();
    const r = spawnSync(argv[0] ?? "true", argv.slice(1), {
      env: { ...env, ...extraEnv },
      stdio: "ignore",
    });
    if (r.status !== 0) return undefined;
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return median(samples);
}

try {
  cli("auth", "init");
  cli("auth", "create-agent", "--agent-id", "bench", "--owner", "bench");
  cli(
    "auth",
    "create-policy",
    "--policy-id",
    "bench",
    "--max-spend-usd",
    "1",
    "--allowed-domains",
    "example.com",
  );
  env["VALLIGNUS_TOKEN"] = cli(
    "auth",
    "issue-token",
    "--agent-id",
    "bench",
    "--policy-id",
    "bench",
  );
  const bare = time(["true"]) ?? 0;
  const rows: [string, number | undefined][] = [
    ["`true` alone", bare],
    ["`vallignus run -- true`", time([process.execPath, CLI, "run", "--", "true"])],
    [
      "`vallignus run --isolate -- true` (bwrap)",
      time([process.execPath, CLI, "run", "--isolate", "--", "true"], {
        VALLIGNUS_ISOLATE_METHOD: "bwrap",
      }),
    ],
    [
      "`vallignus run --isolate -- true` (unshare)",
      time([process.execPath, CLI, "run", "--isolate", "--", "true"], {
        VALLIGNUS_ISOLATE_METHOD: "unshare",
      }),
    ],
  ];
  const plain = rows[1]?.[1];
  console.log(`Median of ${RUNS} runs each.\n`);
  console.log("| command | wall time (ms) | added vs `true` (ms) | added by --isolate (ms) |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const [name, ms] of rows) {
    if (ms === undefined) {
      console.log(`| ${name} | n/a | | |`);
      continue;
    }
    const isolateCost =
      name.includes("--isolate") && plain !== undefined ? (ms - plain).toFixed(1) : "";
    console.log(`| ${name} | ${ms.toFixed(1)} | ${(ms - bare).toFixed(1)} | ${isolateCost} |`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
