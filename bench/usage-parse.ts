// Cost of reading usage from an LLM response while passing it through, in-process: the metered
// path's createUsageReader (src/metering/usage.ts) over an OpenAI chat-completion SSE stream and
// over a JSON body, fed in 16 KiB pieces (a TLS record's worth), as the proxy feeds it.
//
//   npm run bench:usage            (or: node --import tsx bench/usage-parse.ts [--json])
//
// The stream is ~4 MiB of realistic chunks (one content delta each, ~200 bytes), then the usage
// chunk Vallignus injects (hidden from the client) and `[DONE]`. Median of 3 timed passes after a
// warm-up; each pass checks that the usage was read and the forwarded bytes are as expected.
import type { LlmRequest } from "../src/metering/llm-request.js";
import { createUsageReader } from "../src/metering/usage.js";

const PIECE = 16 * 1024;
const TARGET_BYTES = 4 * 1024 * 1024;
const RUNS = 3;
const MIN_PASS_MS = 400;

function request(stream: boolean): LlmRequest {
  return {
    provider: "openai",
    api: "chat_completions",
    model: "gpt-4o-mini",
    maxOutputTokens: undefined,
    n: 1,
    stream,
    inputBytes: 100,
    hasImages: false,
    imageCount: 0,
    externalInput: false,
  };
}

const base = {
  id: "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "gpt-4o-mini-2024-07-18",
  system_fingerprint: "fp_0123456789",
};

function sseStream(): { body: Buffer; visibleBytes: number } {
  const events: string[] = [];
  let bytes = 0;
  for (let i = 0; bytes < TARGET_BYTES; i++) {
    const event = `data: ${JSON.stringify({
      ...base,
      choices: [
        {
          index: 0,
          delta: { content: ` token${i % 1000} and a few more words` },
          logprobs: null,
          finish_reason: null,
        },
      ],
    })}\n\n`;
    events.push(event);
    bytes += Buffer.byteLength(event);
  }
  const finish = `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`;
  const usage = `data: ${JSON.stringify({
    ...base,
    choices: [],
    usage: {
      prompt_tokens: 25,
      completion_tokens: events.length,
      total_tokens: events.length + 25,
    },
  })}\n\n`;
  const done = "data: [DONE]\n\n";
  const visible = events.join("") + finish + done;
  return {
    body: Buffer.from(events.join("") + finish + usage + done),
    visibleBytes: Buffer.byteLength(visible),
  };
}

function jsonBody(): Buffer {
  const content = "word ".repeat(TARGET_BYTES / 5);
  return Buffer.from(
    JSON.stringify({
      ...base,
      object: "chat.completion",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      usage: { prompt_tokens: 25, completion_tokens: 838_861, total_tokens: 838_886 },
    }),
  );
}

function pieces(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += PIECE) out.push(body.subarray(i, i + PIECE));
  return out;
}

/** One response through a fresh reader; returns the bytes forwarded. */
function once(stream: boolean, chunks: readonly Buffer[]): number {
  const reader = createUsageReader(
    request(stream),
    stream,
    stream ? "text/event-stream; charset=utf-8" : "application/json",
  );
  let forwarded = 0;
  for (const chunk of chunks) forwarded += reader.push(chunk).length;
  forwarded += reader.end().length;
  if (reader.usage() === undefined || !reader.complete()) throw new Error("usage was not read");
  return forwarded;
}

/** Milliseconds per MB (10^6 bytes) of response: the median of RUNS passes. */
function measure(stream: boolean, body: Buffer, expectForwarded: number): number {
  const chunks = pieces(body);
  const pass = (): number => {
    let bytes = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < MIN_PASS_MS) {
      const forwarded = once(stream, chunks);
      if (forwarded !== expectForwarded) {
        throw new Error(`forwarded ${forwarded} bytes, expected ${expectForwarded}`);
      }
      bytes += body.length;
      elapsed = performance.now() - start;
    }
    return elapsed / (bytes / 1e6);
  };
  pass();
  const runs = Array.from({ length: RUNS }, pass).sort((a, b) => a - b);
  return runs[Math.floor(RUNS / 2)] ?? Number.NaN;
}

const sse = sseStream();
const json = jsonBody();
const sseMsPerMb = measure(true, sse.body, sse.visibleBytes);
const jsonMsPerMb = measure(false, json, json.length);

if (process.argv.includes("--json")) {
  console.log(JSON.stringify({ sse_ms_per_mb: sseMsPerMb, json_ms_per_mb: jsonMsPerMb }));
} else {
  console.log(`Node ${process.version}; ${PIECE / 1024} KiB pieces; median of ${RUNS} passes.\n`);
  console.log("| response | ms per MB | MB/s |");
  console.log("| --- | ---: | ---: |");
  for (const [name, ms] of [
    ["SSE chat-completion stream (usage chunk hidden)", sseMsPerMb],
    ["JSON chat completion", jsonMsPerMb],
  ] as const) {
    console.log(`| ${name} | ${ms.toFixed(2)} | ${(1000 / ms).toFixed(0)} |`);
  }
}
