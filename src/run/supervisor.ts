import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { constants as osConstants } from "node:os";

import {
  findRevocation,
  getAgent,
  getPolicyVersion,
  type Home,
  leafCertificateFor,
  loadLocalCa,
  requireValidToken,
} from "../authority/index.js";
import {
  AuditLog,
  newSessionId,
  summarizeCommand,
  writeSessionRecord,
  type DecisionFields,
} from "../audit/index.js";
import { errorLine, VallignusError, type ErrorCode } from "../errors.js";
import { meteredProviderFor, openLedger } from "../metering/index.js";
import { compilePolicy, parseUsdToNano, type DenyReason } from "../policy/index.js";
import {
  createGatekeeper,
  createMeteredHandler,
  startProxy,
  type ResolveOverride,
} from "../proxy/index.js";
import { buildChildEnv } from "./child-env.js";
import { HELPER_PATH, INNER_PROXY_PORT, isolationMasks, planIsolation } from "./isolation.js";

export interface RunOptions {
  readonly token: string;
  readonly command: readonly string[];
  readonly port: number | undefined;
  readonly maxRuntimeSeconds: number | undefined;
  readonly maxRequests: number | undefined;
  readonly maxOutputLines: number | undefined;
  readonly noSession: boolean;
  readonly resolve: readonly ResolveOverride[];
  readonly upstreamCa: string | undefined;
  /** Kernel-enforced: the command's only way out is the proxy. */
  readonly isolate: boolean;
  /** What a refused reservation does: end the run (default) or only deny the request. */
  readonly onBudget: "stop" | "deny";
}

/** How long the process group has between SIGTERM and SIGKILL when policy ends a run. */
const STOP_GRACE_MS = 2000;
/** The fallback poll for revocation and disabling (file watching is the fast path). */
const LIVE_POLL_MS = 250;

const STOP_TEXT: Record<string, string> = {
  token_revoked: "the token was revoked",
  token_expired: "the token expired",
  agent_disabled: "the agent was disabled",
  max_runtime: "the run's --max-runtime passed",
  request_limit_exceeded: "the request limit was reached",
  max_output_lines: "the run's --max-output-lines was reached",
  budget_exceeded: "the spend budget cannot pay for another request",
};

type StopReason =
  | "token_revoked"
  | "token_expired"
  | "agent_disabled"
  | "max_runtime"
  | "request_limit_exceeded"
  | "max_output_lines"
  | "budget_exceeded";

const STOP_CODES: Record<StopReason, ErrorCode> = {
  token_revoked: "ERR_RUN_STOPPED_TOKEN_REVOKED",
  token_expired: "ERR_RUN_STOPPED_TOKEN_EXPIRED",
  agent_disabled: "ERR_RUN_STOPPED_AGENT_DISABLED",
  max_runtime: "ERR_RUN_STOPPED_MAX_RUNTIME",
  request_limit_exceeded: "ERR_RUN_STOPPED_REQUEST_LIMIT_EXCEEDED",
  max_output_lines: "ERR_RUN_STOPPED_MAX_OUTPUT_LINES",
  budget_exceeded: "ERR_RUN_STOPPED_BUDGET_EXCEEDED",
};

/** `--upstream-ca FILE`: extra PEM roots the proxy trusts as a TLS client. */
function readUpstreamCa(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new VallignusError("ERR_RUN_UPSTREAM_CA", `run: cannot read --upstream-ca ${path}`);
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new VallignusError(
      "ERR_RUN_UPSTREAM_CA",
      `run: --upstream-ca ${path} holds no PEM certificate`,
    );
  }
  return text;
}

/** What a stopped run's requests are denied with. */
function denyReasonFor(stop: StopReason): DenyReason {
  return stop === "max_runtime" || stop === "max_output_lines" ? "request_limit_exceeded" : stop;
}

function signalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal];
}

/**
 * `vallignus run`: verifies the token exactly as `auth verify-token` does, starts the proxy,
 * runs the command in its own process group, enforces live authority and limits, and returns
 * the exit status (the child's, 128+signal, or 4 when policy stopped the run).
 */
export async function runSupervised(
  home: Home,
  options: RunOptions,
  now: () => Date,
): Promise<number> {
  const claims = await requireValidToken(home, options.token, now());
  // Decided before anything starts: --isolate either isolates or refuses to run.
  const isolation = options.isolate ? planIsolation() : undefined;
  const policyVersion = getPolicyVersion(home, claims.policy_id, claims.policy_version);
  // Read again to be enforced: it must still be the version the token was checked against.
  if (policyVersion.sha256 !== claims.policy_sha256)
    throw new VallignusError(
      "ERR_TOKEN_POLICY_MISMATCH",
      `token refused: policy ${claims.policy_id} v${claims.policy_version} changed on disk while the run started`,
    );
  const policy = compilePolicy(policyVersion);
  const ca = loadLocalCa(home);
  const [program] = options.command;
  if (program === undefined)
    throw new VallignusError("ERR_RUN_NO_COMMAND", "run: give a command after --");

  const sessionId = newSessionId(now());
  const identity = {
    session_id: sessionId,
    agent_id: claims.agent_id,
    owner: claims.owner,
    policy_id: claims.policy_id,
    policy_version: claims.policy_version,
    jti: claims.jti,
  };
  const audit = AuditLog.open(home, now);
  // Decisions are queued and written once per event-loop turn; lifecycle events go at once.
  const counts = { allowed: 0, denied: 0 };
  const decisions = {
    append: (record: DecisionFields) => {
      const denied = record.decision === "deny";
      if (denied) counts.denied++;
      else counts.allowed++;
      audit.enqueue(record, denied);
    },
  };
  // Under --isolate, /run is masked inside the namespace: the run's socket must live elsewhere.
  const base = isolation !== undefined && /^\/(var\/)?run(\/|$)/.test(tmpdir()) ? "/tmp" : tmpdir();
  const runDir = mkdtempSync(join(base, "vallignus-run-"));
  const caBundle = join(runDir, "ca-bundle.pem");
  writeFileSync(caBundle, `${[...rootCertificates, ca.certPem.trim()].join("\n")}\n`, {
    mode: 0o644,
  });

  let stop: StopReason | undefined;
  const tree: { child?: ChildProcess } = {};
  const timers: NodeJS.Timeout[] = [];
  const watchers: FSWatcher[] = [];
  const startedAt = now();

  const budgetNano = parseUsdToNano(policyVersion.max_spend_usd) ?? 0;
  const ledger = openLedger(home, {
    jti: claims.jti,
    agentId: claims.agent_id,
    policyId: claims.policy_id,
    policyVersion: claims.policy_version,
    budgetNano,
    owner: { sessionId, pid: process.pid },
  });
  const upstreamRoots = [
    ...rootCertificates,
    ...(options.upstreamCa === undefined ? [] : [readUpstreamCa(options.upstreamCa)]),
  ];
  const contexts = new Map<string, Promise<SecureContext>>();
  const interceptFor = (host: string): Promise<SecureContext> | undefined => {
    if (meteredProviderFor(host) === undefined) return undefined;
    let context = contexts.get(host);
    if (context === undefined) {
      context = leafCertificateFor(home, ca, host, now()).then((leaf) =>
        createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }),
      );
      contexts.set(host, context);
    }
    return context;
  };

  const runLimitRequests = options.maxRequests;
  const gatekeeper = createGatekeeper({
    interceptFor,
    identity,
    policy,
    overrides: options.resolve,
    maxRequests: runLimitRequests,
    audit: decisions,
    stopReason: () => (stop === undefined ? undefined : denyReasonFor(stop)),
    onRequestLimit: () => stopRun("request_limit_exceeded"),
    proxyPort: () => proxy.port,
  });
  const innerHandler = createMeteredHandler({
    identity,
    policy,
    ledger: {
      reserve: (amount, meta) => ledger.reserveBatched(amount, meta),
      settle: (id, cost, meta) => ledger.settleBatched(id, cost, meta),
      drain: () => ledger.drain(),
    },
    budgetNano,
    audit: decisions,
    stopReason: () => (stop === undefined ? undefined : denyReasonFor(stop)),
    takeRequestSlot: () => gatekeeper.takeRequestSlot(),
    onBudgetExhausted: () => {
      if (options.onBudget === "stop") stopRun("budget_exceeded");
    },
    upstreamRoots,
    now,
  });
  const proxySocket = join(runDir, "proxy.sock");
  const proxy = await startProxy({
    port: options.port,
    gatekeeper,
    innerHandler,
    unixSocket: isolation === undefined ? undefined : proxySocket,
  });
  const proxyUrl = `http://127.0.0.1:${isolation === undefined ? proxy.port : INNER_PROXY_PORT}`;

  const session = {
    session_id: sessionId,
    started_at: startedAt.toISOString(),
    agent_id: claims.agent_id,
    owner: claims.owner,
    policy_id: claims.policy_id,
    policy_version: claims.policy_version,
    jti: claims.jti,
    ...summarizeCommand(options.command),
    isolated: isolation !== undefined,
    isolation_method: isolation?.method ?? null,
  };
  if (!options.noSession) {
    writeSessionRecord(home, { ...session, ended_at: null, exit_status: null, end_reason: null });
  }
  audit.append({
    event: "run_start",
    ...identity,
    proxy_port: proxy.port,
    isolated: isolation !== undefined,
    isolation_method: isolation?.method ?? null,
  });

  function killGroup(signal: NodeJS.Signals): void {
    const pid = tree.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is already gone.
    }
  }

  function stopRun(reason: StopReason): void {
    if (stop !== undefined) return;
    stop = reason;
    process.stderr.write(
      errorLine(STOP_CODES[reason], `run stopped: ${STOP_TEXT[reason] ?? reason}`),
    );
    const event =
      reason === "token_revoked"
        ? "token_revoked_live"
        : reason === "agent_disabled"
          ? "agent_disabled_live"
          : reason === "token_expired"
            ? "token_expired_live"
            : reason === "budget_exceeded"
              ? "budget_exhausted"
              : "limit_reached";
    audit.enqueue({ event, ...identity, reason }, true);
    proxy.dropConnections();
    killGroup("SIGTERM");
    const kill = setTimeout(() => killGroup("SIGKILL"), STOP_GRACE_MS);
    kill.unref();
  }

  function checkAuthority(): void {
    if (stop !== undefined) return;
    try {
      if (findRevocation(home, claims.jti) !== undefined) stopRun("token_revoked");
      else if (getAgent(home, claims.agent_id).disabled) stopRun("agent_disabled");
    } catch {
      // State we cannot read is a state we cannot trust: stop (fail closed).
      stopRun("token_revoked");
    }
  }

  const msToExpiry = claims.exp * 1000 - now().getTime();
  timers.push(setTimeout(() => stopRun("token_expired"), Math.max(0, msToExpiry)));
  const runtimeLimits = [
    options.maxRuntimeSeconds,
    policyVersion.max_runtime_seconds ?? undefined,
  ].filter((n): n is number => n !== undefined);
  if (runtimeLimits.length > 0) {
    timers.push(setTimeout(() => stopRun("max_runtime"), Math.min(...runtimeLimits) * 1000));
  }
  timers.push(setInterval(checkAuthority, LIVE_POLL_MS));
  for (const dir of [home.dir("revoked"), home.dir("agents")]) {
    try {
      watchers.push(watch(dir, () => checkAuthority()));
    } catch {
      // The poll above still notices within LIVE_POLL_MS.
    }
  }

  const env = buildChildEnv(process.env, proxyUrl, caBundle);
  let argv: readonly string[] = options.command;
  if (isolation !== undefined) {
    // The helper itself starts without the preload; it hands NODE_OPTIONS back to the command.
    env["VALLIGNUS_CHILD_NODE_OPTIONS"] = env["NODE_OPTIONS"];
    delete env["NODE_OPTIONS"];
    const masks = isolationMasks(process.env);
    const config = {
      socket: proxySocket,
      port: INNER_PROXY_PORT,
      maskDirs: masks.dirs,
      maskFiles: masks.files,
      dropPrefix: isolation.dropPrefix,
      setupInside: isolation.setupInside,
      command: options.command,
    };
    argv = [...isolation.launcher, process.execPath, HELPER_PATH, JSON.stringify(config)];
  }
  const [spawnProgram = program, ...spawnArgs] = argv;
  const outputLimit = options.maxOutputLines;
  const countOutput = outputLimit !== undefined;
  const spawned = spawn(spawnProgram, spawnArgs, {
    stdio: ["inherit", countOutput ? "pipe" : "inherit", countOutput ? "pipe" : "inherit"],
    env,
    detached: true,
  });
  tree.child = spawned;
  if (outputLimit !== undefined) {
    let lines = 0;
    const limit = outputLimit;
    const count = (target: NodeJS.WriteStream) => (chunk: Buffer) => {
      target.write(chunk);
      for (const byte of chunk) if (byte === 10) lines++;
      if (lines > limit) stopRun("max_output_lines");
    };
    spawned.stdout?.on("data", count(process.stdout));
    spawned.stderr?.on("data", count(process.stderr));
  }

  const relay = (signal: NodeJS.Signals) => () => killGroup(signal);
  const relays = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((signal) => {
    const handler = relay(signal);
    process.on(signal, handler);
    return [signal, handler] as const;
  });

  const status = await new Promise<number>((resolve) => {
    spawned.once("error", (err) => {
      process.stderr.write(errorLine("ERR_RUN_SPAWN", `cannot start ${program}: ${err.message}`));
      resolve(127);
    });
    spawned.once("exit", (code, signal) => {
      resolve(signal !== null ? 128 + signalNumber(signal) : (code ?? 1));
    });
  });

  // Nothing of the tree outlives the run.
  killGroup("SIGKILL");
  for (const [signal, handler] of relays) process.off(signal, handler);
  for (const timer of timers) clearTimeout(timer);
  for (const watcher of watchers) watcher.close();
  await proxy.close();
  // Metered calls the closed connections cut short are settled, the ledger written, and their
  // audit lines queued, before run_end.
  await innerHandler.finished(2000);
  const exitStatus = stop !== undefined ? 4 : status;
  audit.append({
    event: "run_end",
    ...identity,
    exit_status: exitStatus,
    reason: stop ?? "exited",
    requests_allowed: gatekeeper.allowedCount(),
  });
  audit.close();
  ledger.close();
  if (!options.noSession) {
    writeSessionRecord(home, {
      ...session,
      ended_at: now().toISOString(),
      exit_status: exitStatus,
      end_reason: stop ?? "exited",
      ...counts,
    });
  }
  rmSync(runDir, { recursive: true, force: true });
  return exitStatus;
}
