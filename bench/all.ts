// `npm run bench`: Vallignus next to direct connections and to its peers (squid, tinyproxy,
// mitmproxy), in one run on this machine, with every comparison a ratio taken inside one round.
//
//   npm run bench            (builds, then: node --import tsx bench/all.ts)
//   npm run bench -- --only=http,chat   (some groups: rss, http, tunnel, chat, micro, startup;
//                                        printed only, bench/RESULTS.md is left alone)
//
// 1. Installs what is missing with apt-get (squid, tinyproxy, mitmproxy, wrk, hyperfine), quietly;
//    a package that cannot be installed turns its columns into "n/a (not installable)".
// 2. Starts, each in its own process tracked by PID: the origin (bench/origin.mjs; HTTP, HTTPS and
//    an OpenAI-style chat endpoint, with a throwaway CA made here), squid, tinyproxy and mitmdump
//    with the configs in bench/peers/. Everything it started is stopped by PID on the way out,
//    and its temporary folder removed, even on error or Ctrl-C. Every load is bounded in time.
// 3. Vallignus runs as users run it: `vallignus run --resolve … --upstream-ca … -- <load tool>`
//    with a real token and policy; audit log, ledger fsync and metering all on.
// 4. Measures (median of 3 rounds; in each round every column runs once, and each ratio is
//    taken inside its round, then the median of those ratios is reported):
//    HTTP GET req/s and p50/p99 at 50 and at 1 connection (wrk, absolute-form URLs through a Lua
//    script); CONNECT tunnel MB/s for a 512 MiB HTTPS download; chat completions req/s at 20
//    keep-alive TLS connections (opaque tunnel, and metered vs mitmproxy intercepting); in-process
//    costs (usage parsing, policy decision, token verification); RSS idle, under load and with
//    1,000 idle tunnels; `vallignus run -- true` against `true` (hyperfine).
// 5. Prints one markdown table and writes it, with the machine it ran on, to bench/RESULTS.md.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { availableParallelism, cpus, release } from "node:os";
import { join } from "node:path";

import { CLI, makeTempHome, type TempHome } from "../test/helpers/cli.js";
import {
  children,
  descendants,
  isAlive,
  killAllNow,
  runChild,
  startOrigin,
  stopChild,
  track,
  type Exit,
  type OriginProcess,
  type RunOptions,
} from "./children.js";
import { makeTestCertificates } from "../test/helpers/origin.js";

const HERE = import.meta.dirname;
const PEERS_DIR = join(HERE, "peers");
const CLIENT = join(HERE, "load-client.mjs");
const WRK_LUA = join(HERE, "wrk-proxy.lua");
const RESULTS = join(HERE, "RESULTS.md");

const ROUNDS = 3;
const HTTP_SECONDS = 3;
const HTTP_WARMUP_SECONDS = 1;
const CHAT_MS = 3000;
const CHAT_WARMUP_MS = 500;
const CHAT_CONNECTIONS = 20;
const DOWNLOAD_MIB = 512;
const TUNNELS = 1000;
const MODEL = "bench-model";

const PEERS = ["squid", "tinyproxy", "mitmproxy"] as const;
type Peer = (typeof PEERS)[number];
const COLUMNS = ["direct", "vallignus", ...PEERS] as const;
type Column = (typeof COLUMNS)[number];
const PROXIES = ["vallignus", ...PEERS] as const;

const log = (text: string) => process.stderr.write(`${text}\n`);

const GROUPS = ["rss", "http", "tunnel", "chat", "micro", "startup"] as const;
/** `--only http,chat`: run just those groups and print, without writing bench/RESULTS.md. */
const only = (() => {
  const arg = process.argv.find((a) => a.startsWith("--only="));
  if (arg === undefined) return undefined;
  const names = arg.slice("--only=".length).split(",");
  const unknown = names.filter((n) => !GROUPS.some((g) => g === n));
  if (unknown.length > 0)
    throw new Error(`--only: unknown group ${unknown.join(",")}; use ${GROUPS.join(",")}`);
  return new Set(names);
})();
const want = (group: (typeof GROUPS)[number]) => only === undefined || only.has(group);

/** Percent of all CPUs busy over `ms`, from /proc/stat (NaN elsewhere). */
async function cpuBusy(ms: number): Promise<number> {
  const read = () => {
    try {
      const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
        .trim()
        .split(/\s+/)
        .slice(1)
        .map(Number);
      const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
      return { idle, total: fields.reduce((a, b) => a + b, 0) };
    } catch {
      return { idle: NaN, total: NaN };
    }
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return 100 * (1 - (b.idle - a.idle) / (b.total - a.total));
}
let busyBefore = Number.NaN;

/** An environment without proxy settings or preloads. */
function withoutProxies(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const dropped = /^(https?_proxy|all_proxy|no_proxy|node_options)$/i;
  return Object.fromEntries(Object.entries(env).filter(([name]) => !dropped.test(name)));
}

const cleanEnv = () => withoutProxies(process.env);

function which(bin: string): string | undefined {
  for (const dir of [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    if (dir !== "" && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = netConnect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Tools: installed with apt-get when missing.

interface Tool {
  readonly bin: string;
  readonly pkg: string;
}
const TOOLS: Record<Peer | "wrk" | "hyperfine", Tool> = {
  squid: { bin: "squid", pkg: "squid" },
  tinyproxy: { bin: "tinyproxy", pkg: "tinyproxy" },
  mitmproxy: { bin: "mitmdump", pkg: "mitmproxy" },
  wrk: { bin: "wrk", pkg: "wrk" },
  hyperfine: { bin: "hyperfine", pkg: "hyperfine" },
};
type ToolName = keyof typeof TOOLS;

/** Installs the missing tools; returns where each one is, or undefined when it is not there. */
function ensureTools(): Record<ToolName, string | undefined> {
  const names = Object.keys(TOOLS) as ToolName[];
  const missing = names.filter((name) => which(TOOLS[name].bin) === undefined);
  if (missing.length > 0) {
    const isRoot = process.getuid?.() === 0;
    const canApt =
      which("apt-get") !== undefined &&
      (isRoot || spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0);
    if (!canApt) {
      log(`install: ${missing.join(", ")} missing; no apt-get or no root/sudo, so they are n/a`);
    } else {
      // sudo drops the environment, so the frontend setting goes through env(1).
      const prefix = isRoot ? [] : ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"];
      const apt = (args: string[]) => {
        const [command, ...rest] = [...prefix, "apt-get", "-o", "DPkg::Lock::Timeout=60", ...args];
        return (
          spawnSync(command ?? "apt-get", rest, {
            env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
            stdio: "ignore",
            timeout: 300_000,
          }).status === 0
        );
      };
      const install = (pkgs: string[]) =>
        apt(["install", "-y", "-qq", "--no-install-recommends", ...pkgs]);
      // No service may start from the packages: we run our own instances. Debian's way is a
      // policy-rc.d that says no; one is put in place only for the install, only if none is there.
      const policyRc = "/usr/sbin/policy-rc.d";
      const ownPolicyRc = isRoot && !existsSync(policyRc);
      if (ownPolicyRc) writeFileSync(policyRc, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
      try {
        const pkgs = missing.map((name) => TOOLS[name].pkg);
        log(`install: apt-get install ${pkgs.join(" ")}`);
        if (!install(pkgs)) {
          apt(["update", "-qq"]);
          if (!install(pkgs)) for (const pkg of pkgs) install([pkg]);
        }
      } finally {
        if (ownPolicyRc) unlinkSync(policyRc);
      }
      for (const name of missing) {
        if (which(TOOLS[name].bin) === undefined)
          log(`install: ${TOOLS[name].pkg} could not be installed; its figures are n/a`);
      }
    }
  }
  return Object.fromEntries(names.map((name) => [name, which(TOOLS[name].bin)])) as Record<
    ToolName,
    string | undefined
  >;
}

function versionOf(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: "utf8", timeout: 10_000 });
  const text = `${r.stdout}\n${r.stderr}`;
  return /(\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? "?";
}

// ---------------------------------------------------------------------------------------------
// Memory.

function rssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] === undefined ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

/** RSS in MB (10^6 bytes) of a process, plus its descendants when `tree`. */
function rssMb(pid: number, tree: boolean): number {
  const pids = tree ? [pid, ...descendants(pid)] : [pid];
  return (pids.reduce((sum, p) => sum + rssKb(p), 0) * 1024) / 1e6;
}

/** Samples a process's RSS every 50 ms until stopped; returns the peak. */
function rssSampler(tree: boolean): { start(pid: number): void; stop(): number } {
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  return {
    start(pid) {
      const sample = () => (peak = Math.max(peak, rssMb(pid, tree)));
      sample();
      timer = setInterval(sample, 50);
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      return peak;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The setup: origin, peers, the authority.

interface PeerProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** mitmproxy's own CA, which its clients trust. */
  caPath?: string;
}

type PeerState = PeerProcess | { unavailable: string };

function fillTemplate(name: string, fields: Record<string, string | number>): string {
  let text = readFileSync(join(PEERS_DIR, name), "utf8");
  for (const [key, value] of Object.entries(fields))
    text = text.replaceAll(`__${key}__`, String(value));
  return text;
}

/** The uid:gid a root squid drops to (cache_effective_user, "proxy" on Debian). */
function proxyUser(): { uid: number; gid: number } | undefined {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("proxy:"));
  const fields = line?.split(":");
  if (fields?.[2] === undefined || fields[3] === undefined) return undefined;
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

async function startPeer(
  peer: Peer,
  bin: string,
  root: string,
  origin: OriginProcess,
  benchCa: string,
  tag: string,
): Promise<PeerProcess> {
  const dir = join(root, `${peer}${tag}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  let args: string[];
  let caPath: string | undefined;
  const logFile = join(dir, "stdout.log");
  if (peer === "squid") {
    writeFileSync(
      join(dir, "squid.conf"),
      fillTemplate("squid.conf", {
        PORT: port,
        DIR: dir,
        ORIGIN_PORTS: `${origin.httpPort} ${origin.httpsPort} ${origin.chatPort}`,
      }),
    );
    // Run as root, squid drops to the "proxy" user: its folder must be that user's.
    const user = process.getuid?.() === 0 ? proxyUser() : undefined;
    if (user !== undefined) chownSync(dir, user.uid, user.gid);
    args = ["-N", "-f", join(dir, "squid.conf")];
  } else if (peer === "tinyproxy") {
    writeFileSync(
      join(dir, "tinyproxy.conf"),
      fillTemplate("tinyproxy.conf", { PORT: port, DIR: dir }),
    );
    args = ["-d", "-c", join(dir, "tinyproxy.conf")];
  } else {
    writeFileSync(
      join(dir, "config.yaml"),
      fillTemplate("mitmproxy.yaml", { PORT: port, BENCH_CA: benchCa }),
    );
    caPath = join(dir, "mitmproxy-ca-cert.pem");
    args = ["--set", `confdir=${dir}`];
  }
  const out = openSync(logFile, "a");
  const child = track(spawn(bin, args, { env: cleanEnv(), stdio: ["ignore", out, out] }));
  closeSync(out);
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(port))) {
    if (!isAlive(child)) {
      const tail = readFileSync(logFile, "utf8").trim().split("\n").slice(-3).join(" / ");
      throw new Error(`${peer} exited at start: ${tail}`);
    }
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`${peer} did not listen within 20 s`);
    }
    await sleep(100);
  }
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    ...(caPath === undefined ? {} : { caPath }),
  };
}

interface Setup {
  root: string;
  home: TempHome;
  env: NodeJS.ProcessEnv;
  origin: OriginProcess;
  benchCa: string;
  localCa: string;
  runFlags: string[];
  peers: Record<Peer, PeerState>;
  /** Starts another, fresh instance of a peer (the memory rows measure fresh processes). */
  startFresh: (peer: Peer) => Promise<PeerProcess>;
  wrk: string | undefined;
}

// ---------------------------------------------------------------------------------------------
// Running a load tool as one column: directly, under `vallignus run`, or through a peer.

/** How a column names the origin: vallignus by name (mapped with --resolve), the rest by IP. */
function originHost(column: Column): string {
  return column === "vallignus" ? "bench.test" : "127.0.0.1";
}

interface ColumnRun {
  exit: Exit;
  /** Peak RSS of the proxy during the run, MB; 0 for direct. */
  peakRssMb: number;
}

async function runAs(
  setup: Setup,
  column: Column,
  argv: readonly string[],
  extra: Partial<RunOptions> = {},
): Promise<ColumnRun> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error("empty command");
  if (column === "vallignus") {
    const sampler = rssSampler(false);
    const exit = await runChild(
      process.execPath,
      [CLI, "run", ...setup.runFlags, "--", command, ...args],
      {
        env: setup.env,
        ...extra,
        onStart: (pid) => {
          sampler.start(pid);
          extra.onStart?.(pid);
        },
      },
    );
    return { exit, peakRssMb: sampler.stop() };
  }
  if (column === "direct") {
    return { exit: await runChild(command, args, { env: cleanEnv(), ...extra }), peakRssMb: 0 };
  }
  const peer = setup.peers[column];
  if ("unavailable" in peer) throw new Error(peer.unavailable);
  const env = {
    ...cleanEnv(),
    HTTP_PROXY: peer.url,
    HTTPS_PROXY: peer.url,
    http_proxy: peer.url,
    https_proxy: peer.url,
  };
  const pid = peer.child.pid;
  const sampler = rssSampler(true);
  if (pid !== undefined) sampler.start(pid);
  const exit = await runChild(command, args, { env, ...extra });
  return { exit, peakRssMb: sampler.stop() };
}

/** The last JSON line of a run's stdout (after an optional "BENCH_JSON " mark). */
function lastJson(label: string, exit: Exit): Record<string, unknown> {
  const line = exit.stdout
    .trim()
    .split("\n")
    .map((l) => l.replace(/^BENCH_JSON /, ""))
    .reverse()
    .find((l) => l.startsWith("{"));
  const json = (line === undefined ? {} : JSON.parse(line)) as Record<string, unknown>;
  if (exit.status !== 0 || line === undefined || "error" in json) {
    const why = `${line ?? "no result"} ${exit.stderr.trim().split("\n").slice(-3).join(" / ")}`;
    throw new Error(`${label} failed (exit ${String(exit.status)}): ${why}`);
  }
  return json;
}

const shellQuote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;

const num = (v: unknown) => (typeof v === "number" ? v : Number.NaN);

// ---------------------------------------------------------------------------------------------
// Results: one row per measure, one cell per column and round.

type Better = "higher" | "lower";

interface Row {
  measure: string;
  better: Better | "none";
  format: (n: number) => string;
  /** Values per column, one per round (NaN when that round failed). */
  values: Partial<Record<Column, number[]>>;
  /** Text for columns with no value. */
  notes: Partial<Record<Column, string>>;
  /** How ratios are shown: vallignus ÷ X, or vallignus − X (for added latency). */
  compare?: "ratio" | "difference";
}

const fmtInt = (n: number) => Math.round(n).toLocaleString("en");
const fmtMs = (n: number) => (Math.abs(n) < 10 ? n.toFixed(3) : n.toFixed(1));
const fmtSigned = (n: number) => `${n >= 0 ? "+" : "−"}${fmtMs(Math.abs(n))}`;
const fmt1 = (n: number) => n.toFixed(1);
const fmt2 = (n: number) => n.toFixed(2);

function median(values: readonly number[]): number {
  const ok = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (ok.length === 0) return Number.NaN;
  const mid = Math.floor(ok.length / 2);
  return ok.length % 2 === 1 ? (ok[mid] ?? Number.NaN) : ((ok[mid - 1] ?? 0) + (ok[mid] ?? 0)) / 2;
}

function newRow(
  measure: string,
  better: Better | "none",
  format: (n: number) => string,
  compare: "ratio" | "difference" = "ratio",
): Row {
  return { measure, better, format, values: {}, notes: {}, compare };
}

function put(row: Row, column: Column, round: number, value: number): void {
  const list = (row.values[column] ??= []);
  list[round] = value;
}

const failures: string[] = [];

function fail(row: Row, column: Column, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  row.notes[column] ??= "failed";
  failures.push(`${row.measure} · ${column}: ${message.slice(0, 400)}`);
  log(`  ${column}: FAILED: ${message.slice(0, 300)}`);
}

function cell(row: Row, column: Column): string {
  const values = row.values[column];
  const m = values === undefined ? Number.NaN : median(values);
  if (Number.isFinite(m)) return row.format(m);
  return row.notes[column] ?? "—";
}

function ratioText(row: Row): string {
  const mine = row.values.vallignus;
  if (mine === undefined || row.better === "none") return "";
  const parts: string[] = [];
  for (const other of ["direct", ...PEERS] as const) {
    const theirs = row.values[other];
    if (theirs === undefined) continue;
    // Per round, then the median: a ratio is never taken across rounds.
    const per = mine.map((v, i) => {
      const t = theirs[i];
      if (t === undefined) return Number.NaN;
      return row.compare === "difference" ? v - t : v / t;
    });
    const m = median(per);
    if (!Number.isFinite(m)) continue;
    parts.push(
      row.compare === "difference"
        ? `${fmtSigned(m)} ms vs ${other}`
        : `${m >= 10 ? m.toFixed(1) : m.toFixed(2)}× ${other}`,
    );
  }
  return parts.join(", ");
}

function table(rows: readonly Row[]): string {
  const lines = [
    "| measure | direct | vallignus | squid | tinyproxy | mitmproxy | ratios (vallignus ÷ or − column) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const row of rows) {
    const cells = COLUMNS.map((c) => cell(row, c));
    const better = row.better === "none" ? "" : row.better === "higher" ? " ↑" : " ↓";
    lines.push(`| ${row.measure}${better} | ${cells.join(" | ")} | ${ratioText(row)} |`);
  }
  return lines.join("\n");
}

/** Marks a row's peer columns that could not run at all. */
function markUnavailable(setup: Setup, row: Row, columns: readonly Column[]): void {
  for (const peer of PEERS) {
    const state = setup.peers[peer];
    if (columns.includes(peer) && "unavailable" in state) row.notes[peer] = state.unavailable;
  }
}

// ---------------------------------------------------------------------------------------------
// Measures.

/** (1), (2): HTTP GET /small through each column; wrk, or the Node load client without wrk. */
async function httpRows(setup: Setup, connections: number, loadRow?: Row): Promise<Row[]> {
  const label = `HTTP GET 100 B JSON, ${connections} conn${connections === 1 ? "" : "s"}`;
  const rps = newRow(`${label}: req/s`, "higher", fmtInt);
  const p50 = newRow(`${label}: p50 latency (ms)`, "lower", fmtMs);
  const p99 = newRow(`${label}: p99 latency (ms)`, "lower", fmtMs);
  const rows = [rps, p50, p99];
  const added =
    connections === 1
      ? [
          newRow(
            `${label}: added p50 latency per request vs direct (ms)`,
            "lower",
            fmtMs,
            "difference",
          ),
          newRow(
            `${label}: added p99 latency per request vs direct (ms)`,
            "lower",
            fmtMs,
            "difference",
          ),
        ]
      : [];
  for (const row of rows) markUnavailable(setup, row, COLUMNS);
  const port = setup.origin.httpPort;
  for (let round = 0; round < ROUNDS; round++) {
    for (const column of COLUMNS) {
      if (column in setup.peers && "unavailable" in setup.peers[column as Peer]) continue;
      const url = `http://${originHost(column)}:${port}/small`;
      try {
        let result: { rps: number; p50: number; p99: number };
        let run: ColumnRun;
        if (setup.wrk !== undefined) {
          const threads = String(Math.min(connections, 2));
          const bin = setup.wrk;
          const wrk = (seconds: number) =>
            [bin, "-t", threads, "-c", String(connections), "-d", `${seconds}s`]
              .concat(["--timeout", "5s", "-s", WRK_LUA, url])
              .map(shellQuote)
              .join(" ");
          // The same proxy process first serves a warm-up load, unmeasured: wrk corrects for
          // coordinated omission, so one start-up stall (JIT, first connection) would otherwise
          // stand in for hundreds of requests in the p99.
          run = await runAs(setup, column, [
            "sh",
            "-c",
            `${wrk(HTTP_WARMUP_SECONDS)} >/dev/null 2>&1; exec ${wrk(HTTP_SECONDS)}`,
          ]);
          const j = lastJson(`wrk ${column}`, run.exit);
          // A proxy that closes the connection after each response without saying so (tinyproxy)
          // makes wrk count a read error per response, and reconnect: a cost, not a failure.
          // Non-2xx answers, timeouts, refused connections or read errors without answers are.
          if (
            num(j["status_errors"]) > 0 ||
            num(j["timeouts"]) > 0 ||
            num(j["connect_errors"]) > 0 ||
            num(j["write_errors"]) > connections ||
            num(j["read_errors"]) > num(j["requests"]) + connections
          ) {
            throw new Error(`errors: ${JSON.stringify(j)}`);
          }
          if (column !== "direct" && j["proxy"] === "")
            throw new Error("wrk did not use the proxy");
          result = {
            rps: num(j["requests"]) / (num(j["duration_us"]) / 1e6),
            p50: num(j["p50_us"]) / 1000,
            p99: num(j["p99_us"]) / 1000,
          };
        } else {
          run = await runAs(setup, column, [
            process.execPath,
            CLIENT,
            "http",
            "--via",
            column === "direct" ? "direct" : "proxy",
            "--host",
            originHost(column),
            "--port",
            String(port),
            "--connections",
            String(connections),
            "--duration-ms",
            String(HTTP_SECONDS * 1000),
          ]);
          const j = lastJson(`load-client ${column}`, run.exit);
          result = { rps: num(j["rps"]), p50: num(j["p50_ms"]), p99: num(j["p99_ms"]) };
        }
        put(rps, column, round, result.rps);
        put(p50, column, round, result.p50);
        put(p99, column, round, result.p99);
        if (loadRow !== undefined && column !== "direct")
          put(loadRow, column, round, run.peakRssMb);
        log(
          `  ${label} ${column.padEnd(9)} round ${round + 1}: ${fmtInt(result.rps)} req/s, ` +
            `p50 ${fmtMs(result.p50)} ms, p99 ${fmtMs(result.p99)} ms`,
        );
      } catch (err) {
        fail(rps, column, err);
        p50.notes[column] = p99.notes[column] = "failed";
      }
    }
  }
  const [addP50, addP99] = added;
  if (addP50 !== undefined && addP99 !== undefined) {
    for (const column of PROXIES) {
      for (let round = 0; round < ROUNDS; round++) {
        const d50 = (p50.values[column]?.[round] ?? NaN) - (p50.values.direct?.[round] ?? NaN);
        const d99 = (p99.values[column]?.[round] ?? NaN) - (p99.values.direct?.[round] ?? NaN);
        put(addP50, column, round, d50);
        put(addP99, column, round, d99);
      }
      addP50.notes[column] = p50.notes[column] ?? "—";
      addP99.notes[column] = p99.notes[column] ?? "—";
    }
    addP50.notes.direct = addP99.notes.direct = "0 (baseline)";
    // Between proxies the difference of added latencies is the direct one: show vallignus − X.
    rows.push(addP50, addP99);
  }
  return rows;
}

/** (3): a 512 MiB HTTPS download through each column's CONNECT tunnel. */
async function downloadRow(setup: Setup): Promise<Row> {
  const row = newRow(`CONNECT tunnel, ${DOWNLOAD_MIB} MiB HTTPS download: MB/s`, "higher", fmtInt);
  markUnavailable(setup, row, COLUMNS);
  for (let round = 0; round < ROUNDS; round++) {
    for (const column of COLUMNS) {
      if (column in setup.peers && "unavailable" in setup.peers[column as Peer]) continue;
      try {
        const run = await runAs(setup, column, [
          process.execPath,
          CLIENT,
          "download",
          "--via",
          column === "direct" ? "direct" : "proxy",
          "--host",
          "bench.test",
          "--connect-host",
          originHost(column),
          "--port",
          String(setup.origin.httpsPort),
          "--ca",
          setup.benchCa,
          "--mib",
          String(DOWNLOAD_MIB),
          "--timeout-ms",
          "60000",
        ]);
        const j = lastJson(`download ${column}`, run.exit);
        put(row, column, round, num(j["mb_per_s"]));
        log(
          `  download ${column.padEnd(9)} round ${round + 1}: ${fmtInt(num(j["mb_per_s"]))} MB/s`,
        );
      } catch (err) {
        fail(row, column, err);
      }
    }
  }
  return row;
}

/**
 * (4): chat completions at 20 keep-alive TLS connections. `opaque`: CONNECT tunnels, TLS end to
 * end with the origin (name bench.test, which no proxy intercepts). `metered`: the name
 * api.openai.com, which Vallignus intercepts and meters and mitmproxy intercepts; squid and
 * tinyproxy cannot look inside TLS.
 */
async function chatRow(
  setup: Setup,
  kind: "opaque" | "metered",
  stream: boolean,
  loadRow?: Row,
): Promise<Row> {
  const what = stream ? "SSE" : "JSON";
  const how = kind === "opaque" ? "opaque tunnel" : "metered / intercepted";
  const row = newRow(
    `HTTPS chat completions ${what}, ${CHAT_CONNECTIONS} conns, ${how}: req/s`,
    "higher",
    fmtInt,
  );
  const columns: Column[] = kind === "opaque" ? [...COLUMNS] : ["direct", "vallignus", "mitmproxy"];
  if (kind === "metered") row.notes.squid = row.notes.tinyproxy = "— (tunnels only)";
  markUnavailable(setup, row, columns);
  for (let round = 0; round < ROUNDS; round++) {
    for (const column of columns) {
      const peer = column in setup.peers ? setup.peers[column as Peer] : undefined;
      if (peer !== undefined && "unavailable" in peer) continue;
      const host = kind === "opaque" ? "bench.test" : "api.openai.com";
      const ca =
        kind === "opaque" || column === "direct"
          ? setup.benchCa
          : column === "vallignus"
            ? setup.localCa
            : ((peer !== undefined && "caPath" in peer ? peer.caPath : undefined) ?? setup.benchCa);
      try {
        const run = await runAs(setup, column, [
          process.execPath,
          CLIENT,
          "chat",
          "--via",
          column === "direct" ? "direct" : "proxy",
          "--host",
          host,
          "--connect-host",
          column === "vallignus" ? host : "127.0.0.1",
          "--port",
          String(setup.origin.chatPort),
          "--ca",
          ca,
          "--model",
          MODEL,
          "--connections",
          String(CHAT_CONNECTIONS),
          "--duration-ms",
          String(CHAT_MS),
          "--warmup-ms",
          String(CHAT_WARMUP_MS),
          ...(stream ? ["--stream"] : []),
        ]);
        const j = lastJson(`chat ${column}`, run.exit);
        if (num(j["non200"]) > 0 || num(j["incomplete"]) > 0) {
          throw new Error(`bad answers: ${JSON.stringify(j)}`);
        }
        put(row, column, round, num(j["rps"]));
        if (loadRow !== undefined && column !== "direct")
          put(loadRow, column, round, run.peakRssMb);
        log(
          `  chat ${what} ${kind} ${column.padEnd(9)} round ${round + 1}: ${fmtInt(num(j["rps"]))} req/s, ` +
            `p50 ${fmtMs(num(j["p50_ms"]))} ms, p99 ${fmtMs(num(j["p99_ms"]))} ms`,
        );
      } catch (err) {
        fail(row, column, err);
      }
    }
  }
  return row;
}

/** (6): RSS idle and with 1,000 idle CONNECT tunnels, for every proxy. */
async function tunnelRows(setup: Setup): Promise<Row[]> {
  const idle = newRow("proxy RSS, idle (MB)", "lower", fmt1);
  const open = newRow(
    `proxy RSS, ${fmtInt(TUNNELS)} idle CONNECT tunnels open (MB)`,
    "lower",
    fmt1,
  );
  for (const row of [idle, open]) {
    row.notes.direct = "—";
    markUnavailable(setup, row, COLUMNS);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const column of PROXIES) {
      const state = column === "vallignus" ? undefined : setup.peers[column];
      if (state !== undefined && "unavailable" in state) continue;
      let peer: PeerProcess | undefined;
      if (column !== "vallignus") {
        try {
          peer = await setup.startFresh(column);
        } catch (err) {
          fail(open, column, err);
          continue;
        }
      }
      const freshSetup: Setup =
        column === "vallignus" || peer === undefined
          ? setup
          : { ...setup, peers: { ...setup.peers, [column]: peer } };
      let proxyPid: number | undefined = peer?.child.pid;
      const sample = () => (proxyPid === undefined ? NaN : rssMb(proxyPid, column !== "vallignus"));
      try {
        let idleMb = NaN;
        let openMb = NaN;
        let opened = 0;
        const run = await runAs(
          freshSetup,
          column,
          [
            process.execPath,
            CLIENT,
            "tunnels",
            "--via",
            "proxy",
            "--host",
            "bench.test",
            "--connect-host",
            originHost(column),
            "--port",
            String(setup.origin.httpsPort),
            "--count",
            String(TUNNELS),
            "--timeout-ms",
            "60000",
          ],
          {
            onStart: (pid) => {
              if (column === "vallignus") proxyPid = pid;
            },
            onLine: (line, child) => {
              if (!line.startsWith("{")) return;
              const j = JSON.parse(line) as Record<string, unknown>;
              if (j["phase"] === "idle") {
                void sleep(500).then(() => {
                  idleMb = sample();
                  child.stdin?.write("open\n");
                });
              } else if (j["phase"] === "open") {
                opened = num(j["tunnels"]);
                void sleep(1000).then(() => {
                  openMb = sample();
                  child.stdin?.end("close\n");
                });
              }
            },
          },
        );
        lastJson(`tunnels ${column}`, run.exit);
        if (opened !== TUNNELS) throw new Error(`only ${opened} tunnels opened`);
        put(idle, column, round, idleMb);
        put(open, column, round, openMb);
        log(
          `  RSS ${column.padEnd(9)} round ${round + 1}: idle ${fmt1(idleMb)} MB, ` +
            `${TUNNELS} tunnels ${fmt1(openMb)} MB`,
        );
      } catch (err) {
        fail(open, column, err);
        idle.notes[column] = "failed";
      }
      if (peer !== undefined) await stopChild(peer.child);
      await sleep(300);
    }
  }
  return [idle, open];
}

/** (5): in-process costs, from the micro-benchmarks in bench/. */
async function microRows(): Promise<Row[]> {
  const tsx = (file: string, args: string[] = []) =>
    runChild(process.execPath, ["--import", "tsx", join(HERE, file), ...args], {
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
  const usageSse = newRow("usage parsing, OpenAI SSE stream (ms per MB)", "lower", fmt2);
  const usageJson = newRow("usage parsing, JSON body (ms per MB)", "lower", fmt2);
  const policy = newRow("policy decision, 1,000 patterns (µs per decision)", "lower", (n) =>
    n.toFixed(3),
  );
  const tokenMem = newRow("token verification, in-memory keys (µs)", "lower", fmt1);
  const tokenDisk = newRow("token verification, VALLIGNUS_HOME on disk (µs)", "lower", fmt1);
  const rows = [usageSse, usageJson, policy, tokenMem, tokenDisk];
  for (const row of rows) {
    row.better = "none";
    for (const column of ["direct", ...PEERS] as const) row.notes[column] = "—";
  }
  try {
    const j = lastJson("usage-parse", await tsx("usage-parse.ts", ["--json"]));
    put(usageSse, "vallignus", 0, num(j["sse_ms_per_mb"]));
    put(usageJson, "vallignus", 0, num(j["json_ms_per_mb"]));
  } catch (err) {
    fail(usageSse, "vallignus", err);
  }
  try {
    const out = (await tsx("policy-decision.ts")).stdout;
    const m = /cost per decision \| ([\d.]+) µs/.exec(out);
    if (m?.[1] === undefined) throw new Error(`unexpected output: ${out}`);
    put(policy, "vallignus", 0, Number(m[1]));
  } catch (err) {
    fail(policy, "vallignus", err);
  }
  for (let round = 0; round < ROUNDS; round++) {
    try {
      const out = (await tsx("tokens.ts")).stdout;
      const mem = /verifyToken \(in-memory view\) \| [\d,]+ \| ([\d.]+)/.exec(out)?.[1];
      const disk = /verifyToken \(VALLIGNUS_HOME on disk\) \| [\d,]+ \| ([\d.]+)/.exec(out)?.[1];
      if (mem === undefined || disk === undefined) throw new Error(`unexpected output: ${out}`);
      put(tokenMem, "vallignus", round, Number(mem));
      put(tokenDisk, "vallignus", round, Number(disk));
    } catch (err) {
      fail(tokenMem, "vallignus", err);
    }
  }
  log(`  micro: ${rows.map((r) => `${r.measure} = ${cell(r, "vallignus")}`).join("; ")}`);
  return rows;
}

/**
 * (7): `vallignus run -- true` against `true` alone (hyperfine), with a fresh token, with
 * --isolate, and with the token the bench has used (its ledger holds every metered call above,
 * and `run` reads the whole ledger at start).
 */
async function startupRows(setup: Setup, hyperfine: string | undefined): Promise<Row[]> {
  const ledgerLines = readdirSync(join(setup.home.home, "ledger"))
    .filter((f) => f.endsWith(".jsonl"))
    .reduce(
      (n, f) => n + readFileSync(join(setup.home.home, "ledger", f), "utf8").split("\n").length - 1,
      0,
    );
  const plain = newRow(
    "`run -- true` vs `true`, fresh token: wall (ms)",
    "lower",
    fmt1,
    "difference",
  );
  const isolated = newRow(
    "`run --isolate -- true` vs `true`, fresh token: wall (ms)",
    "lower",
    fmt1,
    "difference",
  );
  const used = newRow(
    `\`run -- true\` vs \`true\`, the bench's token (ledger of ${fmtInt(ledgerLines)} lines): wall (ms)`,
    "lower",
    fmt1,
    "difference",
  );
  const rows = [plain, isolated, used];
  for (const row of rows) for (const column of PEERS) row.notes[column] = "—";
  if (hyperfine === undefined) {
    for (const row of rows) row.notes.vallignus = row.notes.direct = "n/a (not installable)";
    return rows;
  }
  const fresh = setup.home
    .ok("auth", "issue-token", "--agent-id", "bench-agent", "--policy-id", "bench", "--ttl", "1h")
    .trim();
  const usedToken = setup.env["VALLIGNUS_TOKEN"] ?? "";
  const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
  const run = (token: string, flags: string) =>
    `${quote(process.execPath)} ${quote(CLI)} run --token ${token}${flags} -- true`;
  const probe = spawnSync(
    process.execPath,
    [CLI, "run", "--token", fresh, "--isolate", "--", "true"],
    { env: setup.env, encoding: "utf8", timeout: 30_000 },
  );
  const canIsolate = probe.status === 0;
  if (!canIsolate) {
    isolated.notes.vallignus = "n/a (--isolate unavailable)";
    failures.push(`--isolate probe: ${probe.stderr.trim()}`);
  }
  const json = join(setup.root, "hyperfine.json");
  const commands = [
    "true",
    run(fresh, ""),
    run(usedToken, ""),
    ...(canIsolate ? [run(fresh, " --isolate")] : []),
  ];
  try {
    const exit = await runChild(
      hyperfine,
      [
        "-N",
        "--style",
        "none",
        "--warmup",
        "3",
        "--runs",
        "20",
        "--export-json",
        json,
        ...commands,
      ],
      { env: setup.env, timeoutMs: 180_000 },
    );
    if (exit.status !== 0) throw new Error(exit.stderr.trim());
    const results = (JSON.parse(readFileSync(json, "utf8")) as { results: { median: number }[] })
      .results;
    const [trueMs, runMs, usedMs, isoMs] = results.map((r) => r.median * 1000);
    if (trueMs === undefined || runMs === undefined || usedMs === undefined)
      throw new Error("hyperfine: no results");
    for (const [row, ms] of [
      [plain, runMs],
      [used, usedMs],
      [isolated, isoMs],
    ] as const) {
      if (ms === undefined) continue;
      put(row, "direct", 0, trueMs);
      put(row, "vallignus", 0, ms);
    }
    log(
      `  startup: true ${fmt1(trueMs)} ms, run ${fmt1(runMs)} ms, used token ${fmt1(usedMs)} ms` +
        (isoMs === undefined ? "" : `, --isolate ${fmt1(isoMs)} ms`),
    );
  } catch (err) {
    fail(plain, "vallignus", err);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------

function machine(tools: Record<ToolName, string | undefined>, root: string): string[] {
  const nproc = spawnSync("nproc", { encoding: "utf8" });
  const cores = nproc.status === 0 ? nproc.stdout.trim() : `${availableParallelism()} (os)`;
  let model = cpus()[0]?.model ?? "unknown";
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (match?.[1] !== undefined) model = match[1].trim();
  } catch {
    // Not Linux: os.cpus() it is.
  }
  let os = "unknown";
  try {
    os = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // No os-release.
  }
  const mem = /^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
  const fs = spawnSync("df", ["--output=fstype", root], { encoding: "utf8" })
    .stdout.trim()
    .split("\n")[1];
  const v = (name: ToolName, args: string[]) => {
    const bin = tools[name];
    return bin === undefined ? `${name} n/a` : `${name} ${versionOf(bin, args)}`;
  };
  return [
    `- date: ${new Date().toISOString()}`,
    `- machine: nproc ${cores}, CPU ${model}, ${mem === undefined ? "?" : (Number(mem) / 1e6).toFixed(1)} GB RAM, ${os}, Linux ${release()}`,
    `- node ${process.version}; ${[
      v("squid", ["-v"]),
      v("tinyproxy", ["-v"]),
      v("mitmproxy", ["--version"]),
      v("wrk", ["-v"]),
      v("hyperfine", ["--version"]),
    ].join(", ")}`,
    `- VALLIGNUS_HOME (audit log, ledger) on ${fs ?? "?"} (fsync is real)`,
    `- CPU busy in the second before the bench began: ${busyBefore.toFixed(0)}% ` +
      "(other work on the machine would show in every figure)",
  ];
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const started = performance.now();
  busyBefore = await cpuBusy(1000);
  const tools = ensureTools();
  const home = makeTempHome("vallignus-bench-");
  // A root squid drops to the "proxy" user, which must reach its folder inside ours.
  chmodSync(home.root, 0o711);
  const cleanup = () => {
    killAllNow();
    home.cleanup();
  };
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => () => {
    if (stopping) {
      cleanup();
      process.exit(130);
    }
    stopping = true;
    log(`bench: stopped by ${sig}; stopping what it started`);
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
    const root = home.root;
    const certs = await makeTestCertificates(["bench.test", "api.openai.com"]);
    const benchCa = join(root, "bench-ca.pem");
    const certPath = join(root, "origin-cert.pem");
    const keyPath = join(root, "origin-key.pem");
    writeFileSync(benchCa, certs.caPem, { mode: 0o644 });
    writeFileSync(certPath, certs.certPem);
    writeFileSync(keyPath, certs.keyPem, { mode: 0o600 });
    const origin = await startOrigin(certPath, keyPath);
    const { httpPort, httpsPort, chatPort } = origin;
    log(`origin: http ${httpPort}, https ${httpsPort}, chat ${chatPort}`);

    home.ok("auth", "init");
    home.ok("auth", "create-agent", "--agent-id", "bench-agent", "--owner", "bench@example.com");
    home.ok(
      "auth",
      "create-policy",
      "--policy-id",
      "bench",
      "--max-spend-usd",
      "100000",
      "--allowed-domains",
      [httpPort, httpsPort, chatPort]
        .map((p) => `bench.test:${p}`)
        .concat(`api.openai.com:${chatPort}`)
        .join(","),
      "--price",
      `${MODEL}=0.15/0.6`,
    );
    const token = home
      .ok("auth", "issue-token", "--agent-id", "bench-agent", "--policy-id", "bench", "--ttl", "2h")
      .trim();
    const tmp = join(root, "tmp");
    mkdirSync(tmp);
    const resolves = [httpPort, httpsPort, chatPort]
      .map((p) => `bench.test:${p}:127.0.0.1`)
      .concat(`api.openai.com:${chatPort}:127.0.0.1`);

    const peers = {} as Record<Peer, PeerState>;
    let freshCount = 0;
    for (const peer of PEERS) {
      const bin = tools[peer];
      if (bin === undefined) {
        peers[peer] = { unavailable: "n/a (not installable)" };
        continue;
      }
      try {
        const started = await startPeer(peer, bin, root, origin, benchCa, "");
        peers[peer] = started;
        log(`${peer}: listening on 127.0.0.1:${started.port}`);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        failures.push(`${peer}: ${message}`);
        peers[peer] = { unavailable: "n/a (did not start)" };
      }
    }
    const setup: Setup = {
      root,
      home,
      env: withoutProxies({ ...home.env, VALLIGNUS_TOKEN: token, TMPDIR: tmp }),
      origin,
      benchCa,
      localCa: join(home.home, "ca", "ca-cert.pem"),
      runFlags: [...resolves.flatMap((r) => ["--resolve", r]), "--upstream-ca", benchCa],
      peers,
      startFresh: (peer) => {
        const bin = tools[peer];
        if (bin === undefined) throw new Error(`${peer} is not installed`);
        return startPeer(peer, bin, root, origin, benchCa, `-fresh${++freshCount}`);
      },
      wrk: tools.wrk,
    };

    log("\n(6) memory: idle and 1,000 idle tunnels");
    const rss = want("rss") ? await tunnelRows(setup) : [];
    const loadHttp = newRow("proxy RSS, peak during the 50-conn HTTP load (MB)", "lower", fmt1);
    const loadChat = newRow("proxy RSS, peak during the metered chat load (MB)", "lower", fmt1);
    loadHttp.notes.direct = loadChat.notes.direct = "—";
    loadChat.notes.squid = loadChat.notes.tinyproxy = "—";
    markUnavailable(setup, loadHttp, COLUMNS);
    markUnavailable(setup, loadChat, COLUMNS);
    log("\n(1) HTTP, 50 connections");
    const http50 = want("http") ? await httpRows(setup, 50, loadHttp) : [];
    log("\n(2) HTTP, 1 connection");
    const http1 = want("http") ? await httpRows(setup, 1) : [];
    log("\n(3) CONNECT tunnel download");
    const download = want("tunnel") ? await downloadRow(setup) : undefined;
    log("\n(4) chat completions");
    const chatOpaque = want("chat") ? await chatRow(setup, "opaque", false) : undefined;
    const chatJson = want("chat") ? await chatRow(setup, "metered", false, loadChat) : undefined;
    const chatSse = want("chat") ? await chatRow(setup, "metered", true) : undefined;
    log("\n(5) in-process costs");
    const micro = want("micro") ? await microRows() : [];
    log("\n(7) startup");
    const startup = want("startup") ? await startupRows(setup, tools.hyperfine) : [];
    const seconds = (performance.now() - started) / 1000;

    const rows = [
      ...http50,
      ...http1,
      download,
      chatOpaque,
      chatJson,
      chatSse,
      rss[0],
      loadHttp,
      loadChat,
      rss[1],
      ...micro,
      ...startup,
    ]
      .filter((r): r is Row => r !== undefined)
      // A partial run leaves the load-peak rows of groups it skipped empty.
      .filter((r) => only === undefined || Object.keys(r.values).length > 0);
    const text = [
      "# Benchmark results",
      "",
      "Written by `npm run bench` (bench/all.ts); rerun it to refresh. Figures from one machine, one run.",
      "",
      ...machine(tools, root),
      `- took ${seconds.toFixed(0)} s`,
      "",
      table(rows),
      "",
      "How to read it:",
      "",
      `- Each figure is the median of ${ROUNDS} rounds; in a round every column runs once, back to back, ` +
        "and each ratio (vallignus ÷ column, or vallignus − column for added latency) is taken inside " +
        "its round before the median is taken. ↑ higher is better, ↓ lower is better.",
      "- Loopback only. The origin (bench/origin.mjs), the proxy and the load tool are separate " +
        "processes on the same 2 cores, so the load tool's own CPU use is part of every figure.",
      `- HTTP rows: wrk (${HTTP_SECONDS} s, 2 threads; 1 thread at 1 connection), after a ${HTTP_WARMUP_SECONDS} s unmeasured warm-up load on the same proxy process ` +
        "(wrk corrects for coordinated omission, so a single start-up stall would otherwise fill " +
        "the p99); the proxy gets absolute-form URLs through bench/wrk-proxy.lua; keep-alive where the proxy offers it (tinyproxy " +
        "closes the client connection after every response). Vallignus reaches the origin as " +
        "bench.test via `--resolve`; the peers and direct use 127.0.0.1, so no one does a DNS lookup.",
      `- Tunnel row: bench/load-client.mjs, CONNECT then TLS 1.3 to the origin, one ${DOWNLOAD_MIB} MiB ` +
        "body; MB = 10^6 bytes. mitmproxy passes bench.test through (`ignore_hosts`) in tunnel rows.",
      `- Chat rows: ${CHAT_CONNECTIONS} keep-alive TLS connections sending POST /v1/chat/completions ` +
        `back to back for ${CHAT_MS / 1000} s after a ${CHAT_WARMUP_MS / 1000} s warm-up. Metered: the ` +
        "name api.openai.com, which Vallignus intercepts with its local CA (`--upstream-ca` trusts the " +
        "bench origin), reserving and settling each call in the fsync'd ledger and writing the audit " +
        "log; mitmproxy intercepts the same name with its own CA (made in the bench's temporary " +
        "folder). SSE requests do not set stream_options.include_usage, so Vallignus injects it and " +
        "hides the extra chunk, as it does for SDK defaults.",
      "- RSS: Vallignus is the `vallignus run` process (the proxy is in it); a peer is its process " +
        "tree. Idle: half a second after the load client started; tunnels: one second after all " +
        `${fmtInt(TUNNELS)} CONNECTs to the origin's HTTPS port were answered 200 and left idle.`,
      "- In-process rows: bench/usage-parse.ts, bench/policy-decision.ts, bench/tokens.ts " +
        `(tokens: median of ${ROUNDS} runs). Start-up rows: hyperfine -N, median of 20 runs after ` +
        "3 warm-ups; the ratio column gives what `run` adds to `true`. A fresh token has an empty " +
        "ledger; the bench's own token, after the metered rows, shows what a long-used token costs " +
        "(`run` opens its ledger from the checkpoint written when the last run closed it).",
      "- Every peer logs each request, as Vallignus's audit log does: squid's access.log, " +
        "tinyproxy at LogLevel Info, mitmdump's default flow lines (to a file). Configs: bench/peers/.",
      ...(failures.length === 0 ? [] : ["", "Failures:", "", ...failures.map((f) => `- ${f}`)]),
      "",
    ].join("\n");
    if (only !== undefined) {
      // A partial run is for working on one measure: it never replaces the full results.
      console.log(text);
      return;
    }
    writeFileSync(RESULTS, text);
    // Formatted as the repository's own check (`prettier --check .`) expects.
    const prettier = join(HERE, "..", "node_modules", ".bin", "prettier");
    if (existsSync(prettier)) spawnSync(prettier, ["--write", RESULTS], { stdio: "ignore" });
    console.log(readFileSync(RESULTS, "utf8"));
  } finally {
    for (const [sig, handler] of handlers) process.off(sig, handler);
    await Promise.all([...children].map((c) => stopChild(c, 3000)));
    cleanup();
  }
}

main().catch((err: unknown) => {
  log(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
