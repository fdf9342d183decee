import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { meteredHarness, type MeteredHarness } from "./helpers/metered-harness.js";

let h: MeteredHarness;

/**
 * An agent written against the official SDKs, knowing nothing of Vallignus. It lives outside the
 * repository, so it imports the SDKs by their resolved URLs.
 */
const AGENT = `
import OpenAI from ${JSON.stringify(import.meta.resolve("openai"))};
import Anthropic from ${JSON.stringify(import.meta.resolve("@anthropic-ai/sdk"))};
const [mode, port] = process.argv.slice(2);
const openai = new OpenAI({ apiKey: "sk-test-secret", baseURL: "https://api.openai.com:" + port + "/v1", maxRetries: 0 });
const anthropic = new Anthropic({ apiKey: "sk-ant-secret", baseURL: "https://api.anthropic.com:" + port, maxRetries: 0 });
const out = {};
try {
  if (mode === "openai-json") {
    const r = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
    out.text = r.choices[0].message.content;
  } else if (mode === "openai-stream") {
    const stream = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, stream: true, messages: [{ role: "user", content: "hi" }] });
    out.chunks = 0; out.usageChunks = 0; out.text = "";
    for await (const c of stream) { out.chunks++; if (c.usage) out.usageChunks++; out.text += c.choices[0]?.delta?.content ?? ""; }
  } else if (mode === "anthropic-stream") {
    const stream = anthropic.messages.stream({ model: "fake-claude", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
    const final = await stream.finalMessage();
    out.text = final.content[0].text; out.output = final.usage.output_tokens;
  } else if (mode === "openai-huge") {
    await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 5000000, messages: [{ role: "user", content: "hi" }] });
  } else if (mode === "openai-loop") {
    out.calls = 0;
    for (let i = 0; i < 1000; i++) {
      await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages: [{ role: "user", content: "again" }] });
      out.calls++;
      console.log(JSON.stringify(out));
    }
  } else if (mode === "openai-unpriced") {
    await openai.chat.completions.create({ model: "unknown-model-xyz", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  }
} catch (err) {
  out.error = { status: err.status, name: err.constructor.name, message: String(err.message) };
}
console.log(JSON.stringify(out));
`;

function runAgent(mode: string, token: string, extra: string[] = []) {
  return h.runAgent(token, [mode, String(h.fake.port)], { flags: extra });
}

function tokenFor(policyId: string, spend: string, gptPrice = "1/2"): string {
  return h.tokenFor(policyId, {
    spendUsd: spend,
    prices: [`fake-gpt=${gptPrice}`, "fake-claude=3/15"],
  });
}

function metered(): Record<string, unknown>[] {
  return h.auditLines().filter((r) => r["provider"] !== undefined);
}

before(async () => {
  h = await meteredHarness("vallignus-metering-", AGENT, ["api.openai.com", "api.anthropic.com"]);
});

after(() => h.close());

test("openai SDK, JSON: usage is metered and priced exactly", async () => {
  const token = tokenFor("m-json", "1");
  const r = await runAgent("openai-json", token);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { text: string }).text, "hello from fake openai");
  const line = metered().at(-1) ?? {};
  assert.equal(line["provider"], "openai");
  assert.equal(line["model"], "fake-gpt");
  assert.equal(line["input_tokens"], 12);
  assert.equal(line["output_tokens"], 30);
  // 12 × $1/M + 30 × $2/M = $0.000072
  assert.equal(line["cost_usd"], "0.000072");
  assert.equal(line["spent_usd"], "0.000072");
  const spend = JSON.parse(h.ok("spend", "--json")) as { spent_usd: string; calls: number }[];
  assert.ok(spend.some((s) => s.spent_usd === "0.000072" && s.calls === 1));
});

test("openai SDK, stream without include_usage: usage is injected upstream and hidden from the client", async () => {
  const token = tokenFor("m-stream", "1");
  const before = h.fake.received.length;
  const r = await runAgent("openai-stream", token);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { chunks: number; usageChunks: number; text: string };
  assert.equal(out.text, "hello world");
  assert.equal(out.usageChunks, 0);
  assert.equal(out.chunks, 3);
  const sent = h.fake.received.slice(before).at(-1);
  assert.deepEqual(sent?.body["stream_options"], { include_usage: true });
  assert.equal(metered().at(-1)?.["cost_usd"], "0.000072");
});

test("anthropic SDK, stream: running totals are read, not added", async () => {
  const token = tokenFor("m-anthropic", "1");
  const r = await runAgent("anthropic-stream", token);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { text: string }).text, "hello");
  const line = metered().at(-1) ?? {};
  assert.equal(line["output_tokens"], 30);
  // 12 × $3/M + 30 × $15/M = $0.000486
  assert.equal(line["cost_usd"], "0.000486");
});

test("a stream cut short is charged its full reservation", async () => {
  const token = tokenFor("m-cut", "1");
  h.fake.behaviour.cutStreams = true;
  try {
    await runAgent("openai-stream", token);
  } finally {
    h.fake.behaviour.cutStreams = false;
  }
  const line = metered().at(-1) ?? {};
  assert.equal(line["charged_full"], true);
  assert.equal(line["cost_usd"], line["reserved_usd"]);
});

test("a reservation over the budget is denied before it reaches the provider, and the run ends with 4", async () => {
  const token = tokenFor("m-budget", "0.01");
  const before = h.fake.received.length;
  const r = await runAgent("openai-huge", token);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /budget/);
  assert.equal(h.fake.received.length, before);
  const line = metered().at(-1) ?? {};
  assert.equal(line["deny_reason"], "budget_exceeded");
});

test("--on-budget deny keeps the agent running; the SDK sees a 403 with a readable error", async () => {
  const token = tokenFor("m-budget-deny", "0.01");
  const r = await runAgent("openai-huge", token, ["--on-budget", "deny"]);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { error: { status: number; name: string; message: string } };
  assert.equal(out.error.status, 403);
  assert.equal(out.error.name, "PermissionDeniedError");
  assert.match(out.error.message, /budget/);
});

test("an unpriced model is denied model_price_unknown", async () => {
  const token = tokenFor("m-unpriced", "1");
  const r = await runAgent("openai-unpriced", token, ["--on-budget", "deny"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { error: { status: number } }).error.status, 403);
  assert.equal(metered().at(-1)?.["deny_reason"], "model_price_unknown");
});

test("an agent looping on a paid API is stopped at the cap, and spend never exceeds it", async () => {
  // Input priced at 0, so each reservation is the output bound: 100 × $2/M = $0.0002.
  const token = tokenFor("m-loop", "0.002", "0/2");
  const before = h.fake.received.length;
  const r = await runAgent("openai-loop", token);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /budget/);
  const calls = h.fake.received.length - before;
  assert.ok(calls >= 1 && calls < 1000, `the provider saw ${calls} calls`);
  const ledger = (
    JSON.parse(h.ok("spend", "--json")) as {
      policy_id: string;
      spent_nano: number;
      reserved_nano: number;
      budget_nano: number;
    }[]
  ).find((l) => l.policy_id === "m-loop");
  assert.ok(ledger);
  assert.equal(ledger.reserved_nano, 0);
  assert.ok(
    ledger.spent_nano <= ledger.budget_nano,
    `spent ${ledger.spent_nano} of ${ledger.budget_nano}`,
  );
  // Each call costs 30 × $2/M = $0.00006; the run goes on until a reservation no longer fits.
  assert.equal(ledger.spent_nano, calls * 60_000);
  assert.ok(
    ledger.budget_nano - ledger.spent_nano < 200_002,
    "stopped only when the next call could not fit",
  );
});

test("no API key or token text reaches the audit log", () => {
  const log = h.auditText();
  assert.ok(!log.includes("sk-test-secret"));
  assert.ok(!log.includes("sk-ant-secret"));
});
