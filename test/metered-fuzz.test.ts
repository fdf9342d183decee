/**
 * No request can crash the proxy: adversarial bodies thrown at the metered path of the built
 * `vallignus run`, over real CONNECT tunnels and real TLS, to a fake provider speaking the real
 * wire format. Each must be answered (a 403 with the deny JSON, or forwarded where it is a
 * legitimate call), each decision must be in the audit log, and afterwards the official SDK's
 * ordinary call must still go through the same run.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { AGENT_TUNNEL_JS, meteredHarness, type MeteredHarness } from "./helpers/metered-harness.js";

const OPENAI = "api.openai.com";
const ANTHROPIC = "api.anthropic.com";
const CHAT = "/v1/chat/completions";
const MESSAGES = "/v1/messages";
const DENY_REASONS = new Set([
  "malformed_request",
  "model_not_allowed",
  "model_price_unknown",
  "budget_exceeded",
]);

let h: MeteredHarness;

/**
 * The agent: one fresh CONNECT tunnel and TLS session per case (so a case that breaks its
 * connection cannot spill into the next), the body written byte for byte as the case file holds
 * it; then one ordinary call with the official OpenAI SDK. One JSON line per case on stdout.
 */
function agentSource(): string {
  return `
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from ${JSON.stringify(import.meta.resolve("openai"))};

const [dir, port] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8"));
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");

${AGENT_TUNNEL_JS}

/** A TLS session with the provider, inside a tunnel of its own. */
async function connect(host) {
  const { socket, status } = await tunnel(host, port);
  if (status !== 200) { socket.destroy(); throw new Error("CONNECT " + status); }
  const secure = tls.connect({ socket, servername: host, ALPNProtocols: ["http/1.1"] });
  return new Promise((resolve, reject) => {
    secure.once("secureConnect", () => resolve(secure));
    secure.once("error", reject);
  });
}

/** Sends one request and reads the answer until the proxy or the provider closes. */
async function send(c) {
  const body = readFileSync(join(dir, c.file));
  const socket = await connect(c.host);
  return new Promise((resolve) => {
    const chunks = [];
    let writeError = null;
    const timer = setTimeout(() => { socket.destroy(); }, 20000);
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", (e) => { writeError = e.code ?? e.message; });
    socket.once("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\\r\\n\\r\\n");
      const head = split === -1 ? [] : text.slice(0, split).split("\\r\\n");
      const header = (name) => head.find((h) => h.toLowerCase().startsWith(name + ":"))?.split(":")[1]?.trim() ?? null;
      let json = null;
      try { json = JSON.parse(text.slice(split + 4)); } catch {}
      resolve({
        name: c.name,
        status: head.length > 0 ? Number(head[0].split(" ")[1]) : null,
        decisionHeader: header("x-vallignus-decision"),
        decision: json?.decision ?? null,
        denyReason: json?.deny_reason ?? null,
        error: head.length > 0 ? null : writeError,
      });
    });
    socket.write(
      "POST " + c.path + " HTTP/1.1\\r\\nHost: " + c.host + ":" + port +
      "\\r\\ncontent-type: application/json\\r\\ncontent-length: " + body.length +
      "\\r\\nconnection: close\\r\\n\\r\\n",
    );
    socket.write(body);
  });
}

for (const c of cases) {
  try {
    say(await send(c));
  } catch (err) {
    say({ name: c.name, status: null, error: String(err?.message ?? err) });
  }
}
const openai = new OpenAI({ apiKey: "sk-fuzz-secret", baseURL: "https://${OPENAI}:" + port + "/v1", maxRetries: 0, timeout: 15000 });
try {
  const r = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 50, messages: [{ role: "user", content: "hi" }] });
  say({ name: "sdk after the fuzz", text: r.choices[0].message.content });
} catch (err) {
  say({ name: "sdk after the fuzz", error: String(err?.message ?? err) });
}
`;
}

/** One adversarial request, and what must come of it ("any" for a random mutation). */
interface Case {
  readonly name: string;
  readonly host: string;
  readonly path: string;
  readonly body: Buffer;
  /** A deny reason, "forwarded", or "any" (a 403 with a known reason, or forwarded). */
  readonly expect: string;
}

const text = (s: string) => Buffer.from(s, "utf8");
const chat = (fields: string, stream = false) =>
  text(
    `{"model":"fake-gpt","messages":[{"role":"user","content":"hi"}],${fields}` +
      `${stream ? ',"stream":true' : ""}}`,
  );
const deepObjects = (depth: number) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
const deepArrays = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

/** mulberry32: a small seeded PRNG, so that the random cases are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), a | 1);
    r ^= r + Math.imul(r ^ (r >>> 7), r | 61);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const SPLICES = ['{"a":', "[", "]", "}", ",", ":", '"', "\\", "\u0000", "1e400", '"max_tokens":9'];

/** A legitimate body with a few random byte-level mutations: flips, cuts, repeats, splices. */
function mutate(base: Buffer, random: () => number): Buffer {
  let bytes = Buffer.from(base);
  const at = () => Math.floor(random() * (bytes.length + 1));
  for (let i = 0, edits = 1 + Math.floor(random() * 4); i < edits; i++) {
    const kind = Math.floor(random() * 4);
    const p = at();
    if (kind === 0 && bytes.length > 0) {
      const copy = Buffer.from(bytes);
      copy[Math.min(p, copy.length - 1)] = Math.floor(random() * 256);
      bytes = copy;
    } else if (kind === 1) {
      bytes = Buffer.concat([bytes.subarray(0, p), bytes.subarray(Math.min(bytes.length, p + 8))]);
    } else if (kind === 2) {
      bytes = Buffer.concat([bytes.subarray(0, p), bytes.subarray(p, p + 12), bytes.subarray(p)]);
    } else {
      const splice = SPLICES[Math.floor(random() * SPLICES.length)] ?? "";
      bytes = Buffer.concat([bytes.subarray(0, p), text(splice), bytes.subarray(p)]);
    }
  }
  return bytes;
}

function fixedCases(): Case[] {
  const openai = (name: string, body: Buffer, expect: string): Case => ({
    name,
    host: OPENAI,
    path: CHAT,
    body,
    expect,
  });
  const malformed = (name: string, body: Buffer) => openai(name, body, "malformed_request");
  // The review's request: 120 KB, streaming, metadata 20,000 objects deep.
  const deepMetadata = chat(`"max_tokens":10,"metadata":${deepObjects(20_000)}`, true);
  return [
    openai("baseline", chat('"max_tokens":10'), "forwarded"),
    openai("baseline streaming", chat('"max_tokens":10', true), "forwarded"),
    malformed("metadata 20,000 objects deep, streaming", deepMetadata),
    malformed("metadata 20,000 objects deep", chat(`"metadata":${deepObjects(20_000)}`)),
    malformed("messages 20,000 arrays deep", chat(`"x":${deepArrays(20_000)}`, true)),
    malformed("a whole body of 20,000 arrays", text(deepArrays(20_000))),
    malformed("duplicate max_tokens", chat('"max_tokens":1,"max_tokens":100000')),
    malformed("duplicate model", chat('"max_tokens":1,"model":"other-model"')),
    malformed("duplicate key deep inside", chat('"max_tokens":1,"metadata":{"k":1,"k":2}')),
    malformed("duplicate key spelled with an escape", chat('"max_tokens":1,"max_\\u0074okens":9')),
    malformed("max_tokens 1e400", chat('"max_tokens":1e400')),
    malformed("max_tokens 30 digits", chat('"max_tokens":123456789012345678901234567890')),
    malformed("max_tokens a string", chat('"max_tokens":"100"')),
    malformed("max_tokens negative", chat('"max_tokens":-1')),
    malformed("max_tokens a float", chat('"max_tokens":10.5')),
    malformed("max_tokens an object", chat('"max_tokens":{"value":10}')),
    malformed("n 1e400", chat('"max_tokens":1,"n":1e400')),
    malformed(
      "invalid UTF-8",
      Buffer.concat([chat('"max_tokens":1').subarray(0, 40), Buffer.from([0xff, 0xfe, 0xc3])]),
    ),
    malformed(
      "lone surrogate bytes",
      Buffer.concat([
        text('{"model":"fake-gpt","x":"'),
        Buffer.from([0xed, 0xa0, 0x80]),
        text('"}'),
      ]),
    ),
    malformed("raw NUL in a string", text('{"model":"fake-gpt","max_tokens":1,"x":"a\u0000b"}')),
    openai("escaped NUL in a string", chat('"max_tokens":1,"user":"a\\u0000b"'), "forwarded"),
    malformed("NUL after the body", Buffer.concat([chat('"max_tokens":1'), Buffer.from([0])])),
    malformed("truncated JSON", chat('"max_tokens":10').subarray(0, 50)),
    malformed("empty body", Buffer.alloc(0)),
    malformed("a JSON array", text("[1,2,3]")),
    malformed("a JSON string", text('"hello"')),
    malformed("32 MiB and one byte", Buffer.alloc(32 * 1024 * 1024 + 1, 0x20)),
    {
      name: "anthropic duplicate max_tokens",
      host: ANTHROPIC,
      path: MESSAGES,
      body: text(
        '{"model":"fake-claude","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"max_tokens":9000}',
      ),
      expect: "malformed_request",
    },
    {
      name: "anthropic deep system prompt",
      host: ANTHROPIC,
      path: MESSAGES,
      body: text(`{"model":"fake-claude","max_tokens":1,"system":${deepArrays(20_000)}}`),
      expect: "malformed_request",
    },
  ];
}

/** Values a field may take in a reshaped body: legitimate, odd, and wrong. */
const FIELD_VALUES: Readonly<Record<string, readonly unknown[]>> = {
  max_tokens: [0, 1, 64, 2 ** 31, 2 ** 53 - 1, 2 ** 53, -1, 1.5, "10", null, true, {}, [], 1e308],
  n: [1, 2, 128, 129, 0, null, 1.0],
  stream: [true, false, "true", null, 1],
  model: ["fake-gpt", "unknown-model", "", 5, null],
  stream_options: [{}, { include_usage: false }, { include_usage: true }, "x", null],
  user: ["a\u0000b", "\ud800", "😀", '"},{"x":[', ""],
};

const pick = <T>(values: readonly T[], random: () => number): T =>
  values[Math.floor(random() * values.length)] as T;

/** Nested objects and arrays, `depth` levels, of a random mix. */
function nest(depth: number, random: () => number): unknown {
  let value: unknown = "leaf";
  for (let i = 0; i < depth; i++) value = random() < 0.5 ? [value] : { k: value };
  return value;
}

/**
 * A JSON-aware mutation: a chat body whose fields take random values from FIELD_VALUES, with
 * nesting up to 100 deep, and sometimes a field given twice, so that the cases reach every
 * decision (forwarded, each refusal) and not only the parser's.
 */
function reshape(random: () => number): Buffer {
  const fields: Record<string, unknown> = { model: "fake-gpt", messages: [] };
  for (const [key, values] of Object.entries(FIELD_VALUES)) {
    if (random() < 0.25) fields[key] = pick(values, random);
  }
  if (random() < 0.3) fields["metadata"] = nest(Math.floor(random() * 100), random);
  // `user` values are JSON text already (escapes the serializer would not write).
  const { user, ...rest } = fields;
  let text = JSON.stringify(rest);
  if (typeof user === "string") text = `${text.slice(0, -1)},"user":"${user}"}`;
  if (random() < 0.2) text = `${text.slice(0, -1)},"max_tokens":${pick([1, 9e9], random)}}`;
  return Buffer.from(text, "utf8");
}

function randomCases(count: number): Case[] {
  const random = seeded(12);
  const base = chat('"max_tokens":10,"metadata":{"a":[1,2,{"b":"c"}]}', true);
  return Array.from({ length: count }, (_, i) => ({
    name: `mutation ${i}`,
    host: OPENAI,
    path: CHAT,
    body: i % 2 === 0 ? mutate(base, random) : reshape(random),
    expect: "any",
  }));
}

/** One JSON line: what the agent printed, or an audit record. */
type Line = Record<string, unknown>;

/** What the agent saw: the deny reason of a contract 403, "forwarded" for a 200, else what. */
function outcome(got: Line): string {
  if (
    got["status"] === 403 &&
    got["decisionHeader"] === "deny" &&
    got["decision"] === "deny" &&
    typeof got["denyReason"] === "string"
  ) {
    return got["denyReason"];
  }
  return got["status"] === 200 ? "forwarded" : `unanswered ${JSON.stringify(got)}`;
}

function auditLines(policyId: string): Line[] {
  return h.auditLines().filter((r) => r["policy_id"] === policyId);
}

before(async () => {
  h = await meteredHarness("vallignus-fuzz-", agentSource(), [OPENAI, ANTHROPIC]);
});

after(() => h.close());

test("adversarial bodies on the metered path: each answered and audited, the proxy serves on", async (ctx) => {
  const cases = [...fixedCases(), ...randomCases(80)];
  const dir = join(h.root, "cases");
  mkdirSync(dir);
  cases.forEach((c, i) => writeFileSync(join(dir, `${i}.bin`), c.body));
  const index = cases.map((c, i) => ({
    name: c.name,
    host: c.host,
    path: c.path,
    file: `${i}.bin`,
  }));
  writeFileSync(join(dir, "cases.json"), JSON.stringify(index));
  const token = h.tokenFor("fuzz", { spendUsd: "50", prices: ["fake-gpt=1/2", "fake-claude=1/2"] });
  const seen = h.fake.received.length;

  const run = await h.runAsync(
    h.runArgs([process.execPath, h.agentFile, dir, String(h.fake.port)], {
      // A huge max_tokens is a legitimate budget_exceeded here: the run goes on to the next case.
      flags: ["--token", token, "--on-budget", "deny"],
    }),
  );
  assert.equal(run.status, 0, `vallignus run exited ${String(run.status)}: ${run.stderr}`);
  const results = run.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
  assert.equal(results.length, cases.length + 1, run.stdout);

  const records = auditLines("fuzz").filter(
    (r) => r["method"] === "POST" && r["decision"] !== undefined,
  );
  assert.equal(records.length, cases.length + 1, "one audit line per request");
  let forwarded = 0;
  const wrong: string[] = [];
  const mutations = new Map<string, number>();
  cases.forEach((c, i) => {
    const got = results[i] ?? {};
    const record = records[i] ?? {};
    const seenAs = outcome(got);
    if (seenAs === "forwarded") forwarded++;
    if (c.expect === "any") mutations.set(seenAs, (mutations.get(seenAs) ?? 0) + 1);
    const expected =
      c.expect !== "any" || !(seenAs === "forwarded" || DENY_REASONS.has(seenAs))
        ? c.expect
        : seenAs;
    const audited = record["decision"] === "deny" ? record["deny_reason"] : "forwarded";
    if (seenAs !== expected || record["host"] !== c.host || audited !== seenAs) {
      wrong.push(`${c.name}: expected ${expected}, answered ${seenAs}, audited ${String(audited)}`);
    }
  });
  assert.deepEqual(wrong, []);
  // The mutations reach both sides of the decision, not only the JSON parser's refusal.
  ctx.diagnostic(`mutations: ${JSON.stringify([...mutations])}`);
  assert.ok(mutations.has("forwarded") && mutations.has("malformed_request"));
  // Only what was forwarded reached the provider, and the last call (the SDK's) got through.
  assert.deepEqual(results.at(-1), { name: "sdk after the fuzz", text: "hello from fake openai" });
  assert.equal(h.fake.received.length - seen, forwarded + 1);
  assert.equal(records.at(-1)?.["decision"], "allow");
  assert.ok(
    auditLines("fuzz").some((r) => r["event"] === "run_end"),
    "the run ended in order",
  );
  // Every line the fuzz made keeps the hash chain whole.
  h.ok("audit", "verify");
});
