import { readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

import { CLI, makeTempHome, spawnToEnd, type CliResult, type TempHome } from "./cli.js";
import { startFakeProviders, type FakeProviders } from "./fake-providers.js";
import { makeTestCertificates } from "./origin.js";

/** One audit line, as parsed JSON. */
export type AuditLine = Record<string, unknown>;

/** How a metered run reaches the provider, and what it runs. */
export interface RunSpec {
  /** Flags between `run` and `--`. */
  readonly flags?: readonly string[];
  /** Leave out `--upstream-ca`, so the provider's certificate is not trusted. */
  readonly trustUpstream?: boolean;
}

/**
 * A home set up for end-to-end metering tests: authority initialised, agent "bot" created, the
 * provider's CA in `caFile` and the test's agent script in `agentFile`, with every host named
 * routed to the provider on 127.0.0.1.
 */
export interface MeteredHome extends TempHome {
  readonly caFile: string;
  readonly agentFile: string;
  /** The provider's port on 127.0.0.1. */
  readonly port: number;
  /**
   * A policy of its own for agent "bot" (the hosts allowed, at the provider's port; `prices` as
   * `--price` values), and a token for it.
   */
  tokenFor(
    policyId: string,
    options: { spendUsd: string; prices?: readonly string[]; models?: string },
  ): string;
  /** The arguments of `vallignus run [--upstream-ca] [--resolve…] [flags] -- <command>`. */
  runArgs(command: readonly string[], spec?: RunSpec): string[];
  /** `vallignus run` of the agent script with `args`, the token in VALLIGNUS_TOKEN, to its end. */
  runAgent(
    token: string,
    args: readonly string[],
    spec?: RunSpec & { timeout?: number },
  ): Promise<CliResult>;
  /** The whole audit log, as text. */
  auditText(): string;
  /** Every line of the audit log, parsed. */
  auditLines(): AuditLine[];
}

/**
 * Agent-side JavaScript, to put in an agent script that imports `net` from "node:net":
 * `tunnel(host, port)` sends a CONNECT through the run's proxy and resolves with the socket
 * (paused, the bytes after the proxy's answer put back) and the proxy's status code.
 */
export const AGENT_TUNNEL_JS = `
function tunnel(host, port) {
  const proxy = new URL(process.env.VALLIGNUS_PROXY_URL ?? process.env.HTTPS_PROXY);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(proxy.port), proxy.hostname);
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\\r\\n\\r\\n");
      if (end === -1) return;
      socket.off("data", onData);
      socket.pause();
      const rest = buf.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve({ socket, status: Number(buf.subarray(0, end).toString().split(" ")[1]) });
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write("CONNECT " + host + ":" + port + " HTTP/1.1\\r\\nHost: " + host + ":" + port + "\\r\\n\\r\\n");
  });
}
`;

/** A metered home whose provider runs elsewhere: its CA, its port and the hosts it answers. */
export function meteredHome(
  prefix: string,
  upstream: { caPem: string; port: number; hosts: readonly string[] },
  agentSource: string,
): MeteredHome {
  const t = makeTempHome(prefix);
  const caFile = join(t.root, "fake-ca.pem");
  writeFileSync(caFile, upstream.caPem);
  const agentFile = join(t.root, "agent.mjs");
  writeFileSync(agentFile, agentSource);
  t.ok("auth", "init");
  t.ok("auth", "create-agent", "--agent-id", "bot", "--owner", "you@example.com");
  const { port } = upstream;
  const runArgs = (command: readonly string[], spec: RunSpec = {}): string[] => [
    "run",
    ...(spec.trustUpstream === false ? [] : ["--upstream-ca", caFile]),
    ...upstream.hosts.flatMap((h) => ["--resolve", `${h}:${port}:127.0.0.1`]),
    ...(spec.flags ?? []),
    "--",
    ...command,
  ];
  const auditText = () => readFileSync(join(t.home, "audit", "audit.jsonl"), "utf8");
  return {
    ...t,
    caFile,
    agentFile,
    port,
    tokenFor: (policyId, { spendUsd, prices = [], models }) => {
      t.ok(
        "auth",
        "create-policy",
        "--policy-id",
        policyId,
        "--max-spend-usd",
        spendUsd,
        "--allowed-domains",
        upstream.hosts.map((h) => `${h}:${port}`).join(","),
        ...prices.flatMap((p) => ["--price", p]),
        ...(models === undefined ? [] : ["--allowed-models", models]),
      );
      return t.ok("auth", "issue-token", "--agent-id", "bot", "--policy-id", policyId).trim();
    },
    runArgs,
    runAgent: (token, args, spec = {}) =>
      spawnToEnd(
        process.execPath,
        [CLI, ...runArgs([process.execPath, agentFile, ...args], spec)],
        {
          env: { ...t.env, VALLIGNUS_TOKEN: token },
          ...(spec.timeout === undefined ? {} : { timeout: spec.timeout }),
        },
      ),
    auditText,
    auditLines: () =>
      auditText()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as AuditLine),
  };
}

/** A metered home in front of the fake providers (startFakeProviders), which it owns. */
export interface MeteredHarness extends MeteredHome {
  readonly fake: FakeProviders;
  /** Stops the fake providers and removes the home. */
  close(): Promise<void>;
}

/** The fake providers' hosts, each served by the one fake on its one port. */
export const FAKE_HOSTS = [
  "api.openai.com",
  "api.anthropic.com",
  "generativelanguage.googleapis.com",
] as const;

/**
 * The fake providers and a metered home in front of them, routing `hosts` (by default every
 * host the fake answers) to it.
 */
export async function meteredHarness(
  prefix: string,
  agentSource: string,
  hosts: readonly string[] = FAKE_HOSTS,
): Promise<MeteredHarness> {
  const fake = await startFakeProviders();
  const home = meteredHome(prefix, { caPem: fake.caPem, port: fake.port, hosts }, agentSource);
  return {
    ...home,
    fake,
    close: async () => {
      await fake.close();
      home.cleanup();
    },
  };
}

/**
 * A provider of the test's own on 127.0.0.1, with a throwaway CA whose leaf names `hosts`:
 * `answer` gets each request with its whole body as text.
 */
export async function startTlsProvider(
  hosts: readonly string[],
  answer: (req: IncomingMessage, res: ServerResponse, body: string) => void,
  caName?: string,
): Promise<{ server: Server; port: number; caPem: string }> {
  const certs = await makeTestCertificates([...hosts], caName);
  const server = createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => answer(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { server, port: (server.address() as AddressInfo).port, caPem: certs.caPem };
}
