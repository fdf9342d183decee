import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { constants as osConstants } from "node:os";

import {
  fileAuthorityStore,
  type AuthorityStore,
  type Home,
  leafCertificateFor,
  loadLocalCa,
  requireValidTokenIn,
  secretReader,
} from "../authority/index.js";
import {
  AuditLog,
  newSessionId,
  summarizeCommand,
  writeSessionRecord,
  type DecisionFields,
  type RunIdentity,
} from "../audit/index.js";
import { errorLine, isErrnoException, VallignusError } from "../errors.js";
import { meteredProviderFor, openLedger, type Ledger } from "../metering/index.js";
import { compilePolicy, parseUsdToNano, type CompiledPolicy } from "../policy/index.js";
import {
  createGatekeeper,
  createInspectedHandler,
  createMeteredHandler,
  startProxy,
  type ResolveOverride,
  type SecretSource,
} from "../proxy/index.js";
import { withoutSecretValues } from "./audit-values.js";
import { prepareRunSecrets, withStandIns, type RunSecrets } from "./run-secrets.js";
import type { StoredSecret } from "../secrets/index.js";
import { buildChildEnv, setAsideForHelper } from "./child-env.js";
import { CleanupStack } from "./cleanup-stack.js";
import { closeInheritedDescriptors } from "./inherited-descriptors.js";
import { INNER_RUN_DIR } from "./isolation-layout.js";
import {
  checkIsolatedWorkingFolder,
  HELPER_PATH,
  INNER_PROXY_PORT,
  isolationMounts,
  launcherArgv,
  planIsolation,
  toolPath,
  type IsolationPlan,
} from "./isolation.js";
import { setLongTimeout } from "./long-timer.js";
import { signalGroup, startGroupWatchdog, type GroupWatchdog } from "./process-group.js";
import { makeRunFolder, removeStaleRunFolders, runsBase } from "./run-folder.js";
import { RunStop, type StopReason } from "./run-stop.js";

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

/** The fallback poll for revocation and disabling (file watching is the fast path). */
const LIVE_POLL_MS = 250;

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

function signalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal];
}

type Claims = Awaited<ReturnType<typeof requireValidTokenIn>>;

/** What a run is decided from, all checked before anything is started. */
interface RunPlan {
  readonly home: Home;
  /** Agents, policy versions, keys and revocations: the files under the home by default. */
  readonly store: AuthorityStore;
  readonly options: RunOptions;
  readonly now: () => Date;
  readonly claims: Claims;
  readonly isolation: IsolationPlan | undefined;
  readonly policyVersion: ReturnType<AuthorityStore["getPolicyVersion"]>;
  readonly policy: CompiledPolicy;
  readonly ca: ReturnType<typeof loadLocalCa>;
  readonly budgetNano: number;
  readonly identity: RunIdentity;
  /** Where this user's run folders live. */
  readonly runsBase: string;
  /** The stand-ins of the policy's secrets, and where the proxy reads the secrets. */
  readonly secrets: RunSecrets;
  /** Every secret the authority held when the run started: none is in the command's environment. */
  readonly secretValues: () => readonly StoredSecret[];
}

/** A run's moving parts, filled in as they are started. */
interface LiveRun {
  readonly plan: RunPlan;
  readonly stop: RunStop;
  readonly counts: { allowed: number; denied: number };
  readonly startedAt: Date;
  /** Set once run_start is written: only a started run gets run_end and a closed session. */
  started: boolean;
  allowedCount: () => number;
  audit?: AuditLog;
  ledger?: Ledger;
  proxy?: Awaited<ReturnType<typeof startProxy>>;
  child?: ChildProcess;
  watchdog?: GroupWatchdog;
}

async function planRun(home: Home, options: RunOptions, now: () => Date): Promise<RunPlan> {
  const store = fileAuthorityStore(home);
  const claims = await requireValidTokenIn(store, options.token, now());
  // Decided before anything starts: --isolate either isolates or refuses to run.
  const isolation = options.isolate ? planIsolation() : undefined;
  const base = runsBase();
  if (isolation !== undefined)
    checkIsolatedWorkingFolder({ home: home.root, runsBase: base, runDir: "" });
  const policyVersion = store.getPolicyVersion(claims.policy_id, claims.policy_version);
  // Read again to be enforced: it must still be the version the token was checked against.
  if (policyVersion.sha256 !== claims.policy_sha256)
    throw new VallignusError(
      "ERR_TOKEN_POLICY_MISMATCH",
      `token refused: policy ${claims.policy_id} v${claims.policy_version} changed on disk while the run started`,
    );
  const policy = compilePolicy(policyVersion);
  const reader = secretReader(home);
  const secrets = prepareRunSecrets(reader, policyVersion.secrets);
  const ca = loadLocalCa(home);
  if (options.command[0] === undefined)
    throw new VallignusError("ERR_RUN_NO_COMMAND", "run: give a command after --");
  const identity = {
    session_id: newSessionId(now()),
    agent_id: claims.agent_id,
    owner: claims.owner,
    policy_id: claims.policy_id,
    policy_version: claims.policy_version,
    jti: claims.jti,
  };
  const budgetNano = parseUsdToNano(policyVersion.max_spend_usd) ?? 0;
  const plan = { home, store, options, now, claims, isolation, policyVersion, policy, ca };
  const secretValues = () => reader.all();
  return { ...plan, budgetNano, identity, runsBase: base, secrets, secretValues };
}

/** The audit log and the ledger; a write either cannot do in the background stops the run. */
function openStores(run: LiveRun, resources: CleanupStack): { audit: AuditLog; ledger: Ledger } {
  const { home, now, claims, budgetNano, identity } = run.plan;
  const audit = AuditLog.open(home, now, {
    onFailure: (err) => run.stop.stop("audit_unwritable", err.message),
  });
  resources.defer("audit log", () => {
    audit.close();
  });
  run.audit = audit;
  const ledger = openLedger(home, {
    jti: claims.jti,
    agentId: claims.agent_id,
    policyId: claims.policy_id,
    policyVersion: claims.policy_version,
    budgetNano,
    owner: { sessionId: identity.session_id, pid: process.pid },
    onFailure: (err) => run.stop.stop("ledger_unwritable", err.message),
  });
  resources.defer("ledger", () => {
    ledger.close();
  });
  run.ledger = ledger;
  return { audit, ledger };
}

/**
 * The per-run folder: the CA bundle the command trusts, and the proxy's socket under --isolate.
 * The folders of runs that died without removing theirs are removed first.
 */
function makeRunDir(plan: RunPlan, resources: CleanupStack): string {
  removeStaleRunFolders(plan.runsBase);
  const runDir = makeRunFolder(plan.runsBase);
  resources.defer("run folder", () => {
    rmSync(runDir, { recursive: true, force: true });
  });
  writeFileSync(
    join(runDir, "ca-bundle.pem"),
    `${[...rootCertificates, plan.ca.certPem.trim()].join("\n")}\n`,
    { mode: 0o644 },
  );
  return runDir;
}

/** The values the authority holds, or undefined when they cannot be read. */
function secretValues(source: SecretSource): string[] | undefined {
  try {
    return source.snapshot()?.values.map((v) => v.value) ?? [];
  } catch {
    return undefined;
  }
}

/** Decisions are queued and written once per event-loop turn; lifecycle events go at once. */
function auditedDecisions(run: LiveRun, audit: AuditLog, secrets: SecretSource) {
  const { counts, stop } = run;
  return {
    append: (decision: DecisionFields) => {
      const denied = decision.decision === "deny";
      if (denied) counts.denied++;
      else counts.allowed++;
      try {
        const record = denied ? withoutSecretValues(decision, secretValues(secrets)) : decision;
        audit.enqueue(record, denied);
      } catch (err) {
        // A decision that cannot be recorded: no further request may be decided.
        stop.stop("audit_unwritable", err instanceof Error ? err.message : undefined);
      }
    },
  };
}

/**
 * The TLS context the proxy intercepts a host with, for a host whose requests it must see: a
 * metered LLM host, one in `--inspect-hosts`, one with request rules. One leaf per host, made once.
 */
function leafContexts(home: Home, ca: RunPlan["ca"], now: () => Date, policy: CompiledPolicy) {
  const contexts = new Map<string, Promise<SecureContext>>();
  const seen = (host: string, port: number) =>
    meteredProviderFor(host) !== undefined ||
    policy.inspected.namesHost(host) ||
    policy.requestRules.covers(host, port);
  return (host: string, port: number): Promise<SecureContext> | undefined => {
    if (!seen(host, port)) return undefined;
    let context = contexts.get(host);
    if (context === undefined) {
      context = leafCertificateFor(home, ca, host, now()).then((leaf) =>
        createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }),
      );
      contexts.set(host, context);
    }
    return context;
  };
}

/**
 * What serves the requests inside intercepted tunnels: metered LLM hosts are metered; inspected
 * hosts (listed, or with request rules) are judged and sent on, one request at a time.
 */
function tunnelHandlers(
  run: LiveRun,
  parts: {
    decisions: ReturnType<typeof auditedDecisions>;
    upstreamRoots: readonly string[];
    secrets: RunSecrets["source"];
    gatekeeper: ReturnType<typeof createGatekeeper>;
  },
) {
  const { options, now, policy, budgetNano, identity } = run.plan;
  const ledger = run.ledger as Ledger;
  const { stop } = run;
  const { decisions, upstreamRoots, secrets, gatekeeper } = parts;
  const metered = createMeteredHandler({
    identity,
    policy,
    secrets,
    // The ledger batches what one event-loop turn asks for: one lock, one write, one fdatasync.
    ledger: {
      reserve: (amount, meta) => ledger.reserveBatched(amount, meta),
      settle: (id, cost, meta) => ledger.settleBatched(id, cost, meta),
      drain: () => ledger.drain(),
    },
    budgetNano,
    audit: decisions,
    stopReason: () => stop.denyReason(),
    takeRequestSlot: () => gatekeeper.takeRequestSlot(),
    onBudgetExhausted: () => {
      if (options.onBudget === "stop") stop.stop("budget_exceeded");
    },
    upstreamRoots,
    now,
  });
  const inspected = createInspectedHandler({
    identity,
    policy,
    audit: decisions,
    stopReason: () => stop.denyReason(),
    takeRequestSlot: () => gatekeeper.takeRequestSlot(),
    upstreamRoots,
    secrets,
  });
  const handler: Parameters<typeof startProxy>[0]["innerHandler"] = (req, res, tunnel) => {
    if (meteredProviderFor(tunnel.host) !== undefined) metered(req, res, tunnel);
    else inspected(req, res, tunnel);
  };
  const finished = async (timeoutMs: number) => {
    await Promise.all([metered.finished(timeoutMs), inspected.finished(timeoutMs)]);
  };
  return { handler, finished };
}

/** The proxy with its gatekeeper and tunnel handlers; decisions are counted and audited. */
async function startRunProxy(run: LiveRun, runDir: string, running: CleanupStack) {
  const { home, options, now, policy, ca, identity, isolation } = run.plan;
  const audit = run.audit as AuditLog;
  const { stop } = run;
  const decisions = auditedDecisions(run, audit, run.plan.secrets.source);
  const upstreamRoots = [
    ...rootCertificates,
    ...(options.upstreamCa === undefined ? [] : [readUpstreamCa(options.upstreamCa)]),
  ];
  const interceptFor = leafContexts(home, ca, now, policy);
  const secrets = run.plan.secrets.source;

  const runLimitRequests = options.maxRequests;
  const gatekeeper = createGatekeeper({
    interceptFor,
    secrets,
    identity,
    policy,
    overrides: options.resolve,
    maxRequests: runLimitRequests,
    audit: decisions,
    stopReason: () => stop.denyReason(),
    onRequestLimit: () => stop.stop("request_limit_exceeded"),
    proxyPort: () => proxy.port,
  });
  const tunnels = tunnelHandlers(run, { decisions, upstreamRoots, secrets, gatekeeper });
  const proxySocket = join(runDir, "proxy.sock");
  const proxy = await startProxy({
    port: options.port,
    gatekeeper,
    innerHandler: tunnels.handler,
    unixSocket: isolation === undefined ? undefined : proxySocket,
  }).catch((err: unknown) => {
    if (isErrnoException(err) && err.code === "EADDRINUSE")
      throw new VallignusError(
        "ERR_RUN_PORT_IN_USE",
        `run: --port ${String(options.port)} is in use`,
      );
    throw err;
  });
  run.proxy = proxy;
  run.allowedCount = () => gatekeeper.allowedCount();
  running.defer("proxy", async () => {
    await proxy.close();
    // Metered calls the closed connections cut short are settled, the ledger written, and
    // their audit lines queued, before run_end.
    await tunnels.finished(2000);
  });
  return { proxy, gatekeeper, proxySocket };
}

/** Revocation, disabling, expiry and --max-runtime, each ending the run when it happens. */
function watchAuthority(run: LiveRun, running: CleanupStack): void {
  const { home, store, claims, now, options, policyVersion } = run.plan;
  const { stop } = run;
  const checkAuthority = (): void => {
    if (stop.reason !== undefined) return;
    try {
      if (store.findRevocation(claims.jti) !== undefined) stop.stop("token_revoked");
      else if (store.getAgent(claims.agent_id).disabled) stop.stop("agent_disabled");
    } catch {
      // State we cannot read is a state we cannot trust: stop (fail closed).
      stop.stop("token_revoked");
    }
  };
  // A token may live 30 days and a limit longer: beyond setTimeout's 24.8-day range.
  const expiry = setLongTimeout(
    () => stop.stop("token_expired"),
    claims.exp * 1000 - now().getTime(),
  );
  running.defer("expiry timer", () => expiry.clear());
  const runtimeLimits = [
    options.maxRuntimeSeconds,
    policyVersion.max_runtime_seconds ?? undefined,
  ].filter((n): n is number => n !== undefined);
  if (runtimeLimits.length > 0) {
    const limit = setLongTimeout(() => stop.stop("max_runtime"), Math.min(...runtimeLimits) * 1000);
    running.defer("runtime timer", () => limit.clear());
  }
  const poll = setInterval(checkAuthority, LIVE_POLL_MS);
  running.defer("authority poll", () => clearInterval(poll));
  for (const dir of [home.dir("revoked"), home.dir("agents")]) {
    try {
      const watcher = watch(dir, () => checkAuthority());
      running.defer("authority watcher", () => watcher.close());
    } catch {
      // The poll above still notices within LIVE_POLL_MS.
    }
  }
}

/** The command line to spawn: the command itself, or the namespace launcher and its helper. */
function commandLine(
  plan: RunPlan,
  proxyPort: number,
  runDir: string,
  proxySocket: string,
): { argv: readonly string[]; env: NodeJS.ProcessEnv } {
  const { isolation, options } = plan;
  const standIns = plan.secrets.standIns;
  if (isolation === undefined) {
    const proxyUrl = `http://127.0.0.1:${proxyPort}`;
    const env = buildChildEnv(process.env, proxyUrl, join(runDir, "ca-bundle.pem"));
    return { argv: options.command, env: withStandIns(env, standIns, plan.secretValues()) };
  }
  // Inside, the run folder is bound at INNER_RUN_DIR; the host's is hidden with every other.
  const proxyUrl = `http://127.0.0.1:${INNER_PROXY_PORT}`;
  const env = setAsideForHelper(
    withStandIns(
      buildChildEnv(process.env, proxyUrl, join(INNER_RUN_DIR, "ca-bundle.pem")),
      standIns,
      plan.secretValues(),
    ),
  );
  const mounts = isolationMounts({ home: plan.home.root, runsBase: plan.runsBase, runDir });
  const config = {
    socket: join(INNER_RUN_DIR, basename(proxySocket)),
    port: INNER_PROXY_PORT,
    mounts: isolation.setupInside ? mounts : [],
    dropPrefix: isolation.dropPrefix,
    setupInside: isolation.setupInside,
    command: options.command,
    cwd: process.cwd(),
    toolPath: toolPath(),
  };
  return {
    argv: [
      ...launcherArgv(isolation, mounts),
      process.execPath,
      HELPER_PATH,
      JSON.stringify(config),
    ],
    env,
  };
}

/**
 * Starts the command in its own process group, tied to this process: the group is killed when
 * the run ends, and by a watchdog if this process is killed outright.
 */
function spawnCommand(
  run: LiveRun,
  command: { argv: readonly string[]; env: NodeJS.ProcessEnv; runDir: string },
  running: CleanupStack,
): ChildProcess {
  const [program = "", ...args] = command.argv;
  const outputLimit = run.plan.options.maxOutputLines;
  const countOutput = outputLimit !== undefined;
  const child = spawn(program, args, {
    stdio: ["inherit", countOutput ? "pipe" : "inherit", countOutput ? "pipe" : "inherit"],
    env: command.env,
    detached: true,
  });
  run.child = child;
  // Nothing of the tree outlives the run.
  running.defer("process group", () => signalGroup(child.pid, "SIGKILL"));
  if (child.pid !== undefined) run.watchdog?.arm(child.pid, command.runDir);
  if (outputLimit !== undefined) {
    let lines = 0;
    const count = (target: NodeJS.WriteStream) => (chunk: Buffer) => {
      target.write(chunk);
      for (const byte of chunk) if (byte === 10) lines++;
      if (lines > outputLimit) run.stop.stop("max_output_lines");
    };
    child.stdout?.on("data", count(process.stdout));
    child.stderr?.on("data", count(process.stderr));
  }
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const relay = () => signalGroup(child.pid, signal);
    process.on(signal, relay);
    running.defer(`${signal} relay`, () => process.off(signal, relay));
  }
  return child;
}

/** The command's exit status as a shell reports it (128+signal), or 127 if it never started. */
function exitOf(child: ChildProcess, program: string): Promise<number> {
  return new Promise<number>((resolve) => {
    child.once("error", (err) => {
      process.stderr.write(errorLine("ERR_RUN_SPAWN", `cannot start ${program}: ${err.message}`));
      resolve(127);
    });
    child.once("exit", (code, signal) => {
      resolve(signal !== null ? 128 + signalNumber(signal) : (code ?? 1));
    });
  });
}

/** The session's record, written open at the start and closed at the end. */
function sessionRecord(plan: RunPlan, startedAt: Date) {
  const { claims, identity, isolation, options } = plan;
  return {
    session_id: identity.session_id,
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
}

/** A stop for a store that cannot be written: its own failures at the end are expected. */
function isStorageStop(reason: StopReason | undefined): boolean {
  return reason === "audit_unwritable" || reason === "ledger_unwritable";
}

/**
 * Runs the command under the proxy and returns its exit status, with the stores open. The
 * `running` stack holds what ends with the command (proxy, timers, the process group); the
 * caller unwinds it.
 */
async function superviseCommand(
  run: LiveRun,
  running: CleanupStack,
  resources: CleanupStack,
): Promise<number> {
  const { plan } = run;
  const watchdog = startGroupWatchdog();
  running.defer("watchdog", () => watchdog.stop());
  run.watchdog = watchdog;
  const { audit } = openStores(run, resources);
  const runDir = makeRunDir(plan, resources);
  const { proxy, proxySocket } = await startRunProxy(run, runDir, running);
  if (!plan.options.noSession) {
    const session = sessionRecord(plan, run.startedAt);
    writeSessionRecord(plan.home, {
      ...session,
      ended_at: null,
      exit_status: null,
      end_reason: null,
    });
  }
  audit.append({
    event: "run_start",
    ...plan.identity,
    // Under --isolate the proxy has no TCP port, only the run's socket.
    proxy_port: plan.isolation === undefined ? proxy.port : null,
    isolated: plan.isolation !== undefined,
    isolation_method: plan.isolation?.method ?? null,
  });
  run.started = true;
  watchAuthority(run, running);
  // A store that failed while starting has stopped the run already: the command never starts.
  if (run.stop.reason !== undefined) return 4;
  const command = { ...commandLine(plan, proxy.port, runDir, proxySocket), runDir };
  if (plan.isolation !== undefined) closeInheritedDescriptors();
  const child = spawnCommand(run, command, running);
  const status = await exitOf(child, plan.options.command[0] ?? "");
  await running.unwind();
  return status;
}

/** run_end and the closed session record; a store that failed is not asked again. */
function recordEnd(run: LiveRun, status: number): number {
  const { plan, stop } = run;
  const exitStatus = stop.reason !== undefined ? 4 : status;
  const reason = stop.reason ?? "exited";
  // After a store failed, the other one is still written; the failed one is not asked again.
  const tolerate = (step: () => void): void => {
    try {
      step();
    } catch (err) {
      if (!isStorageStop(stop.reason)) throw err;
    }
  };
  tolerate(() => {
    run.audit?.append({
      event: "run_end",
      ...plan.identity,
      exit_status: exitStatus,
      reason,
      requests_allowed: run.allowedCount(),
    });
    run.audit?.close();
  });
  if (!plan.options.noSession) {
    tolerate(() => {
      writeSessionRecord(plan.home, {
        ...sessionRecord(plan, run.startedAt),
        ended_at: plan.now().toISOString(),
        exit_status: exitStatus,
        end_reason: reason,
        ...run.counts,
      });
    });
  }
  return exitStatus;
}

/** The store a failure belongs to, when it is a store that cannot be written. */
function storageStopFor(err: unknown): StopReason | undefined {
  if (!(err instanceof VallignusError)) return undefined;
  if (err.code.startsWith("ERR_AUDIT_")) return "audit_unwritable";
  if (err.code.startsWith("ERR_LEDGER_")) return "ledger_unwritable";
  return undefined;
}

/**
 * The last resort: an error nothing caught, anywhere in this process while the command runs,
 * must not leave the command running. The group is killed first, then everything released
 * that can be released at once; one line names the cause; exit 4 for a store that cannot be
 * written (a stop), 1 otherwise.
 */
function installLastResort(run: LiveRun, running: CleanupStack, resources: CleanupStack) {
  const handler = (err: unknown): void => {
    signalGroup(run.child?.pid, "SIGKILL");
    const storage = storageStopFor(err);
    const message = err instanceof Error ? err.message : String(err);
    if (storage !== undefined) run.stop.stop(storage, message);
    else if (run.stop.reason === undefined)
      process.stderr.write(errorLine("ERR_INTERNAL", `run stopped: internal error: ${message}`));
    running.unwindNow();
    resources.unwindNow();
    process.exit(run.stop.reason !== undefined ? 4 : 1);
  };
  process.on("uncaughtException", handler);
  process.on("unhandledRejection", handler);
  return () => {
    process.off("uncaughtException", handler);
    process.off("unhandledRejection", handler);
  };
}

function createRun(plan: RunPlan): LiveRun {
  const run: LiveRun = {
    plan,
    counts: { allowed: 0, denied: 0 },
    startedAt: plan.now(),
    started: false,
    allowedCount: () => 0,
    stop: new RunStop({
      report: (line) => process.stderr.write(line),
      // Queued (and made durable with its batch): a stop never waits for the audit lock.
      record: (event, reason) => run.audit?.enqueue({ event, ...plan.identity, reason }, true),
      dropConnections: () => run.proxy?.dropConnections(),
      signalGroup: (signal) => signalGroup(run.child?.pid, signal),
      later: (fn, ms) => setTimeout(fn, ms).unref(),
    }),
  };
  return run;
}

/**
 * `vallignus run`: verifies the token exactly as `auth verify-token` does, starts the proxy,
 * runs the command in its own process group, enforces live authority and limits, and returns
 * the exit status (the child's, 128+signal, or 4 when the run was stopped). Whatever fails,
 * every resource is released in reverse order of acquisition and the command is not left
 * running.
 */
export async function runSupervised(
  home: Home,
  options: RunOptions,
  now: () => Date,
): Promise<number> {
  const run = createRun(await planRun(home, options, now));
  // What ends with the command (proxy, timers, process group), and what outlives it until
  // run_end is written (stores, run folder).
  const running = new CleanupStack();
  const resources = new CleanupStack();
  const removeLastResort = installLastResort(run, running, resources);
  let status: number | undefined;
  try {
    status = await superviseCommand(run, running, resources);
    if (run.started) status = recordEnd(run, status);
  } finally {
    await running.unwind();
    const failures = await resources.unwind();
    removeLastResort();
    const failure = failures[0]?.cause;
    if (status !== undefined && failure !== undefined && !isStorageStop(run.stop.reason))
      // eslint-disable-next-line no-unsafe-finally -- a store that failed to close is the run's error
      throw failure instanceof Error ? failure : new Error("a resource could not be released");
  }
  return status;
}
