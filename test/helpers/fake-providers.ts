import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";

import { makeTestCertificates } from "./origin.js";

/** Usage the fake providers report, and how they misbehave on request. */
export interface FakeBehaviour {
  inputTokens: number;
  outputTokens: number;
  /** Close SSE streams before their last event. */
  cutStreams: boolean;
  /**
   * Send an SSE stream's first event, then hold the response open (no more events) until the
   * client goes away or `releaseHeld()` is called.
   */
  holdStreams: boolean;
  /** Wait this long after a request's body has arrived before answering it. */
  responseDelayMs: number;
  /** When set, every request waits for it (after its body has arrived) before it is answered. */
  gate: Promise<void> | undefined;
}

export interface FakeProviders {
  readonly port: number;
  readonly caPem: string;
  /** Request bodies received, as parsed JSON, with their path and headers. */
  readonly received: {
    path: string;
    body: Record<string, unknown>;
    headers: IncomingHttpHeaders;
  }[];
  readonly behaviour: FakeBehaviour;
  /** TCP connections accepted, whether or not a request followed. */
  readonly connections: () => number;
  /** Streams currently held open by `behaviour.holdStreams`. */
  readonly held: () => number;
  /** Resolves once at least `count` streams are being held open. */
  waitForHeld(count: number): Promise<void>;
  /** Ends every held stream abruptly. */
  releaseHeld(): void;
  close(): Promise<void>;
}

/** Held SSE responses, and who waits for them. */
interface Holds {
  readonly open: Set<ServerResponse>;
  readonly waiters: { count: number; done: () => void }[];
}

function hold(holds: Holds, res: ServerResponse): void {
  holds.open.add(res);
  res.on("close", () => holds.open.delete(res));
  for (const waiter of [...holds.waiters]) {
    if (holds.open.size >= waiter.count) {
      holds.waiters.splice(holds.waiters.indexOf(waiter), 1);
      waiter.done();
    }
  }
}

function sse(res: ServerResponse, events: string[], b: FakeBehaviour, holds: Holds): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  if (b.holdStreams) {
    res.write(events[0] ?? "");
    hold(holds, res);
    return;
  }
  const cut = b.cutStreams;
  const shown = cut ? events.slice(0, Math.max(1, events.length - 2)) : events;
  for (const event of shown) res.write(event);
  if (cut) res.destroy();
  else res.end();
}

function openaiChat(
  body: Record<string, unknown>,
  b: FakeBehaviour,
  res: ServerResponse,
  holds: Holds,
): void {
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
  sse(res, events, b, holds);
}

function anthropicMessages(
  body: Record<string, unknown>,
  b: FakeBehaviour,
  res: ServerResponse,
  holds: Holds,
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
    b,
    holds,
  );
}

/** Gemini's `models/{model}:generateContent` (JSON) and `:streamGenerateContent?alt=sse`. */
function geminiGenerate(
  stream: boolean,
  b: FakeBehaviour,
  res: ServerResponse,
  holds: Holds,
): void {
  const usageMetadata = {
    promptTokenCount: b.inputTokens,
    candidatesTokenCount: b.outputTokens,
    totalTokenCount: b.inputTokens + b.outputTokens,
  };
  const candidate = (text: string, finishReason?: string) => ({
    content: { role: "model", parts: [{ text }] },
    index: 0,
    ...(finishReason === undefined ? {} : { finishReason }),
  });
  if (!stream) {
    const json = JSON.stringify({
      candidates: [candidate("hello from fake gemini", "STOP")],
      usageMetadata,
      modelVersion: "fake-gemini",
    });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(json),
    });
    res.end(json);
    return;
  }
  // Running totals: the first chunk's usage is partial, the last one's is final.
  const chunk = (data: Record<string, unknown>) => `data: ${JSON.stringify(data)}\r\n\r\n`;
  sse(
    res,
    [
      chunk({
        candidates: [candidate("hello")],
        usageMetadata: { promptTokenCount: b.inputTokens, totalTokenCount: b.inputTokens },
      }),
      chunk({ candidates: [candidate(" world", "STOP")], usageMetadata }),
    ],
    b,
    holds,
  );
}

const GEMINI_PATH = /^\/v1beta\/models\/[^/:]+:(generateContent|streamGenerateContent)(\?|$)/;

/**
 * One HTTPS server on 127.0.0.1 that speaks OpenAI's, Anthropic's and Gemini's wire formats
 * (its certificate names api.openai.com, api.anthropic.com and generativelanguage.googleapis.com).
 */
export async function startFakeProviders(): Promise<FakeProviders> {
  const certs = await makeTestCertificates([
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
  ]);
  const received: FakeProviders["received"] = [];
  const behaviour: FakeBehaviour = {
    inputTokens: 12,
    outputTokens: 30,
    cutStreams: false,
    holdStreams: false,
    responseDelayMs: 0,
    gate: undefined,
  };
  const holds: Holds = { open: new Set(), waiters: [] };
  let connections = 0;
  const answer = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => {
    const url = req.url ?? "";
    const gemini = GEMINI_PATH.exec(url);
    if (url.startsWith("/v1/chat/completions")) openaiChat(body, behaviour, res, holds);
    else if (url.startsWith("/v1/messages")) anthropicMessages(body, behaviour, res, holds);
    else if (gemini !== null)
      geminiGenerate(gemini[1] === "streamGenerateContent", behaviour, res, holds);
    else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"message":"not found"}}');
    }
  };
  const server: Server = createServer(
    { cert: certs.certPem, key: certs.keyPem },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
        received.push({ path: req.url ?? "", body, headers: req.headers });
        const later = () => {
          if (behaviour.responseDelayMs > 0)
            setTimeout(() => answer(req, res, body), behaviour.responseDelayMs);
          else answer(req, res, body);
        };
        if (behaviour.gate === undefined) later();
        else void behaviour.gate.then(later);
      });
    },
  );
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const releaseHeld = () => {
    for (const res of holds.open) res.destroy();
    holds.open.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    caPem: certs.caPem,
    received,
    behaviour,
    connections: () => connections,
    held: () => holds.open.size,
    waitForHeld: (count) =>
      holds.open.size >= count
        ? Promise.resolve()
        : new Promise<void>((done) => holds.waiters.push({ count, done })),
    releaseHeld,
    close: async () => {
      releaseHeld();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
