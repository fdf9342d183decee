/**
 * Edge cases of exact spend metering, end to end through the built `vallignus run`: a crash of
 * vallignus mid-stream, one budget shared by runs (one after the other and at once), 50
 * concurrent calls against a budget for K, the SNI and Host of an intercepted tunnel, upstream
 * TLS verification, plain HTTP to a metered host, and deny bodies in each provider's shape.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";

import { CLI } from "./helpers/cli.js";
import {
  AGENT_TUNNEL_JS,
  FAKE_HOSTS,
  meteredHarness,
  type MeteredHarness,
  type RunSpec,
} from "./helpers/metered-harness.js";

const OPENAI = "api.openai.com";
const ANTHROPIC = "api.anthropic.com";
const GEMINI = "generativelanguage.googleapis.com";
/** Budgets and prices below are in nano-USD: $1 per million tokens is 1,000 nano-USD a token. */
const NANO_PER_TOKEN_AT_1 = 1_000;
/** The fake's usage: 12 tokens in, 30 out. */
const IN_TOKENS = 12;
const OUT_TOKENS = 30;
/** Every run is killed after this, so that no test can hang. */
const RUN_TIMEOUT_MS = 20_000;

let h: MeteredHarness;
/** Process groups of agents that may outlive their run, killed in `after`. */
const agentGroups = new Set<number>();

/**
 * An agent written against the official SDKs and Node's own net/tls, knowing nothing of
 * Vallignus. It lives outside the repository, so it imports the SDKs by their resolved URLs.
 * One JSON object per line on stdout.
 */
function agentSource(): string {
  return `
import net from "node:net";
import tls from "node:tls";
import { execFileSync } from "node:child_process";
import OpenAI from ${JSON.stringify(import.meta.resolve("openai"))};
import Anthropic from ${JSON.stringify(import.meta.resolve("@anthropic-ai/sdk"))};

const [mode, port, arg] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const failure = (err) => ({
  status: err?.status ?? null,
  name: err?.constructor?.name ?? "unknown",
  message: String(err?.message ?? err),
  code: err?.code ?? null,
  cause: err?.cause === undefined ? null : String(err.cause?.message ?? err.cause),
});
const openai = new OpenAI({ apiKey: "sk-edge-secret", baseURL: "https://${OPENAI}:" + port + "/v1", maxRetries: 0, timeout: 15000 });
const anthropic = new Anthropic({ apiKey: "sk-ant-edge-secret", baseURL: "https://${ANTHROPIC}:" + port, maxRetries: 0, timeout: 15000 });
const messages = [{ role: "user", content: "hi" }];

${AGENT_TUNNEL_JS}
/** Settles with how a TLS handshake over the socket ended; never waits more than 5 s. */
function handshake(options) {
  return new Promise((resolve) => {
    const s = tls.connect(options);
    const timer = setTimeout(() => { s.destroy(); resolve({ tls: "timeout" }); }, 5000);
    s.once("secureConnect", () => { clearTimeout(timer); resolve({ tls: "connected", socket: s }); });
    s.once("error", (e) => { clearTimeout(timer); resolve({ tls: "error", message: e.message }); });
    s.once("close", () => { clearTimeout(timer); resolve({ tls: "closed" }); });
  });
}

/** Sends raw bytes and reads until the other side closes; never waits more than 5 s. */
function exchange(socket, bytes) {
  return new Promise((resolve) => {
    let text = "";
    const timer = setTimeout(() => { socket.destroy(); resolve(text); }, 5000);
    socket.setEncoding("utf8");
    socket.on("data", (d) => (text += d));
    socket.on("error", () => {});
    socket.once("close", () => { clearTimeout(timer); resolve(text); });
    socket.write(bytes);
  });
}

try {
  if (mode === "hold") {
    say({ pid: process.pid });
    const stream = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 1000, stream: true, messages });
    for await (const c of stream) say({ chunk: c.choices[0]?.delta?.content ?? "" });
    say({ done: true });
  } else if (mode === "seq") {
    for (let i = 0; i < Number(arg); i++) {
      try {
        await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages });
        say({ call: i, ok: true });
      } catch (err) {
        say({ call: i, error: failure(err) });
      }
    }
  } else if (mode === "burst") {
    const calls = Array.from({ length: Number(arg) }, () =>
      openai.chat.completions.create({ model: "fake-gpt", max_tokens: 1000, messages }),
    );
    const results = await Promise.allSettled(calls);
    say({ results: results.map((r) => (r.status === "fulfilled" ? { ok: true } : { error: failure(r.reason) })) });
  } else if (mode === "openai-json") {
    const r = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages });
    say({ text: r.choices[0].message.content });
  } else if (mode === "anthropic-huge") {
    await anthropic.messages.create({ model: "fake-claude", max_tokens: 5000000, messages });
    say({ ok: true });
  } else if (mode === "gemini") {
    const call = (maxOutputTokens) => {
      const out = execFileSync("curl", [
        "-sS", "--max-time", "10", "-w", "\\n%{http_code}",
        "-H", "content-type: application/json",
        "-d", JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }], generationConfig: { maxOutputTokens } }),
        "https://${GEMINI}:" + port + "/v1beta/models/fake-gemini:generateContent?key=gemini-edge-secret",
      ], { encoding: "utf8" });
      const cut = out.lastIndexOf("\\n");
      return { status: Number(out.slice(cut + 1)), body: JSON.parse(out.slice(0, cut)) };
    };
    say({ small: call(100), huge: call(5000000) });
  } else if (mode === "sni") {
    const { socket, status } = await tunnel("${OPENAI}", port);
    // The client would accept any certificate: only the proxy can make this handshake fail.
    const r = await handshake({ socket, servername: "evil.example", rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
    r.socket?.destroy();
    say({ connectStatus: status, tls: r.tls, message: r.message ?? null });
  } else if (mode === "front") {
    const { socket, status } = await tunnel("${OPENAI}", port);
    const r = await handshake({ socket, servername: "${OPENAI}", ALPNProtocols: ["http/1.1"] });
    if (r.socket === undefined) throw new Error("handshake: " + r.tls + " " + (r.message ?? ""));
    const body = JSON.stringify({ model: "fake-gpt", max_tokens: 10, messages });
    const text = await exchange(r.socket,
      "POST /v1/chat/completions HTTP/1.1\\r\\nHost: ${ANTHROPIC}:" + port +
      "\\r\\ncontent-type: application/json\\r\\ncontent-length: " + Buffer.byteLength(body) +
      "\\r\\nconnection: close\\r\\n\\r\\n" + body);
    const split = text.indexOf("\\r\\n\\r\\n");
    const head = text.slice(0, split).split("\\r\\n");
    say({
      connectStatus: status,
      status: Number(head[0]?.split(" ")[1]),
      decision: head.find((h) => h.toLowerCase().startsWith("x-vallignus-decision:"))?.split(":")[1]?.trim() ?? null,
      body: JSON.parse(text.slice(split + 4)),
    });
  } else {
    throw new Error("unknown mode " + mode);
  }
} catch (err) {
  say({ error: failure(err) });
}
`;
}

/** One JSON line: what the agent printed, or an audit record. */
type Line = Record<string, unknown>;

interface RunResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The agent's JSON lines. */
  readonly lines: Line[];
}

interface Launched {
  /** The `vallignus` CLI process itself. */
  readonly pid: number;
  /** Resolves with the first line the predicate accepts; rejects after `ms`. */
  waitForLine(predicate: (line: Line) => boolean, ms?: number): Promise<Line>;
  /** The CLI process has exited (its stdout may still be held open by the agent). */
  readonly exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  /** Every holder of stdout and stderr is gone. */
  readonly closed: Promise<RunResult>;
  kill(signal: NodeJS.Signals): void;
}

interface LaunchOptions extends RunSpec {
  readonly token: string;
}

function parseLines(text: string): Line[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
}

/** `vallignus run [flags] -- <command>`, with a hard timeout. */
function launch(command: readonly string[], options: LaunchOptions): Launched {
  const child = spawn(process.execPath, [CLI, ...h.runArgs(command, options)], {
    env: { ...h.env, VALLIGNUS_TOKEN: options.token },
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("vallignus run did not start");
  let stdout = "";
  let stderr = "";
  const watchers: { predicate: (line: Line) => boolean; done: (line: Line) => void }[] = [];
  let pending = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
    pending += d;
    const cut = pending.lastIndexOf("\n");
    if (cut === -1) return;
    const complete = parseLines(pending.slice(0, cut));
    pending = pending.slice(cut + 1);
    for (const line of complete) {
      if (typeof line["pid"] === "number") agentGroups.add(line["pid"]);
      for (const w of [...watchers]) {
        if (w.predicate(line)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.done(line);
        }
      }
    }
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (status, signal) => {
      clearTimeout(timer);
      done({ status, signal });
    }),
  );
  const closed = new Promise<RunResult>((done) =>
    child.once("close", (status, signal) =>
      done({ status, signal, stdout, stderr, lines: parseLines(stdout) }),
    ),
  );
  return {
    pid,
    exited,
    closed,
    kill: (signal) => child.kill(signal),
    waitForLine: (predicate, ms = 10_000) => {
      const seen = parseLines(stdout).find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<Line>((resolve, reject) => {
        const timeout = setTimeout(() => {
          reject(new Error(`no such line within ${ms} ms; stdout: ${stdout} stderr: ${stderr}`));
        }, ms);
        watchers.push({
          predicate,
          done: (line) => {
            clearTimeout(timeout);
            resolve(line);
          },
        });
      });
    },
  };
}

function runAgent(mode: string, arg: string, options: LaunchOptions): Promise<RunResult> {
  return launch([process.execPath, h.agentFile, mode, String(h.fake.port), arg], options).closed;
}

/** A policy of its own for each test, and a token for it. */
function tokenFor(policyId: string, spendUsd: string, prices: readonly string[]): string {
  return h.tokenFor(policyId, { spendUsd, prices });
}

/** The audit lines of one policy's runs. */
function audit(policyId: string): Line[] {
  return h.auditLines().filter((r) => r["policy_id"] === policyId);
}

function meteredCalls(policyId: string): Line[] {
  return audit(policyId).filter((r) => r["provider"] !== undefined);
}

interface SpendRow {
  policy_id: string;
  budget_nano: number;
  spent_nano: number;
  reserved_nano: number;
  left_nano: number;
  calls: number;
  open_reservations: number;
}

/** `vallignus spend --json`, the row of the one token of this policy. */
function spendOf(policyId: string): SpendRow {
  const rows = (JSON.parse(h.ok("spend", "--json")) as SpendRow[]).filter(
    (r) => r.policy_id === policyId,
  );
  assert.equal(rows.length, 1, `one ledger for ${policyId}`);
  const row = rows[0];
  assert.ok(row !== undefined);
  return row;
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Opens the fake's gate; what the test does until then, the fake answers nothing. */
function closeGate(): () => void {
  let open = (): void => undefined;
  h.fake.behaviour.gate = new Promise<void>((r) => (open = r));
  return () => {
    open();
    h.fake.behaviour.gate = undefined;
  };
}

before(async () => {
  h = await meteredHarness("vallignus-edge-", agentSource(), FAKE_HOSTS);
});

after(async () => {
  for (const pgid of agentGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await h.close();
});

test("kill -9 of vallignus mid-stream: the call's reservation is charged in full", async () => {
  // Input priced at 0, so the reservation is exactly max_tokens × output price: 1000 × $1/M.
  const reservation = 1000 * NANO_PER_TOKEN_AT_1;
  const token = tokenFor("e-crash", "1", ["fake-gpt=0/1"]);
  h.fake.behaviour.holdStreams = true;
  const run = launch([process.execPath, h.agentFile, "hold", String(h.fake.port), ""], { token });
  let agentPid: number | undefined;
  try {
    agentPid = (await run.waitForLine((l) => typeof l["pid"] === "number"))["pid"] as number;
    await h.fake.waitForHeld(1);
    // The first event went through the proxy: the call is reserved, sent and streaming.
    await run.waitForLine((l) => l["chunk"] === "hello");
  } finally {
    h.fake.behaviour.holdStreams = false;
  }
  const live = spendOf("e-crash");
  assert.equal(live.reserved_nano, reservation);
  assert.equal(live.spent_nano, 0);
  assert.equal(live.open_reservations, 1);

  process.kill(run.pid, "SIGKILL");
  const gone = await run.exited;
  assert.equal(gone.signal, "SIGKILL");
  // The agent is in its own process group, which a dead vallignus can no longer end.
  try {
    process.kill(-agentPid, "SIGKILL");
  } catch {
    // It had already ended: its tunnel died with the proxy.
  }
  await run.closed;
  await until("the agent to be gone", () => {
    try {
      process.kill(agentPid, 0);
      return false;
    } catch {
      return true;
    }
  });
  await until("the held stream to close", () => h.fake.held() === 0);

  // No settle line was ever written for the call: the next reader charges the dead run's
  // reservation, in full.
  const after = spendOf("e-crash");
  assert.equal(after.spent_nano, reservation);
  assert.equal(after.reserved_nano, 0);
  assert.equal(after.open_reservations, 0);
  assert.equal(after.calls, 1);
  assert.equal(after.left_nano, after.budget_nano - reservation);

  // The next run with the same token continues from there.
  const next = await runAgent("seq", "1", { token });
  assert.equal(next.status, 0, next.stderr);
  assert.deepEqual(next.lines, [{ call: 0, ok: true }]);
  const final = spendOf("e-crash");
  assert.equal(final.spent_nano, reservation + OUT_TOKENS * NANO_PER_TOKEN_AT_1);
  assert.equal(final.calls, 2);
  assert.equal(final.reserved_nano, 0);
});

test("two runs with one token share one budget: exactly N calls fit across them", async () => {
  // Priced $1/M in and out, so the reservation uses the whole formula: (body bytes + 4096) in,
  // at the input price, + 2 nano-USD rounding slack, + max_tokens (100) out.
  const body = JSON.stringify({
    model: "fake-gpt",
    max_tokens: 100,
    messages: [{ role: "user", content: "hi" }],
  });
  const reservation =
    (Buffer.byteLength(body) + 4096) * NANO_PER_TOKEN_AT_1 + 2 + 100 * NANO_PER_TOKEN_AT_1;
  const cost = (IN_TOKENS + OUT_TOKENS) * NANO_PER_TOKEN_AT_1;
  // N calls fit when the Nth's reservation still fits after N-1 settled ones, and no more.
  const n = 5;
  const budgetNano = (n - 1) * cost + reservation;
  const token = tokenFor("e-shared", (budgetNano / 1e9).toFixed(9), ["fake-gpt=1/1"]);
  const seen = h.fake.received.length;

  const first = await runAgent("seq", "3", { token });
  assert.equal(first.status, 0, first.stderr);
  assert.deepEqual(
    first.lines.map((l) => l["ok"]),
    [true, true, true],
  );
  // The SDK sent exactly the body the reservation was computed from.
  assert.equal(JSON.stringify(h.fake.received.at(-1)?.body), body);
  assert.equal(
    meteredCalls("e-shared")[0]?.["reserved_usd"],
    (reservation / 1e9).toFixed(9).replace(/0+$/, ""),
  );
  const afterFirst = spendOf("e-shared");
  assert.equal(afterFirst.budget_nano, budgetNano);
  assert.equal(afterFirst.spent_nano, 3 * cost);

  const second = await runAgent("seq", "3", { token, flags: ["--on-budget", "deny"] });
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual(
    second.lines.map((l) => l["ok"] ?? (l["error"] as Line)["code"]),
    [true, true, "budget_exceeded"],
  );
  assert.equal(h.fake.received.length - seen, n);
  const afterSecond = spendOf("e-shared");
  assert.equal(afterSecond.spent_nano, afterFirst.spent_nano + 2 * cost);
  assert.equal(afterSecond.spent_nano, n * cost);
  assert.equal(afterSecond.reserved_nano, 0);
  assert.equal(afterSecond.calls, n);
  const denied = meteredCalls("e-shared").filter((l) => l["decision"] === "deny");
  assert.deepEqual(
    denied.map((l) => l["deny_reason"]),
    ["budget_exceeded"],
  );
});

test("two runs at once with one token: together they reserve no more than the budget", async () => {
  const reservation = 1000 * NANO_PER_TOKEN_AT_1;
  const k = 6;
  const perRun = 10;
  const token = tokenFor("e-twin", ((k * reservation) / 1e9).toFixed(9), ["fake-gpt=0/1"]);
  const seen = h.fake.received.length;
  const open = closeGate();
  let results: RunResult[];
  try {
    const runs = [1, 2].map(() =>
      runAgent("burst", String(perRun), { token, flags: ["--on-budget", "deny"] }),
    );
    await until(
      "every call to be reserved or denied",
      () =>
        meteredCalls("e-twin").filter((l) => l["deny_reason"] === "budget_exceeded").length >=
        2 * perRun - k,
    );
    // While the fake holds the admitted calls, the budget is all reserved and no more.
    const held = spendOf("e-twin");
    assert.equal(held.reserved_nano, k * reservation);
    assert.ok(held.spent_nano + held.reserved_nano <= held.budget_nano);
    open();
    results = await Promise.all(runs);
  } finally {
    open();
  }
  const outcomes = results.flatMap((r) => {
    assert.equal(r.status, 0, r.stderr);
    return (r.lines[0]?.["results"] as Line[] | undefined) ?? [];
  });
  assert.equal(outcomes.length, 2 * perRun);
  assert.equal(outcomes.filter((o) => o["ok"] === true).length, k);
  assert.equal(h.fake.received.length - seen, k);
  const final = spendOf("e-twin");
  assert.equal(final.spent_nano, k * OUT_TOKENS * NANO_PER_TOKEN_AT_1);
  assert.equal(final.reserved_nano, 0);
  // Two sessions wrote to the one ledger.
  const sessions = new Set(meteredCalls("e-twin").map((l) => l["session_id"]));
  assert.equal(sessions.size, 2);
});

test("50 concurrent calls on a budget for K: K reach the provider, 50 - K are denied", async () => {
  // Input priced at 0: each call reserves exactly max_tokens (1000) × $1/M.
  const reservation = 1000 * NANO_PER_TOKEN_AT_1;
  const k = 7;
  const total = 50;
  const budgetNano = k * reservation;
  const token = tokenFor("e-burst", (budgetNano / 1e9).toFixed(9), ["fake-gpt=0/1"]);
  const seen = h.fake.received.length;
  // Until every call has been judged, the fake answers none: no settle can free budget early.
  const open = closeGate();
  let result: RunResult;
  try {
    const run = runAgent("burst", String(total), { token, flags: ["--on-budget", "deny"] });
    await until(
      "every call to be reserved or denied",
      () =>
        meteredCalls("e-burst").filter((l) => l["deny_reason"] === "budget_exceeded").length >=
        total - k,
    );
    await until("the admitted calls to reach the fake", () => h.fake.received.length - seen >= k);
    const held = spendOf("e-burst");
    assert.equal(held.reserved_nano, budgetNano);
    assert.equal(held.open_reservations, k);
    assert.ok(held.spent_nano + held.reserved_nano <= held.budget_nano);
    open();
    result = await run;
  } finally {
    open();
  }
  assert.equal(result.status, 0, result.stderr);
  const outcomes = (result.lines[0]?.["results"] as Line[] | undefined) ?? [];
  assert.equal(outcomes.length, total);
  const allowed = outcomes.filter((o) => o["ok"] === true).length;
  const refused = outcomes.filter((o) => {
    const error = o["error"] as Line | undefined;
    return error?.["status"] === 403 && error["code"] === "budget_exceeded";
  }).length;
  assert.equal(allowed, k);
  assert.equal(refused, total - allowed);
  assert.equal(h.fake.received.length - seen, k);

  const lines = meteredCalls("e-burst");
  assert.equal(lines.filter((l) => l["deny_reason"] === "budget_exceeded").length, total - k);
  const settled = lines.filter((l) => l["decision"] === "allow");
  assert.equal(settled.length, k);
  for (const line of settled) assert.equal(line["reserved_usd"], (reservation / 1e9).toString());
  const final = spendOf("e-burst");
  assert.equal(final.spent_nano, k * OUT_TOKENS * NANO_PER_TOKEN_AT_1);
  assert.ok(final.spent_nano + final.reserved_nano <= final.budget_nano);
  assert.equal(final.reserved_nano, 0);
  assert.equal(final.calls, k);
});

test("a TLS client hello whose SNI differs from the CONNECT host is refused", async () => {
  const token = tokenFor("e-sni", "1", ["fake-gpt=1/2"]);
  const connections = h.fake.connections();
  const r = await runAgent("sni", "", { token });
  assert.equal(r.status, 0, r.stderr);
  const out = r.lines[0] ?? {};
  assert.equal(out["connectStatus"], 200);
  assert.notEqual(out["tls"], "connected", JSON.stringify(out));
  assert.notEqual(out["tls"], "timeout", JSON.stringify(out));
  const connect = audit("e-sni").find((l) => l["method"] === "CONNECT");
  assert.equal(connect?.["decision"], "deny");
  assert.equal(connect["deny_reason"], "malformed_request");
  assert.equal(connect["host"], OPENAI);
  assert.match(String(connect["error"]), /SNI/);
  assert.equal(h.fake.connections(), connections);
});

test("a Host inside the tunnel other than the CONNECT host is refused (domain fronting)", async () => {
  const token = tokenFor("e-front", "1", ["fake-gpt=1/2"]);
  const seen = h.fake.received.length;
  const connections = h.fake.connections();
  const r = await runAgent("front", "", { token });
  assert.equal(r.status, 0, r.stderr);
  const out = r.lines[0] ?? {};
  assert.equal(out["connectStatus"], 200, JSON.stringify(out));
  assert.equal(out["status"], 403);
  assert.equal(out["decision"], "deny");
  const body = out["body"] as Line;
  assert.equal(body["deny_reason"], "malformed_request");
  assert.equal(body["policy_id"], "e-front");
  const denied = audit("e-front").filter((l) => l["provider"] !== undefined);
  assert.equal(denied.length, 1);
  const refused = denied[0] ?? {};
  assert.equal(refused["deny_reason"], "malformed_request");
  assert.equal(refused["host"], OPENAI);
  assert.match(String(refused["error"]), /Host/);
  assert.equal(h.fake.received.length, seen);
  assert.equal(h.fake.connections(), connections);
});

test("an untrusted upstream certificate denies the call, never downgrades, and charges 0", async () => {
  const token = tokenFor("e-untrusted", "1", ["fake-gpt=1/2"]);
  const seen = h.fake.received.length;
  const r = await runAgent("openai-json", "", { token, trustUpstream: false });
  assert.equal(r.status, 0, r.stderr);
  const error = (r.lines[0] ?? {})["error"] as Line | undefined;
  assert.ok(error !== undefined, r.stdout);
  // A failure to verify the upstream denies (403, which SDKs do not retry); nothing is sent.
  assert.equal(error["status"], 403);
  assert.match(String(error["message"]), /could not be judged/);
  assert.equal(h.fake.received.length, seen);
  const line = meteredCalls("e-untrusted").at(-1) ?? {};
  assert.equal(line["decision"], "deny");
  assert.equal(line["deny_reason"], "malformed_request");
  assert.match(String(line["error"]), /certificate/);
  const spend = spendOf("e-untrusted");
  assert.equal(spend.spent_nano, 0);
  assert.equal(spend.reserved_nano, 0);
});

test("plain http:// to a metered host is denied: it could not be metered", async () => {
  const token = tokenFor("e-plain", "1", ["fake-gpt=1/2"]);
  const connections = h.fake.connections();
  const r = await launch(
    [
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-w",
      "\n%{http_code}",
      "-H",
      "content-type: application/json",
      "-d",
      JSON.stringify({ model: "fake-gpt", max_tokens: 10, messages: [] }),
      `http://${OPENAI}:${h.fake.port}/v1/chat/completions`,
    ],
    { token },
  ).closed;
  assert.equal(r.status, 0, r.stderr);
  const cut = r.stdout.lastIndexOf("\n");
  assert.equal(r.stdout.slice(cut + 1), "403");
  const body = JSON.parse(r.stdout.slice(0, cut)) as Line;
  assert.equal(body["decision"], "deny");
  assert.equal(body["deny_reason"], "malformed_request");
  const line = audit("e-plain").find((l) => l["scheme"] === "http");
  assert.equal(line?.["decision"], "deny");
  assert.equal(line["deny_reason"], "malformed_request");
  assert.equal(line["host"], OPENAI);
  assert.equal(h.fake.connections(), connections);
});

test("deny bodies in the provider's shape: Anthropic SDK and Gemini over budget", async () => {
  const anthropicToken = tokenFor("e-shape-anthropic", "0.01", ["fake-claude=3/15"]);
  const seen = h.fake.received.length;
  const a = await runAgent("anthropic-huge", "", {
    token: anthropicToken,
    flags: ["--on-budget", "deny"],
  });
  assert.equal(a.status, 0, a.stderr);
  const error = (a.lines[0] ?? {})["error"] as Line;
  assert.equal(error["status"], 403);
  assert.equal(error["name"], "PermissionDeniedError");
  assert.match(String(error["message"]), /budget/);
  assert.equal(h.fake.received.length, seen);

  const geminiToken = tokenFor("e-shape-gemini", "0.01", ["fake-gemini=1/2"]);
  const g = await runAgent("gemini", "", { token: geminiToken, flags: ["--on-budget", "deny"] });
  assert.equal(g.status, 0, g.stderr);
  const out = g.lines[0] ?? {};
  const small = out["small"] as { status: number; body: Line };
  const huge = out["huge"] as { status: number; body: Line };
  // The affordable call went through and was metered from usageMetadata.
  assert.equal(small.status, 200, JSON.stringify(out));
  assert.equal(h.fake.received.length, seen + 1);
  const metered = meteredCalls("e-shape-gemini");
  const first = metered[0] ?? {};
  assert.equal(first["provider"], "gemini");
  assert.equal(first["model"], "fake-gemini");
  assert.equal(first["input_tokens"], IN_TOKENS);
  assert.equal(first["output_tokens"], OUT_TOKENS);
  // 12 × $1/M + 30 × $2/M
  assert.equal(first["cost_usd"], "0.000072");
  // The one over budget never reached the fake, and its 403 speaks Gemini.
  assert.equal(huge.status, 403);
  const body = huge.body;
  const geminiError = body["error"] as Line;
  assert.equal(geminiError["code"], 403);
  assert.equal(geminiError["status"], "PERMISSION_DENIED");
  assert.match(String(geminiError["message"]), /budget/);
  assert.deepEqual(
    {
      decision: body["decision"],
      agent_id: body["agent_id"],
      owner: body["owner"],
      policy_id: body["policy_id"],
      policy_version: body["policy_version"],
      deny_reason: body["deny_reason"],
    },
    {
      decision: "deny",
      agent_id: "bot",
      owner: "you@example.com",
      policy_id: "e-shape-gemini",
      policy_version: 1,
      deny_reason: "budget_exceeded",
    },
  );
  assert.equal(metered[1]?.["deny_reason"], "budget_exceeded");
  assert.equal(h.fake.received.length, seen + 1);
  const log = h.auditText();
  assert.ok(!log.includes("gemini-edge-secret"));
});

test("a run that ends while a call waits for its answer settles it, audits it, and exits 4", async () => {
  const token = tokenFor("e-pending", "1", ["fake-gpt=1/2"]);
  const seen = h.fake.received.length;
  // The provider answers nothing until the run is over: whatever ends the run, it is not the
  // answer. (Waiting for the call, not a fixed --max-runtime, so a slow agent start-up cannot
  // end the run before the call is made.)
  const open = closeGate();
  let r: RunResult;
  try {
    const run = runAgent("openai-json", "", { token });
    await until("the call to reach the provider", () => h.fake.received.length > seen, 30_000);
    h.ok("auth", "revoke-token", "--token", token);
    r = await run;
  } finally {
    open();
  }
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /ERR_RUN_STOPPED_TOKEN_REVOKED/);
  assert.doesNotMatch(r.stderr, /ERR_AUDIT_CLOSED|internal error/);
  const lines = audit("e-pending");
  const calls = meteredCalls("e-pending");
  assert.equal(calls.length, 1, JSON.stringify(lines));
  const [call] = calls;
  assert.ok(call !== undefined);
  assert.match(String(call["error"]), /client closed/);
  // It was sent, and nothing came back to say what it cost: charged its whole reservation.
  assert.equal(call["charged_full"], true);
  const end = lines.findIndex((l) => l["event"] === "run_end");
  assert.ok(lines.indexOf(call) < end, "the call's line comes before run_end");
  const spend = spendOf("e-pending");
  assert.equal(spend.open_reservations, 0);
  assert.ok(spend.spent_nano > 0);
});
