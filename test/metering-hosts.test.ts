/**
 * Hosts of a metered provider are metered or refused, never tunnelled, and a path the provider
 * may read otherwise than we do is refused (issue 12, review F3 and F5): end to end through the
 * built `vallignus run`, curl as the client and a fake provider that speaks each API's wire format.
 */
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Server } from "node:https";
import { after, before, test } from "node:test";

import { meteredHome, startTlsProvider, type MeteredHome } from "./helpers/metered-harness.js";

const INFERENCE = "x.eastus2.models.ai.azure.com";
const GOV = "res.openai.azure.us";
const MTLS = "generativelanguage.mtls.googleapis.com";
const AZURE = "res1.openai.azure.com";
const HOSTS = [INFERENCE, GOV, MTLS, AZURE];

/** What the fake received: host and raw path of each request. */
const received: string[] = [];
let server: Server;
let port = 0;
let h: MeteredHome;

const USAGE: Record<string, Record<string, unknown>> = {
  "gpt-4o-mini": {
    id: "chatcmpl-hosts",
    object: "chat.completion",
    created: 1_764_000_000,
    model: "gpt-4o-mini",
    choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
    usage: { prompt_tokens: 1_000, completion_tokens: 100, total_tokens: 1_100 },
  },
  "gemini-2.5-flash": {
    candidates: [
      { content: { role: "model", parts: [{ text: "ok" }] }, finishReason: "STOP", index: 0 },
    ],
    usageMetadata: { promptTokenCount: 1_000, candidatesTokenCount: 100, totalTokenCount: 1_100 },
    modelVersion: "gemini-2.5-flash",
  },
};

function answer(req: IncomingMessage, res: ServerResponse, text: string): void {
  const path = req.url ?? "";
  received.push(`${String(req.headers.host)}${path}`);
  const body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
  const model =
    typeof body["model"] === "string"
      ? body["model"]
      : (/\/deployments\/([^/]+)\//.exec(path)?.[1] ?? /\/models\/([^/:]+):/.exec(path)?.[1]);
  const json = USAGE[model ?? ""];
  const out = JSON.stringify(json ?? { error: { message: "no such model" } });
  res.writeHead(json === undefined ? 404 : 200, { "content-type": "application/json" });
  res.end(out);
}

/**
 * The agent: each call made with curl through the run's proxy; one JSON line per call. A curl
 * that fails (a tunnelled host whose certificate the agent does not trust) reports status 0.
 */
const AGENT = `
import { execFileSync } from "node:child_process";
for (const call of JSON.parse(process.argv[2])) {
  let out;
  try {
    out = execFileSync("curl", [
      "-sS", "--max-time", "10", "-w", "\\n%{http_code}",
      "-H", "content-type: application/json", "-H", "authorization: Bearer sk-hosts-secret",
      "-d", JSON.stringify(call.body), call.url,
    ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    out = String(err.stderr) + "\\n0";
  }
  const cut = out.lastIndexOf("\\n");
  let body;
  try { body = JSON.parse(out.slice(0, cut)); } catch { body = out.slice(0, cut); }
  process.stdout.write(JSON.stringify({ status: Number(out.slice(cut + 1)), body }) + "\\n");
}
`;

before(async () => {
  const provider = await startTlsProvider(HOSTS, answer);
  server = provider.server;
  port = provider.port;
  h = meteredHome("vallignus-hosts-", { caPem: provider.caPem, port, hosts: HOSTS }, AGENT);
});

after(async () => {
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
  h.cleanup();
});

const url = (host: string, path: string) => `https://${host}:${String(port)}${path}`;
const messages = [{ role: "user", content: "hi" }];

test("formerly tunnelled provider hosts are metered, and an encoded deployment path is refused", async () => {
  const token = h.tokenFor("hosts", { spendUsd: "5", models: "gpt-4o-mini,gemini-2.5-flash" });
  const calls = [
    // Azure AI model inference: the model is in the body.
    {
      url: url(INFERENCE, "/chat/completions?api-version=2024-05-01-preview"),
      body: { model: "gpt-4o-mini", max_tokens: 100, messages },
    },
    // The review's call: a model the policy does not allow, on three formerly tunnelled hosts.
    {
      url: url(INFERENCE, "/v1/chat/completions"),
      body: { model: "o3-pro", max_tokens: 100_000, messages },
    },
    {
      url: url(GOV, "/openai/deployments/o3-pro/chat/completions?api-version=2024-10-21"),
      body: { max_tokens: 100_000, messages },
    },
    {
      url: url(MTLS, "/v1beta/models/gemini-2.5-flash:generateContent"),
      body: { contents: [{ role: "user", parts: [{ text: "hi" }] }] },
    },
    // F5: `gpt-4o-mini` to a reading that resolves before it decodes, `o3-pro` after.
    {
      url: url(
        AZURE,
        "/openai/deployments/gpt-4o-mini%2F..%2Fo3-pro/chat/completions?api-version=2024-10-21",
      ),
      body: { max_tokens: 100_000, messages },
    },
  ];
  const r = await h.runAgent(token, [JSON.stringify(calls)]);
  assert.equal(r.status, 0, r.stderr);
  const results = r.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { status: number; body: unknown });
  assert.deepEqual(
    results.map((c) => c.status),
    [200, 403, 403, 200, 403],
    r.stdout,
  );
  // Only the two allowed, priced calls reached the provider.
  assert.deepEqual(received, [
    `${INFERENCE}:${port}/chat/completions?api-version=2024-05-01-preview`,
    `${MTLS}:${port}/v1beta/models/gemini-2.5-flash:generateContent`,
  ]);
  const audit = h.auditText();
  assert.ok(!audit.includes("sk-hosts"));
  const lines = audit
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line["policy_id"] === "hosts" && line["provider"] !== undefined);
  assert.deepEqual(
    lines.map((line) => [
      line["host"],
      line["provider"],
      line["model"],
      line["deny_reason"] ?? line["cost_usd"],
    ]),
    [
      // 1,000 × $0.15/M + 100 × $0.60/M (Azure's table falls back to OpenAI's prices)
      [INFERENCE, "azure", "gpt-4o-mini", "0.00021"],
      [INFERENCE, "azure", "o3-pro", "model_not_allowed"],
      [GOV, "azure", "o3-pro", "model_not_allowed"],
      // 1,000 × $0.30/M + 100 × $2.50/M
      [MTLS, "gemini", "gemini-2.5-flash", "0.00055"],
      [AZURE, "azure", undefined, "malformed_request"],
    ],
  );
});
