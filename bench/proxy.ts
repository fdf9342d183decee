// What `vallignus run`'s proxy costs, against the same origin reached directly, on loopback:
//   (a) plain HTTP GET of a ~100-byte JSON: req/s and p50/p99 latency, 50 keep-alive connections
//       and 1 connection, direct vs absolute-form requests through the proxy;
//   (b) a 256 MiB HTTPS download: MB/s direct vs through the proxy's CONNECT tunnel.
// Each figure is the median of 3 runs (direct and vallignus runs interleaved). The origin and the
// load client run in their own processes; everything this script starts is stopped by PID and
// its temporary folders removed, even on error.
//
//   npm run build && npm run bench:proxy
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { join, resolve } from "node:path";

import { CLI, makeTempHome } from "../test/helpers/cli.js";
import {
  children,
  killAllNow,
  runChild,
  startOrigin,
  stopChild,
  type Exit,
  type OriginProcess,
} from "./children.js";
import { makeTestCertificates } from "../test/helpers/origin.js";

const HERE = import.meta.dirname;
const CLIENT = resolve(HERE, "load-client.mjs");
const RUNS = 3;
const DURATION_MS = 3000;
const WARMUP_MS = 500;
const MAX_REQUESTS = 1_000_000;
const DOWNLOAD_MIB = 256;
/** Any one child process gets this long before it is stopped and the benchmark fails. */
const CHILD_TIMEOUT_MS = 45_000;

// ---------------------------------------------------------------------------------------------
// Measures.

interface HttpResult {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
  non200: number;
  socket_errors: number;
  proxy: string | null;
}

interface DownloadResult {
  mb_per_s: number;
  seconds: number;
  proxy: string | null;
}

function parseResult(label: string, r: Exit): unknown {
  const line = r.stdout
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.startsWith("{"));
  const json = (line === undefined ? {} : JSON.parse(line)) as Record<string, unknown>;
  if (r.status !== 0 || line === undefined || "error" in json) {
    throw new Error(
      `${label} failed (exit ${String(r.status)}): ${line ?? "no result"}\n${r.stderr.trim()}`,
    );
  }
  return json;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** The caller's environment without proxy settings or preloads. */
function directEnv(): NodeJS.ProcessEnv {
  const dropped = /^(https?_proxy|all_proxy|no_proxy|node_options)$/i;
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !dropped.test(name)));
}

interface Setup {
  env: NodeJS.ProcessEnv;
  httpPort: number;
  httpsPort: number;
  caPath: string;
}

/** Runs the load client once, directly or under `vallignus run`. */
async function client<T>(setup: Setup, via: "direct" | "proxy", args: string[]): Promise<T> {
  const clientArgs = [CLIENT, ...args, "--via", via, "--host", "bench.test"];
  const label = `${via} ${args.join(" ")}`;
  if (via === "direct") {
    return parseResult(
      label,
      await runChild(process.execPath, clientArgs, {
        env: directEnv(),
        timeoutMs: CHILD_TIMEOUT_MS,
      }),
    ) as T;
  }
  const resolveArgs = [setup.httpPort, setup.httpsPort].flatMap((p) => [
    "--resolve",
    `bench.test:${p}:127.0.0.1`,
  ]);
  const r = await runChild(
    process.execPath,
    [CLI, "run", ...resolveArgs, "--", process.execPath, ...clientArgs],
    { env: setup.env, timeoutMs: CHILD_TIMEOUT_MS },
  );
  const result = parseResult(label, r) as T & { proxy: string | null };
  if (result.proxy === null) throw new Error(`${label}: the client did not use the proxy`);
  return result;
}

interface Row {
  measure: string;
  direct: number;
  vallignus: number;
  format: (n: number) => string;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString("en");
const fmtMs = (n: number) => (n < 10 ? n.toFixed(3) : n.toFixed(1));
const fmtMb = (n: number) => n.toFixed(0);

async function httpRows(setup: Setup, connections: number): Promise<Row[]> {
  const args = [
    "http",
    "--port",
    String(setup.httpPort),
    "--path",
    "/small",
    "--connections",
    String(connections),
    "--duration-ms",
    String(DURATION_MS),
    "--warmup-ms",
    String(WARMUP_MS),
    "--max-requests",
    String(MAX_REQUESTS),
  ];
  const results: Record<"direct" | "proxy", HttpResult[]> = { direct: [], proxy: [] };
  for (let i = 0; i < RUNS; i++) {
    for (const via of ["direct", "proxy"] as const) {
      const r = await client<HttpResult>(setup, via, args);
      if (r.non200 > 0 || r.socket_errors > 0 || r.requests === 0) {
        throw new Error(`${via} http run: ${JSON.stringify(r)}`);
      }
      results[via].push(r);
      process.stderr.write(
        `  ${connections} conn ${via.padEnd(6)} run ${i + 1}: ${fmtInt(r.rps)} req/s, ` +
          `p50 ${fmtMs(r.p50_ms)} ms, p99 ${fmtMs(r.p99_ms)} ms\n`,
      );
    }
  }
  const label = `HTTP GET /small, ${connections} keep-alive conn${connections === 1 ? "" : "s"}`;
  const pick = (via: "direct" | "proxy", key: "rps" | "p50_ms" | "p99_ms") =>
    median(results[via].map((r) => r[key]));
  const measures = [
    { measure: `${label}: req/s`, key: "rps", format: fmtInt },
    { measure: `${label}: p50 latency (ms)`, key: "p50_ms", format: fmtMs },
    { measure: `${label}: p99 latency (ms)`, key: "p99_ms", format: fmtMs },
  ] as const;
  return measures.map(({ measure, key, format }) => ({
    measure,
    direct: pick("direct", key),
    vallignus: pick("proxy", key),
    format,
  }));
}

async function downloadRow(setup: Setup): Promise<Row> {
  const args = [
    "download",
    "--port",
    String(setup.httpsPort),
    "--mib",
    String(DOWNLOAD_MIB),
    "--ca",
    setup.caPath,
    "--timeout-ms",
    "30000",
  ];
  const results: Record<"direct" | "proxy", number[]> = { direct: [], proxy: [] };
  for (let i = 0; i < RUNS; i++) {
    for (const via of ["direct", "proxy"] as const) {
      const r = await client<DownloadResult>(setup, via, args);
      results[via].push(r.mb_per_s);
      process.stderr.write(
        `  download ${via.padEnd(6)} run ${i + 1}: ${fmtMb(r.mb_per_s)} MB/s (${r.seconds.toFixed(2)} s)\n`,
      );
    }
  }
  return {
    measure: `HTTPS ${DOWNLOAD_MIB} MiB download, CONNECT tunnel: MB/s`,
    direct: median(results.direct),
    vallignus: median(results.proxy),
    format: fmtMb,
  };
}

// ---------------------------------------------------------------------------------------------

function machineLine(): string {
  const nproc = spawnSync("nproc", { encoding: "utf8" });
  const cores = nproc.status === 0 ? nproc.stdout.trim() : `${availableParallelism()} (os)`;
  let model = cpus()[0]?.model ?? "unknown";
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (match?.[1] !== undefined) model = match[1].trim();
  } catch {
    // Not Linux: os.cpus() it is.
  }
  return `node ${process.version} · nproc ${cores} · CPU ${model}`;
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const home = makeTempHome("vallignus-bench-");
  let origin: OriginProcess | undefined;
  const cleanup = () => {
    killAllNow();
    home.cleanup();
  };
  // First signal: stop the children gently (vallignus then cleans up its run), then exit.
  // A second signal: kill what is left at once.
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => () => {
    if (stopping) {
      cleanup();
      process.exit(130);
    }
    stopping = true;
    process.stderr.write(`bench: stopped by ${sig}; stopping what it started\n`);
    void Promise.all([...children].map((c) => stopChild(c, 2000))).finally(() => {
      cleanup();
      process.exit(130);
    });
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((sig) => {
    const handler = onSignal(sig);
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  try {
    const started = performance.now();
    const certs = await makeTestCertificates(["bench.test"]);
    const caPath = join(home.root, "ca.pem");
    const certPath = join(home.root, "cert.pem");
    const keyPath = join(home.root, "key.pem");
    writeFileSync(caPath, certs.caPem);
    writeFileSync(certPath, certs.certPem);
    writeFileSync(keyPath, certs.keyPem, { mode: 0o600 });
    origin = await startOrigin(certPath, keyPath);
    const { httpPort, httpsPort } = origin;

    home.ok("auth", "init");
    home.ok("auth", "create-agent", "--agent-id", "a", "--owner", "o");
    home.ok(
      "auth",
      "create-policy",
      "--policy-id",
      "p",
      "--max-spend-usd",
      "1",
      "--allowed-domains",
      `bench.test:${httpPort},bench.test:${httpsPort}`,
    );
    const token = home.ok("auth", "issue-token", "--agent-id", "a", "--policy-id", "p").trim();
    // The commands' temporary files go inside ours (vallignus keeps its run folders in /tmp).
    const tmp = join(home.root, "tmp");
    mkdirSync(tmp);
    const setup: Setup = {
      env: { ...home.env, VALLIGNUS_TOKEN: token, TMPDIR: tmp },
      httpPort,
      httpsPort,
      caPath,
    };

    process.stderr.write(`origin: http ${httpPort}, https ${httpsPort}; ${RUNS} runs each\n`);
    const rows = [
      ...(await httpRows(setup, 50)),
      ...(await httpRows(setup, 1)),
      await downloadRow(setup),
    ];
    const seconds = (performance.now() - started) / 1000;

    const lines = [
      machineLine(),
      "",
      `Median of ${RUNS} runs; HTTP windows ${DURATION_MS / 1000} s after a ${WARMUP_MS / 1000} s ` +
        `warm-up; latency is per request on one connection; MB = 10^6 bytes. ` +
        `Loopback only; origin, proxy and client are separate processes. Took ${seconds.toFixed(0)} s.`,
      "",
      "| measure | direct | vallignus | ratio (vallignus/direct) |",
      "| --- | ---: | ---: | ---: |",
      ...rows.map(
        (r) =>
          `| ${r.measure} | ${r.format(r.direct)} | ${r.format(r.vallignus)} | ${(r.vallignus / r.direct).toFixed(2)} |`,
      ),
    ];
    console.log(lines.join("\n"));
  } finally {
    for (const [sig, handler] of handlers) process.off(sig, handler);
    if (origin !== undefined) await stopChild(origin.child, 1000);
    await Promise.all([...children].map((c) => stopChild(c, 1000)));
    cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
