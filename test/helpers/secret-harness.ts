import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { join, relative, resolve } from "node:path";

import { CLI, spawnToEnd, type CliResult } from "./cli.js";
import { meteredHarness, startTlsProvider, type MeteredHarness } from "./metered-harness.js";

/** The agent the tests run: it runs a list of cases (curl, python3, the SDKs…) in order. */
export const PROBE = resolve(import.meta.dirname, "../fixtures/secret-probe.mjs");

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A fresh key of a provider's shape: its public prefix, then `rest` random letters and digits. */
export function secretValue(prefix: string, rest = 40): string {
  let text = prefix;
  for (let i = 0; i < rest; i++) text += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)] ?? "x";
  return text;
}

/** What an origin received: one request, whole. */
export interface Hit {
  readonly method: string;
  readonly host: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/**
 * Origins of the test's own on 127.0.0.1: `plain.test` over HTTP, and over HTTPS (a throwaway
 * CA) every name in `tlsNames`. Each answers `{"ok":true}` and echoes nothing it received, so
 * that a key it got can only show in `hits`.
 */
export interface Origins {
  readonly plainPort: number;
  readonly tlsPort: number;
  readonly caPem: string;
  readonly hits: Hit[];
  close(): Promise<void>;
}

export async function startOrigins(tlsNames: readonly string[]): Promise<Origins> {
  const hits: Hit[] = [];
  const answer = (req: IncomingMessage, res: ServerResponse, body: string) => {
    hits.push({
      method: req.method ?? "",
      host: req.headers.host ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body,
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ok":true}');
  };
  const plain: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => answer(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  await new Promise<void>((done) => plain.listen(0, "127.0.0.1", done));
  // Trusted beside the fake providers' CA, so named apart from it.
  const tls = await startTlsProvider(tlsNames, answer, "CN=Vallignus test origins CA");
  return {
    plainPort: (plain.address() as AddressInfo).port,
    tlsPort: tls.port,
    caPem: tls.caPem,
    hits,
    close: async () => {
      plain.closeAllConnections();
      tls.server.closeAllConnections();
      await Promise.all([
        new Promise((done) => plain.close(done)),
        new Promise((done) => tls.server.close(done)),
      ]);
    },
  };
}

/** One case of the probe (see test/fixtures/secret-probe.mjs). */
export type ProbeCase = { readonly name: string; readonly kind: string } & Record<string, unknown>;

/** What the probe reported of one case: the HTTP status it got and the body. */
export interface ProbeResult {
  readonly status: number;
  readonly body: string;
  readonly err?: string;
}

export interface RunOptions {
  /** `--isolate`, from a working folder it accepts (the harness's root), HOME beside it. */
  readonly isolate?: boolean;
  /** More environment for `vallignus run` itself (the command inherits what run passes on). */
  readonly env?: NodeJS.ProcessEnv;
  /** More flags between `run` and `--`. */
  readonly flags?: readonly string[];
}

/**
 * A home in front of the fake providers (api.openai.com, api.anthropic.com) and the test's
 * origins, where every command's output is kept so that a test can check that no secret
 * value ever showed in any.
 */
export interface SecretsHarness {
  readonly h: MeteredHarness;
  readonly origins: Origins;
  /** Every stdout and stderr of every command run through the harness, and the probe's. */
  readonly outputs: string[];
  /** `host:port` of every origin host, as allowed-domains and --resolve write them. */
  readonly hostPorts: Readonly<Record<string, string>>;
  cli(args: readonly string[], input?: string): CliResult;
  /** `auth set-secret` (or another command taking a value) with the value on stdin. */
  withValue(args: readonly string[], value: string): CliResult;
  /** A policy for agent "bot" allowing every origin host, with `flags` added; its token. */
  policy(id: string, flags: readonly string[]): string;
  /** `vallignus run [--upstream-ca --resolve… flags] -- command`, to its end. */
  run(token: string, command: readonly string[], options?: RunOptions): Promise<CliResult>;
  /** Runs the probe on `cases`; the results by case name. */
  probe(
    token: string,
    cases: readonly ProbeCase[],
    options?: RunOptions,
  ): Promise<{ result: CliResult; out: Record<string, ProbeResult> }>;
  /** Files under $VALLIGNUS_HOME holding `text` in any case, relative to it. */
  filesHolding(text: string): string[];
  close(): Promise<void>;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return walk(path);
    return entry.isFile() ? [path] : [];
  });
}

function parseProbe(result: CliResult): Record<string, ProbeResult> {
  const out: Record<string, ProbeResult> = {};
  for (const line of result.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const parsed = JSON.parse(line) as ProbeResult & { name: string };
    out[parsed.name] = parsed;
  }
  return out;
}

export async function secretsHarness(
  prefix: string,
  tlsNames: readonly string[],
): Promise<SecretsHarness> {
  const h = await meteredHarness(prefix, "", ["api.openai.com", "api.anthropic.com"]);
  const origins = await startOrigins(tlsNames);
  // The proxy trusts both fakes' CAs when it is the TLS client (inspected and metered hosts).
  writeFileSync(h.caFile, `${h.fake.caPem}\n${origins.caPem}\n`);
  // An isolated command runs as another uid: it reads its cases and writes its marks here.
  chmodSync(h.root, 0o777);
  const hostPorts: Record<string, string> = {
    "api.openai.com": `api.openai.com:${h.fake.port}`,
    "api.anthropic.com": `api.anthropic.com:${h.fake.port}`,
    "plain.test": `plain.test:${origins.plainPort}`,
  };
  for (const name of tlsNames) hostPorts[name] = `${name}:${origins.tlsPort}`;
  const outputs: string[] = [];
  const keep = (r: CliResult): CliResult => {
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const withValue = (args: readonly string[], value: string): CliResult => {
    const r = spawnSync(process.execPath, [CLI, ...args], {
      env: h.env,
      input: `${value}\n`,
      encoding: "utf8",
    });
    return keep({ status: r.status, stdout: r.stdout, stderr: r.stderr });
  };
  const cli = (args: readonly string[], input?: string): CliResult => {
    const r = spawnSync(process.execPath, [CLI, ...args], {
      env: h.env,
      encoding: "utf8",
      ...(input === undefined ? {} : { input }),
    });
    return keep({ status: r.status, stdout: r.stdout, stderr: r.stderr });
  };
  const ok = (args: readonly string[]): string => {
    const r = cli(args);
    assert.equal(r.status, 0, `vallignus ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const run = async (token: string, command: readonly string[], options: RunOptions = {}) => {
    const args = [
      CLI,
      "run",
      "--upstream-ca",
      h.caFile,
      ...Object.values(hostPorts).flatMap((hp) => ["--resolve", `${hp}:127.0.0.1`]),
      ...(options.isolate === true ? ["--isolate"] : []),
      ...(options.flags ?? []),
      "--",
      ...command,
    ];
    const env: NodeJS.ProcessEnv = { ...h.env, ...options.env, VALLIGNUS_TOKEN: token };
    // Beside the working folder, not in it: --isolate refuses to make a home folder writable.
    if (options.isolate === true) env["HOME"] = `${h.root}-home`;
    return keep(await spawnToEnd(process.execPath, args, { env, cwd: h.root }));
  };
  let probes = 0;
  return {
    h,
    origins,
    outputs,
    hostPorts,
    cli,
    withValue,
    policy: (id, flags) => {
      ok([
        "auth",
        "create-policy",
        "--policy-id",
        id,
        "--max-spend-usd",
        "1",
        "--allowed-domains",
        Object.values(hostPorts).join(","),
        "--price",
        "fake-gpt=1/2",
        "--price",
        "fake-claude=3/15",
        ...flags,
      ]);
      return ok(["auth", "issue-token", "--agent-id", "bot", "--policy-id", id]).trim();
    },
    run,
    probe: async (token, cases, options) => {
      const file = join(h.root, `cases-${++probes}.json`);
      writeFileSync(file, JSON.stringify(cases));
      chmodSync(file, 0o644);
      const result = await run(token, [process.execPath, PROBE, file], options);
      return { result, out: parseProbe(result) };
    },
    filesHolding: (text) =>
      walk(h.home)
        .filter((file) => readFileSync(file, "latin1").toLowerCase().includes(text.toLowerCase()))
        .map((file) => relative(h.home, file)),
    close: () => Promise.all([h.close(), origins.close()]).then(() => undefined),
  };
}
