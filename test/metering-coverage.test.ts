/**
 * Metering as a true upper bound, end to end through the built `vallignus run` with curl as the
 * client and a fake provider that answers in each API's real wire format (issue 12): audio tokens
 * at their own prices, server-tool fees reserved and settled (or the call refused), and the
 * regional and cloud hosts of the metered providers metered or refused, never tunnelled.
 */
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Server } from "node:https";
import { after, before, test } from "node:test";

import {
  meteredHome,
  startTlsProvider,
  type AuditLine,
  type MeteredHome,
} from "./helpers/metered-harness.js";

const HOSTS = [
  "api.openai.com",
  "eu.api.openai.com",
  "us.api.openai.com",
  "api.anthropic.com",
  "res1.cognitiveservices.azure.com",
  "res1.services.ai.azure.com",
  "us-central1-aiplatform.googleapis.com",
];

/** A request the fake received. */
interface Received {
  readonly host: string;
  readonly path: string;
  readonly body: Record<string, unknown>;
}

/**
 * The provider's answer to a request, by the model it names (or, for path-routed APIs, the
 * model in the path): each test registers the usage its model's call reports.
 */
const answers = new Map<string, Record<string, unknown>>();
const received: Received[] = [];
let server: Server;
let port = 0;
let h: MeteredHome;

/** The model of a request: the body's, else the last path segment before `:` (Gemini, Azure). */
function modelOf(path: string, body: Record<string, unknown>): string {
  if (typeof body["model"] === "string") return body["model"];
  const deployment = /\/deployments\/([^/]+)\//.exec(path)?.[1];
  return deployment ?? /\/models\/([^/:]+):/.exec(path)?.[1] ?? "";
}

function answer(req: IncomingMessage, res: ServerResponse, text: string): void {
  const body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
  const path = req.url ?? "";
  received.push({ host: String(req.headers.host), path, body });
  const json = answers.get(modelOf(path, body));
  if (json === undefined) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":{"message":"no such model"}}');
    return;
  }
  const out = JSON.stringify(json);
  res.writeHead(200, { "content-type": "application/json", "content-length": out.length });
  res.end(out);
}

/**
 * The agent: a list of calls as JSON in argv, each made with curl through the run's proxy; one
 * JSON line per call with the status and the parsed answer.
 */
const AGENT = `
import { execFileSync } from "node:child_process";
const calls = JSON.parse(process.argv[2]);
for (const call of calls) {
  const out = execFileSync("curl", [
    "-sS", "--max-time", "10", "-w", "\\n%{http_code}",
    "-H", "content-type: application/json", "-H", "authorization: Bearer sk-coverage-secret",
    "-d", JSON.stringify(call.body), call.url,
  ], { encoding: "utf8" });
  const cut = out.lastIndexOf("\\n");
  let body;
  try { body = JSON.parse(out.slice(0, cut)); } catch { body = out.slice(0, cut); }
  process.stdout.write(JSON.stringify({ status: Number(out.slice(cut + 1)), body }) + "\\n");
}
`;

interface Call {
  readonly url: string;
  readonly body: Record<string, unknown>;
}

interface CallResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** One `vallignus run` of the agent making `calls`, under a policy of its own. */
async function runCalls(
  policyId: string,
  calls: readonly Call[],
  budgetUsd = "5",
): Promise<CallResult[]> {
  const token = h.tokenFor(policyId, { spendUsd: budgetUsd });
  const r = await h.runAgent(token, [JSON.stringify(calls)], { flags: ["--on-budget", "deny"] });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as CallResult);
}

/** The audit lines of one policy's run that decided a request (not lifecycle events). */
function auditOf(policyId: string): AuditLine[] {
  return h
    .auditLines()
    .filter((line) => line["policy_id"] === policyId && line["method"] !== undefined);
}

/** The metered line (it names a provider) of each request, in order. */
function meteredOf(policyId: string): AuditLine[] {
  return auditOf(policyId).filter((line) => line["provider"] !== undefined);
}

const url = (host: string, path: string) => `https://${host}:${String(port)}${path}`;

before(async () => {
  const provider = await startTlsProvider(HOSTS, answer);
  server = provider.server;
  port = provider.port;
  h = meteredHome("vallignus-coverage-", { caPem: provider.caPem, port, hosts: HOSTS }, AGENT);
});

after(async () => {
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
  h.cleanup();
});

/** An OpenAI chat completion answer with this usage. */
function chatAnswer(model: string, usage: Record<string, unknown>): Record<string, unknown> {
  return {
    id: "chatcmpl-cov",
    object: "chat.completion",
    created: 1_764_000_000,
    model,
    choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
    usage,
  };
}

test("gpt-audio: audio output tokens are charged at the audio price, within the reservation", async () => {
  // The call: 3,990 audio output tokens, charged $0.04015 as text; the table says $0.256.
  answers.set(
    "gpt-audio",
    chatAnswer("gpt-audio-2025-08-28", {
      prompt_tokens: 100,
      completion_tokens: 3_990,
      total_tokens: 4_090,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 3_990 },
    }),
  );
  const [call] = await runCalls("cov-audio", [
    {
      url: url("api.openai.com", "/v1/chat/completions"),
      body: {
        model: "gpt-audio",
        modalities: ["text", "audio"],
        audio: { voice: "alloy", format: "wav" },
        max_completion_tokens: 4_000,
        messages: [{ role: "user", content: "Say hello" }],
      },
    },
  ]);
  assert.equal(call?.status, 200);
  const [line] = meteredOf("cov-audio");
  assert.equal(line?.["model"], "gpt-audio");
  // 100 × $2.50/M + 3,990 × $64/M (output_audio_mtok) = $0.25561.
  assert.equal(line["cost_usd"], "0.25561");
  assert.equal(line["charged_full"], undefined);
  // The reservation priced the 4,000 output tokens at $64/M too: at least $0.256.
  assert.ok(Number(line["reserved_usd"]) >= 0.256, `reserved ${String(line["reserved_usd"])}`);
});

test("Anthropic web search: max_uses is reserved at $10 per 1,000 and the searches reported are charged", async () => {
  answers.set("claude-sonnet-4-0", {
    id: "msg_cov",
    type: "message",
    role: "assistant",
    model: "claude-sonnet-4-0",
    content: [{ type: "text", text: "ok" }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: {
      input_tokens: 105,
      output_tokens: 18,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      server_tool_use: { web_search_requests: 50 },
    },
  });
  const before = received.length;
  const messages = [{ role: "user", content: "news?" }];
  // Each of up to 51 turns can read the whole 200K window (10.2M tokens at the dearest input
  // price): the budget must be above that reservation.
  const calls = await runCalls(
    "cov-search",
    [
      {
        url: url("api.anthropic.com", "/v1/messages"),
        body: {
          model: "claude-sonnet-4-0",
          max_tokens: 100,
          messages,
          tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 50 }],
        },
      },
      {
        url: url("api.anthropic.com", "/v1/messages"),
        body: {
          model: "claude-sonnet-4-0",
          max_tokens: 100,
          messages,
          tools: [{ type: "web_search_20250305", name: "web_search" }],
        },
      },
    ],
    "200",
  );
  assert.deepEqual(
    calls.map((c) => c.status),
    [200, 403],
  );
  // Only the bounded call reached the provider.
  assert.equal(received.length - before, 1);
  const [paid, refused] = meteredOf("cov-search");
  // 105 × $3/M + 18 × $15/M + 50 searches × $0.01 = $0.500585 (was $0.000585).
  assert.equal(paid?.["cost_usd"], "0.500585");
  assert.ok(Number(paid["reserved_usd"]) >= 0.5);
  assert.equal(refused?.["deny_reason"], "model_price_unknown");
  assert.equal(calls[1]?.body["decision"], "deny");
});

test("OpenAI web search: refused without max_tool_calls, charged per call with it; chat search per call", async () => {
  answers.set(
    "gpt-4o-search-preview",
    chatAnswer("gpt-4o-search-preview-2025-03-11", {
      prompt_tokens: 1_000,
      completion_tokens: 100,
      total_tokens: 1_100,
    }),
  );
  answers.set("gpt-4o", {
    id: "resp_cov",
    object: "response",
    status: "completed",
    model: "gpt-4o-2024-08-06",
    output: [
      { type: "web_search_call", id: "ws_1", status: "completed" },
      { type: "web_search_call", id: "ws_2", status: "completed" },
      {
        type: "message",
        id: "msg_1",
        role: "assistant",
        content: [{ type: "output_text", text: "ok" }],
      },
    ],
    usage: {
      input_tokens: 1_000,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 100,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 1_100,
    },
  });
  const body = { model: "gpt-4o", input: "news?", max_output_tokens: 200 };
  const calls = await runCalls("cov-responses", [
    {
      url: url("api.openai.com", "/v1/responses"),
      body: { ...body, tools: [{ type: "web_search" }] },
    },
    {
      url: url("api.openai.com", "/v1/responses"),
      body: { ...body, tools: [{ type: "web_search" }], max_tool_calls: 2 },
    },
    {
      url: url("api.openai.com", "/v1/responses"),
      body: { ...body, tools: [{ type: "code_interpreter", container: { type: "auto" } }] },
    },
    {
      url: url("api.openai.com", "/v1/chat/completions"),
      body: {
        model: "gpt-4o-search-preview",
        max_tokens: 100,
        messages: [{ role: "user", content: "news?" }],
      },
    },
  ]);
  assert.deepEqual(
    calls.map((c) => c.status),
    [403, 200, 403, 200],
  );
  const lines = meteredOf("cov-responses");
  assert.equal(lines[0]?.["deny_reason"], "model_price_unknown");
  // 1,000 × $2.50/M + 100 × $10/M + 2 web searches × $0.01 = $0.0235.
  assert.equal(lines[1]?.["cost_usd"], "0.0235");
  assert.equal(lines[2]?.["deny_reason"], "model_price_unknown");
  // A chat search model searches once per call, unreported: 1,000 × $2.50/M + 100 × $10/M +
  // $0.05 (the dearest chat-search rate).
  assert.equal(lines[3]?.["cost_usd"], "0.0535");
});

test("predicted outputs: rejected prediction tokens are reserved at the output price (review F1)", async () => {
  // The review's call: max_completion_tokens 1 with a 20,000-token prediction; the provider
  // billed 20,001 output tokens (20,000 rejected). Reserved $0.0066 for a $0.0120 cost before.
  answers.set(
    "gpt-4o-mini",
    chatAnswer("gpt-4o-mini-2024-07-18", {
      prompt_tokens: 20,
      completion_tokens: 20_001,
      total_tokens: 20_021,
      completion_tokens_details: {
        reasoning_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 20_000,
      },
    }),
  );
  const [call] = await runCalls("cov-prediction", [
    {
      url: url("api.openai.com", "/v1/chat/completions"),
      body: {
        model: "gpt-4o-mini",
        max_completion_tokens: 1,
        prediction: { type: "content", content: " a".repeat(20_000) },
        messages: [{ role: "user", content: "Say a" }],
      },
    },
  ]);
  assert.equal(call?.status, 200);
  const [line] = meteredOf("cov-prediction");
  // 20 × $0.15/M + 20,001 × $0.60/M.
  assert.equal(line?.["cost_usd"], "0.0120036");
  const reserved = Number(line["reserved_usd"]);
  assert.ok(reserved >= 0.0120036, `reserved ${String(line["reserved_usd"])}`);
});

test("server-tool loops: input is reserved for every turn, window × (max_tool_calls + 1) (review F2)", async () => {
  // The review's call: deep research with 20 searches read 1,500,000 input tokens through a
  // 200K window; reserved $0.98 for a $3.572 cost before.
  answers.set("o4-mini-deep-research", {
    id: "resp_deep",
    object: "response",
    status: "completed",
    model: "o4-mini-deep-research-2025-06-26",
    output: [
      ...Array.from({ length: 20 }, (_, i) => ({
        type: "web_search_call",
        id: `ws_${String(i)}`,
        status: "completed",
      })),
      {
        type: "message",
        id: "m",
        role: "assistant",
        content: [{ type: "output_text", text: "ok" }],
      },
    ],
    usage: {
      input_tokens: 1_500_000,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 9_000,
      output_tokens_details: { reasoning_tokens: 8_000 },
      total_tokens: 1_509_000,
    },
  });
  const [call] = await runCalls(
    "cov-loop",
    [
      {
        url: url("api.openai.com", "/v1/responses"),
        body: {
          model: "o4-mini-deep-research",
          input: "research",
          tools: [{ type: "web_search_preview" }],
          max_tool_calls: 20,
          max_output_tokens: 10_000,
        },
      },
    ],
    "20",
  );
  assert.equal(call?.status, 200);
  const [line] = meteredOf("cov-loop");
  // 1,500,000 × $2/M + 9,000 × $8/M + 20 × $0.025.
  assert.equal(line?.["cost_usd"], "3.572");
  // 21 turns × 200,000 at $2/M, 10,000 × $8/M, 20 × $0.025.
  assert.ok(Number(line["reserved_usd"]) >= 8.98, `reserved ${String(line["reserved_usd"])}`);
});

test("service tiers billed above standard prices are refused, flex and default pass (review F4)", async () => {
  answers.set(
    "gpt-4.1",
    chatAnswer("gpt-4.1-2025-04-14", { prompt_tokens: 10, completion_tokens: 5 }),
  );
  const before = received.length;
  const body = { model: "gpt-4.1", max_tokens: 5, messages: [{ role: "user", content: "hi" }] };
  const chatUrl = url("api.openai.com", "/v1/chat/completions");
  const calls = await runCalls("cov-tier", [
    { url: chatUrl, body: { ...body, service_tier: "priority" } },
    { url: chatUrl, body: { ...body, service_tier: "flex" } },
    { url: chatUrl, body: { ...body, service_tier: "default" } },
  ]);
  assert.deepEqual(
    calls.map((c) => c.status),
    [403, 200, 200],
  );
  assert.equal(received.length - before, 2, "the priority call never reached the provider");
  const [refused] = meteredOf("cov-tier");
  assert.equal(refused?.["deny_reason"], "model_price_unknown");
  assert.equal(calls[0]?.body["decision"], "deny");
});

test("regional OpenAI hosts are metered as OpenAI, not tunnelled", async () => {
  answers.set(
    "gpt-4o-mini",
    chatAnswer("gpt-4o-mini", {
      prompt_tokens: 1_000,
      completion_tokens: 100,
      total_tokens: 1_100,
    }),
  );
  const body = {
    model: "gpt-4o-mini",
    max_tokens: 100,
    messages: [{ role: "user", content: "hi" }],
  };
  const calls = await runCalls("cov-regional", [
    { url: url("eu.api.openai.com", "/v1/chat/completions"), body },
    { url: url("us.api.openai.com", "/v1/chat/completions"), body },
  ]);
  assert.deepEqual(
    calls.map((c) => c.status),
    [200, 200],
  );
  const lines = meteredOf("cov-regional");
  assert.deepEqual(
    lines.map((line) => [line["host"], line["provider"], line["model"], line["cost_usd"]]),
    [
      // 1,000 × $0.15/M + 100 × $0.60/M = $0.00021
      ["eu.api.openai.com", "openai", "gpt-4o-mini", "0.00021"],
      ["us.api.openai.com", "openai", "gpt-4o-mini", "0.00021"],
    ],
  );
});

test("Azure AI hosts are metered; a deployment name that is no priced model is refused", async () => {
  answers.set(
    "gpt-4o",
    chatAnswer("gpt-4o-2024-08-06", {
      prompt_tokens: 1_000,
      completion_tokens: 100,
      total_tokens: 1_100,
    }),
  );
  answers.set("prod-deploy", chatAnswer("gpt-4o", { prompt_tokens: 1, completion_tokens: 1 }));
  const messages = [{ role: "user", content: "hi" }];
  const before = received.length;
  const calls = await runCalls("cov-azure", [
    {
      url: url(
        "res1.cognitiveservices.azure.com",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
      ),
      body: { max_tokens: 100, messages },
    },
    {
      url: url(
        "res1.cognitiveservices.azure.com",
        "/openai/deployments/prod-deploy/chat/completions?api-version=2024-10-21",
      ),
      body: { max_tokens: 100, messages },
    },
    {
      url: url(
        "res1.services.ai.azure.com",
        "/models/chat/completions?api-version=2024-05-01-preview",
      ),
      body: { model: "gpt-4o", max_tokens: 100, messages },
    },
  ]);
  assert.deepEqual(
    calls.map((c) => c.status),
    [200, 403, 200],
  );
  assert.equal(received.length - before, 2);
  const lines = meteredOf("cov-azure");
  assert.deepEqual(
    lines.map((line) => [line["provider"], line["model"], line["deny_reason"] ?? line["cost_usd"]]),
    [
      // 1,000 × $2.50/M + 100 × $10/M = $0.0035 (Azure's table falls back to OpenAI's prices)
      ["azure", "gpt-4o", "0.0035"],
      ["azure", "prod-deploy", "model_price_unknown"],
      ["azure", "gpt-4o", "0.0035"],
    ],
  );
});

test("Vertex AI: Gemini generateContent is metered, other model calls are refused", async () => {
  answers.set("gemini-2.5-flash", {
    candidates: [
      { content: { role: "model", parts: [{ text: "ok" }] }, finishReason: "STOP", index: 0 },
    ],
    usageMetadata: { promptTokenCount: 1_000, candidatesTokenCount: 100, totalTokenCount: 1_100 },
    modelVersion: "gemini-2.5-flash",
  });
  const base = "/v1/projects/p1/locations/us-central1/publishers";
  const before = received.length;
  const calls = await runCalls("cov-vertex", [
    {
      url: url(
        "us-central1-aiplatform.googleapis.com",
        `${base}/google/models/gemini-2.5-flash:generateContent`,
      ),
      body: {
        contents: [{ role: "user", parts: [{ text: "hi" }] }],
        generationConfig: { maxOutputTokens: 100 },
      },
    },
    {
      url: url(
        "us-central1-aiplatform.googleapis.com",
        `${base}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict`,
      ),
      body: { anthropic_version: "vertex-2023-10-16", max_tokens: 10, messages: [] },
    },
  ]);
  assert.deepEqual(
    calls.map((c) => c.status),
    [200, 403],
  );
  assert.equal(received.length - before, 1);
  const lines = meteredOf("cov-vertex");
  assert.equal(lines[0]?.["provider"], "vertex");
  assert.equal(lines[0]["model"], "gemini-2.5-flash");
  // 1,000 × $0.30/M + 100 × $2.50/M = $0.00055
  assert.equal(lines[0]["cost_usd"], "0.00055");
  assert.equal(lines[1]?.["deny_reason"], "model_price_unknown");
});

test("no API key reaches the audit log", () => {
  assert.ok(!h.auditText().includes("sk-coverage"));
});
