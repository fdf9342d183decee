import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";

import { makeTestCertificates } from "./origin.js";

/** Usage the fake providers report, and how they misbehave on request. */
export interface FakeBehaviour {
  inputTokens: number;
  outputTokens: number;
  /** Close SSE streams before their last event. */
  cutStreams: boolean;
}

export interface FakeProviders {
  readonly port: number;
  readonly caPem: string;
  /** Request bodies received, as parsed JSON, with their path. */
  readonly received: { path: string; body: Record<string, unknown> }[];
  readonly behaviour: FakeBehaviour;
  close(): Promise<void>;
}

function sse(res: ServerResponse, events: string[], cut: boolean): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const shown = cut ? events.slice(0, Math.max(1, events.length - 2)) : events;
  for (const event of shown) res.write(event);
  if (cut) res.destroy();
  else res.end();
}

function openaiChat(body: Record<string, unknown>, b: FakeBehaviour, res: ServerResponse): void {
  const model = String(body["model"]);
  const base = { id: "chatcmpl-fake", object: "chat.completion", created: 1_700_000_000, model };
  const usage = {
    prompt_tokens: b.inputTokens,
    completion_tokens: b.outputTokens,
    total_tokens: b.inputTokens + b.outputTokens,
  };
  if (body["stream"] !== true) {
    const json = JSON.stringify({
      ...base,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: "hello from fake openai" },
          finish_reason: "stop",
        },
      ],
      usage,
    });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(json),
    });
    res.end(json);
    return;
  }
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finish }], ...(wantsUsage ? { usage: null } : {}) })}\n\n`;
  const options = body["stream_options"] as { include_usage?: boolean } | undefined;
  const wantsUsage = options?.include_usage === true;
  const events = [
    chunk({ role: "assistant", content: "hello" }, null),
    chunk({ content: " world" }, null),
    chunk({}, "stop"),
  ];
  if (wantsUsage)
    events.push(
      `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [], usage })}\n\n`,
    );
  events.push("data: [DONE]\n\n");
  sse(res, events, b.cutStreams);
}

function anthropicMessages(
  body: Record<string, unknown>,
  b: FakeBehaviour,
  res: ServerResponse,
): void {
  const model = String(body["model"]);
  if (body["stream"] !== true) {
    const json = JSON.stringify({
      id: "msg_fake",
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "text", text: "hello from fake anthropic" }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: {
        input_tokens: b.inputTokens,
        output_tokens: b.outputTokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
    });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(json),
    });
    res.end(json);
    return;
  }
  const ev = (name: string, data: Record<string, unknown>) =>
    `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
  sse(
    res,
    [
      ev("message_start", {
        message: {
          id: "msg_fake",
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: b.inputTokens, output_tokens: 1 },
        },
      }),
      ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
      ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "hello" } }),
      ev("content_block_stop", { index: 0 }),
      ev("message_delta", {
        delta: { stop_reason: "end_turn", stop_sequence: null },
        usage: { output_tokens: b.outputTokens },
      }),
      ev("message_stop", {}),
    ],
    b.cutStreams,
  );
}

/** One HTTPS server on 127.0.0.1 that speaks OpenAI's and Anthropic's wire formats. */
export async function startFakeProviders(): Promise<FakeProviders> {
  const certs = await makeTestCertificates(["api.openai.com", "api.anthropic.com"]);
  const received: { path: string; body: Record<string, unknown> }[] = [];
  const behaviour: FakeBehaviour = { inputTokens: 12, outputTokens: 30, cutStreams: false };
  const server: Server = createServer(
    { cert: certs.certPem, key: certs.keyPem },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
        received.push({ path: req.url ?? "", body });
        if (req.url?.startsWith("/v1/chat/completions") === true) openaiChat(body, behaviour, res);
        else if (req.url?.startsWith("/v1/messages") === true)
          anthropicMessages(body, behaviour, res);
        else {
          res.writeHead(404, { "content-type": "application/json" });
          res.end('{"error":{"message":"not found"}}');
        }
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    caPem: certs.caPem,
    received,
    behaviour,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
