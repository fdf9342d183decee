import assert from "node:assert/strict";
import { test } from "node:test";

import type { LlmApi, LlmRequest } from "./llm-request.js";
import type { ProviderId } from "./providers.js";
import { createUsageReader, type Usage, type UsageReader } from "./usage.js";
import { usdToNanoCeil } from "./usage-formats.js";

const SSE = "text/event-stream; charset=utf-8";
const JSON_TYPE = "application/json";

function request(provider: ProviderId, api: LlmApi, stream: boolean): LlmRequest {
  return {
    provider,
    api,
    model: "m",
    maxOutputTokens: undefined,
    n: 1,
    stream,
    inputBytes: 0,
    hasImages: false,
    imageCount: 0,
    externalInput: false,
  };
}

function usage(fields: Partial<Usage>): Usage {
  return {
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    ...fields,
  };
}

/** Feeds the pieces through a reader; returns every byte it forwarded. */
function pipe(reader: UsageReader, pieces: readonly Buffer[]): Buffer {
  const out = pieces.map((piece) => reader.push(piece));
  out.push(reader.end());
  return Buffer.concat(out);
}

function sse(...events: string[]): string {
  return events.map((event) => `${event}\n\n`).join("");
}

/** A small deterministic PRNG (mulberry32), so a failing random split can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytewise(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.from([byte]));
}

function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const edges = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  return edges.slice(1).map((end, index) => bytes.subarray(edges[index], end));
}

function randomSplit(bytes: Buffer, next: () => number): Buffer[] {
  const cuts = Array.from({ length: 1 + Math.floor(next() * 12) }, () =>
    Math.floor(next() * bytes.length),
  );
  return splitAt(bytes, cuts);
}

// ---------------------------------------------------------------- wire samples

const openAiChunk = (choices: string, usageField = "null") =>
  `data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,` +
  `"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306",` +
  `"choices":${choices},"usage":${usageField}}`;

const openAiUsageEvent = openAiChunk(
  "[]",
  '{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,' +
    '"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},' +
    '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,' +
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}',
);

const openAiContent = [
  openAiChunk(
    '[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]',
  ),
  openAiChunk(
    '[{"index":0,"delta":{"content":"Héllo 👋 — 世界"},"logprobs":null,"finish_reason":null}]',
  ),
  openAiChunk('[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]'),
];

/** What the client sees; the upstream stream has the usage event before [DONE]. */
const openAiClientView = sse(...openAiContent, "data: [DONE]");
const openAiUpstream = sse(...openAiContent, openAiUsageEvent, "data: [DONE]");
const openAiUsage = usage({ inputTokens: 93, cacheReadTokens: 1024, outputTokens: 46 });

const responsesStream = sse(
  'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-5-2025-08-07","output":[],"usage":null}}',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c","output_index":1,"content_index":0,"delta":"Hi there"}',
  'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_67c","object":"response","status":"completed","model":"gpt-5-2025-08-07","usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":380}}}',
);

const anthropicStream = sse(
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":1,"service_tier":"standard"}}}',
  'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
  'event: ping\ndata: {"type": "ping"}',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}',
  'event: message_stop\ndata: {"type":"message_stop"}',
);

/** Gemini `alt=sse` frames its events with CRLF. */
const geminiStream = [
  'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash","responseId":"r1"}',
  'data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"totalTokenCount":10},"modelVersion":"gemini-2.5-flash","responseId":"r1"}',
  'data: {"candidates":[{"content":{"parts":[{"text":"!"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":3,"totalTokenCount":40,"thoughtsTokenCount":29,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]},"modelVersion":"gemini-2.5-flash","responseId":"r1"}',
]
  .map((event) => `${event}\r\n\r\n`)
  .join("");

const groqChunk = (rest: string) =>
  `data: {"id":"chatcmpl-5d0","object":"chat.completion.chunk","created":1730241500,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_c5f20b5bb1",${rest}}`;

const groqStream = sse(
  groqChunk(
    '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_01j"}',
  ),
  groqChunk(
    '"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]',
  ),
  groqChunk(
    '"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_01j","usage":{"queue_time":0.017,"prompt_tokens":40,"prompt_time":0.0024,"completion_tokens":12,"completion_time":0.0436,"total_tokens":52,"total_time":0.046}}',
  ),
  "data: [DONE]",
);

const openRouterStream =
  ": OPENROUTER PROCESSING\n\n" +
  sse(
    'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}',
    'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]}',
    'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1,"choices":[],"usage":{"prompt_tokens":194,"completion_tokens":2,"total_tokens":196,"cost":0.0001386,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"cost_details":{"upstream_inference_cost":0.0001386},"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0}}}',
    "data: [DONE]",
  );

const mistralStream = sse(
  'data: {"id":"a1","object":"chat.completion.chunk","created":1702256327,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}',
  'data: {"id":"a1","object":"chat.completion.chunk","created":1702256327,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"total_tokens":21,"completion_tokens":11}}',
  "data: [DONE]",
);

// ---------------------------------------------------------------- JSON bodies

const jsonCases: [string, LlmRequest, string, Usage | undefined][] = [
  [
    "OpenAI chat: cached prompt tokens are not counted twice",
    request("openai", "chat_completions", false),
    '{"id":"chatcmpl-B9M","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}',
    openAiUsage,
  ],
  [
    "OpenAI o-series: reasoning is inside completion_tokens",
    request("openai", "chat_completions", false),
    '{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":75,"completion_tokens":1186,"total_tokens":1261,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":1024}}}',
    usage({ inputTokens: 75, outputTokens: 1186, reasoningTokens: 1024 }),
  ],
  [
    "Responses API body",
    request("openai", "responses", false),
    '{"id":"resp_1","object":"response","status":"completed","model":"gpt-5","output":[],"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":380}}',
    usage({ inputTokens: 200, cacheReadTokens: 128, outputTokens: 52, reasoningTokens: 32 }),
  ],
  [
    "Responses API queued in the background: no usage yet",
    request("openai", "responses", false),
    '{"id":"resp_1","object":"response","status":"queued","background":true,"usage":null}',
    undefined,
  ],
  [
    "legacy completions",
    request("openai", "completions", false),
    '{"id":"cmpl-1","object":"text_completion","choices":[{"text":"x","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}',
    usage({ inputTokens: 5, outputTokens: 7 }),
  ],
  [
    "embeddings: input only",
    request("openai", "embeddings", false),
    '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}',
    usage({ inputTokens: 8 }),
  ],
  [
    "Gemini embedContent reports no usage",
    request("gemini", "embeddings", false),
    '{"embedding":{"values":[0.01,-0.02]}}',
    undefined,
  ],
  [
    "Anthropic message: input excludes cache reads and writes",
    request("anthropic", "anthropic_messages", false),
    '{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":30,"service_tier":"standard"}}',
    usage({ inputTokens: 12, cacheWriteTokens: 2048, cacheReadTokens: 4096, outputTokens: 30 }),
  ],
  [
    "Anthropic message with null cache fields",
    request("anthropic", "anthropic_messages", false),
    '{"type":"message","usage":{"input_tokens":9,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":3}}',
    usage({ inputTokens: 9, outputTokens: 3 }),
  ],
  [
    "Gemini generateContent: thoughts are output, cached is not input",
    request("gemini", "gemini_generate", false),
    '{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"totalTokenCount":45,"cachedContentTokenCount":4,"thoughtsTokenCount":30,"promptTokensDetails":[{"modality":"TEXT","tokenCount":10}]},"modelVersion":"gemini-2.5-flash","responseId":"abc"}',
    usage({ inputTokens: 6, cacheReadTokens: 4, outputTokens: 35, reasoningTokens: 30 }),
  ],
  [
    "Gemini grounding: tool-use prompt tokens are input",
    request("gemini", "gemini_generate", false),
    '{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":50,"toolUsePromptTokenCount":400,"totalTokenCount":470}}',
    usage({ inputTokens: 420, outputTokens: 50 }),
  ],
  [
    "Gemini streamGenerateContent without alt=sse is a JSON array: last wins",
    request("gemini", "gemini_stream", true),
    '[{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}\r\n,\r\n{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"totalTokenCount":10}}\r\n]',
    usage({ inputTokens: 8, outputTokens: 2 }),
  ],
  [
    "Groq body: standard usage",
    request("groq", "chat_completions", false),
    '{"id":"chatcmpl-1","object":"chat.completion","model":"llama-3.3-70b-versatile","choices":[],"usage":{"queue_time":0.05,"prompt_tokens":18,"prompt_time":0.001,"completion_tokens":7,"completion_time":0.02,"total_tokens":25,"total_time":0.021},"x_groq":{"id":"req_1"}}',
    usage({ inputTokens: 18, outputTokens: 7 }),
  ],
  [
    "DeepSeek cache hits, reasoning inside completion",
    request("deepseek", "chat_completions", false),
    '{"id":"1","object":"chat.completion","model":"deepseek-reasoner","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":250},"prompt_cache_hit_tokens":1024,"prompt_cache_miss_tokens":176}}',
    usage({ inputTokens: 176, cacheReadTokens: 1024, outputTokens: 300, reasoningTokens: 250 }),
  ],
  [
    "xAI counts reasoning beside completion_tokens, and its cost in ticks",
    request("xai", "chat_completions", false),
    '{"id":"x","object":"chat.completion","model":"grok-3-mini","choices":[],"usage":{"prompt_tokens":32,"completion_tokens":9,"total_tokens":135,"prompt_tokens_details":{"text_tokens":32,"audio_tokens":0,"image_tokens":0,"cached_tokens":6},"completion_tokens_details":{"reasoning_tokens":94,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0},"num_sources_used":0,"cost_in_usd_ticks":232856001}}',
    usage({
      inputTokens: 26,
      cacheReadTokens: 6,
      outputTokens: 103,
      reasoningTokens: 94,
      providerCostNanoUsd: 23285601,
    }),
  ],
  [
    "any host whose total shows reasoning beside completion",
    request("together", "chat_completions", false),
    '{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":35,"completion_tokens_details":{"reasoning_tokens":20}}}',
    usage({ inputTokens: 10, outputTokens: 25, reasoningTokens: 20 }),
  ],
  [
    "OpenRouter cost",
    request("openrouter", "chat_completions", false),
    '{"id":"gen-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":194,"completion_tokens":2,"total_tokens":196,"cost":0.0001386,"is_byok":false,"cost_details":{"upstream_inference_cost":0.0001386}}}',
    usage({ inputTokens: 194, outputTokens: 2, providerCostNanoUsd: 138600 }),
  ],
  [
    "OpenRouter BYOK: its fee plus the upstream bill",
    request("openrouter", "chat_completions", false),
    '{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":194,"completion_tokens":2,"total_tokens":196,"cost":0.00000693,"is_byok":true,"cost_details":{"upstream_inference_cost":0.0001386}}}',
    usage({ inputTokens: 194, outputTokens: 2, providerCostNanoUsd: 6930 + 138600 }),
  ],
  [
    "Mistral body",
    request("mistral", "chat_completions", false),
    '{"id":"cmpl-e5","object":"chat.completion","created":1702256327,"model":"mistral-large-latest","choices":[],"usage":{"prompt_tokens":16,"completion_tokens":34,"total_tokens":50}}',
    usage({ inputTokens: 16, outputTokens: 34 }),
  ],
  // Shapes we do not know, or that contradict themselves, report nothing.
  [
    "an error body",
    request("openai", "chat_completions", false),
    '{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}',
    undefined,
  ],
  [
    "counts given as text",
    request("openai", "chat_completions", false),
    '{"usage":{"prompt_tokens":"10","completion_tokens":5}}',
    undefined,
  ],
  [
    "OpenAI chat, gpt-audio: audio tokens are parts of the prompt and completion totals",
    request("openai", "chat_completions", false),
    '{"object":"chat.completion","model":"gpt-audio-2025-08-28","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":4015,"total_tokens":4135,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":100,"text_tokens":20,"image_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":3990,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0,"text_tokens":25}}}',
    usage({
      inputTokens: 120,
      outputTokens: 4015,
      promptByModality: { audio: 100 },
      outputByModality: { audio: 3990 },
    }),
  ],
  [
    "Responses API: web and file search calls are read from the output items",
    request("openai", "responses", false),
    '{"id":"resp_1","object":"response","status":"completed","output":[{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"a"}},{"type":"web_search_call","id":"ws_2","status":"completed"},{"type":"file_search_call","id":"fs_1","status":"completed","queries":["q"]},{"type":"message","role":"assistant","content":[]}],"usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":0},"output_tokens":80,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":980}}',
    usage({
      inputTokens: 900,
      outputTokens: 80,
      toolCalls: { web_search: 2, file_search: 1 },
    }),
  ],
  [
    "Anthropic: server_tool_use web searches are read",
    request("anthropic", "anthropic_messages", false),
    '{"id":"msg_1","type":"message","role":"assistant","content":[],"stop_reason":"end_turn","usage":{"input_tokens":105,"output_tokens":18,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"server_tool_use":{"web_search_requests":50,"web_fetch_requests":2}}}',
    usage({ inputTokens: 105, outputTokens: 18, toolCalls: { web_search: 50 } }),
  ],
  [
    "Gemini: modality details, cached split given",
    request("gemini", "gemini_generate", false),
    '{"candidates":[{"content":{"parts":[]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":1290,"totalTokenCount":2290,"cachedContentTokenCount":400,"promptTokensDetails":[{"modality":"TEXT","tokenCount":200},{"modality":"AUDIO","tokenCount":800}],"cacheTokensDetails":[{"modality":"AUDIO","tokenCount":400}],"candidatesTokensDetails":[{"modality":"IMAGE","tokenCount":1290}]}}',
    usage({
      inputTokens: 600,
      cacheReadTokens: 400,
      outputTokens: 1290,
      promptByModality: { audio: 800 },
      cachedByModality: { audio: 400, image: 0, video: 0 },
      outputByModality: { image: 1290 },
    }),
  ],
  [
    "malformed audio details are no usage",
    request("openai", "chat_completions", false),
    '{"usage":{"prompt_tokens":10,"completion_tokens":5,"completion_tokens_details":{"audio_tokens":"many"}}}',
    undefined,
  ],
  [
    "cached above the prompt",
    request("openai", "chat_completions", false),
    '{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":11}}}',
    undefined,
  ],
  [
    "negative output",
    request("anthropic", "anthropic_messages", false),
    '{"type":"message","usage":{"input_tokens":10,"output_tokens":-5}}',
    undefined,
  ],
  [
    "chat usage without completion tokens",
    request("openai", "chat_completions", false),
    '{"usage":{"prompt_tokens":10}}',
    undefined,
  ],
  [
    "a JSON array where an object belongs",
    request("openai", "chat_completions", false),
    "[1,2]",
    undefined,
  ],
  ["HTML", request("openai", "chat_completions", false), "<html>502 Bad Gateway</html>", undefined],
];

for (const [name, req, text, expected] of jsonCases) {
  test(`JSON usage: ${name}`, () => {
    const bytes = Buffer.from(text, "utf8");
    const reader = createUsageReader(req, false, JSON_TYPE);
    // Forwarded as it comes: each push hands back its own chunk at once.
    const pieces = splitAt(bytes, [7, 100]);
    for (const piece of pieces) assert.equal(reader.push(piece), piece);
    assert.equal(reader.end().length, 0);
    assert.deepEqual(reader.usage(), expected);
  });
}

test("JSON: complete once a whole body parsed, not before", () => {
  const reader = createUsageReader(request("openai", "chat_completions", false), false, JSON_TYPE);
  reader.push(Buffer.from('{"usage":{"prompt_tokens":1,"completion_tokens":2}}'));
  assert.equal(reader.complete(), false);
  reader.end();
  assert.equal(reader.complete(), true);
});

test("JSON: a truncated body is not complete and has no usage", () => {
  const reader = createUsageReader(
    request("anthropic", "anthropic_messages", false),
    false,
    JSON_TYPE,
  );
  pipe(reader, [Buffer.from('{"type":"message","usage":{"input_tokens":12,"output_tok')]);
  assert.equal(reader.complete(), false);
  assert.equal(reader.usage(), undefined);
});

test("JSON: a body over the limit is forwarded whole but not read", () => {
  const text =
    '{"usage":{"prompt_tokens":1,"completion_tokens":2},"pad":"' + "x".repeat(200) + '"}';
  const bytes = Buffer.from(text);
  const reader = createUsageReader(
    request("openai", "chat_completions", false),
    false,
    JSON_TYPE,
    100,
  );
  assert.deepEqual(pipe(reader, bytewise(bytes)), bytes);
  assert.equal(reader.usage(), undefined);
  assert.equal(reader.complete(), false);
});

test("JSON: a multi-byte character split across chunks still parses", () => {
  const bytes = Buffer.from('{"note":"é👋","usage":{"prompt_tokens":3,"completion_tokens":4}}');
  const reader = createUsageReader(request("openai", "chat_completions", false), false, JSON_TYPE);
  pipe(reader, bytewise(bytes));
  assert.deepEqual(reader.usage(), usage({ inputTokens: 3, outputTokens: 4 }));
});

// ---------------------------------------------------------------- streams

interface StreamCase {
  readonly name: string;
  readonly request: LlmRequest;
  readonly injected: boolean;
  readonly upstream: string;
  /** What the client receives; the upstream bytes unless the case says otherwise. */
  readonly client?: string;
  readonly usage: Usage | undefined;
  readonly complete: boolean;
}

const streamCases: StreamCase[] = [
  {
    name: "OpenAI chat with injected usage: the usage chunk is removed",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: openAiUpstream,
    client: openAiClientView,
    usage: openAiUsage,
    complete: true,
  },
  {
    name: "OpenAI chat whose client asked for usage: nothing removed",
    request: request("openai", "chat_completions", true),
    injected: false,
    upstream: openAiUpstream,
    client: openAiUpstream,
    usage: openAiUsage,
    complete: true,
  },
  {
    name: "OpenAI chat with CRLF framing, injected",
    request: request("azure", "chat_completions", true),
    injected: true,
    upstream: openAiUpstream.replaceAll("\n", "\r\n"),
    client: openAiClientView.replaceAll("\n", "\r\n"),
    usage: openAiUsage,
    complete: true,
  },
  {
    name: "OpenAI chat with bare-CR framing, injected",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: openAiUpstream.replaceAll("\n", "\r"),
    client: openAiClientView.replaceAll("\n", "\r"),
    usage: openAiUsage,
    complete: true,
  },
  {
    name: "Azure's content-filter chunk has no choices but no usage either: it is kept",
    request: request("azure", "chat_completions", true),
    injected: true,
    upstream: sse(
      'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}',
      ...openAiContent,
      openAiUsageEvent,
      "data: [DONE]",
    ),
    client: sse(
      'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}',
      ...openAiContent,
      "data: [DONE]",
    ),
    usage: openAiUsage,
    complete: true,
  },
  {
    name: "Responses API stream",
    request: request("openai", "responses", true),
    injected: false,
    upstream: responsesStream,
    client: responsesStream,
    usage: usage({ inputTokens: 200, cacheReadTokens: 128, outputTokens: 52, reasoningTokens: 32 }),
    complete: true,
  },
  {
    name: "Responses API: response.incomplete ends it too",
    request: request("openai", "responses", true),
    injected: false,
    upstream: sse(
      'event: response.incomplete\ndata: {"type":"response.incomplete","sequence_number":3,"response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":10,"output_tokens":64,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":64}}}}',
    ),
    usage: usage({ inputTokens: 10, outputTokens: 64, reasoningTokens: 64 }),
    complete: true,
  },
  {
    name: "Responses API: response.failed without usage",
    request: request("openai", "responses", true),
    injected: false,
    upstream: sse(
      'event: response.failed\ndata: {"type":"response.failed","sequence_number":2,"response":{"status":"failed","error":{"code":"server_error","message":"x"},"usage":null}}',
    ),
    usage: undefined,
    complete: true,
  },
  {
    name: "Anthropic stream: running totals are overwritten, not added",
    request: request("anthropic", "anthropic_messages", true),
    injected: false,
    upstream: anthropicStream,
    client: anthropicStream,
    usage: usage({
      inputTokens: 25,
      cacheWriteTokens: 300,
      cacheReadTokens: 1000,
      outputTokens: 15,
    }),
    complete: true,
  },
  {
    name: "Anthropic: later message_delta totals replace earlier ones, input included",
    request: request("anthropic", "anthropic_messages", true),
    injected: false,
    upstream: sse(
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}',
      'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"output_tokens":10}}',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"input_tokens":2500,"cache_read_input_tokens":null,"output_tokens":40,"server_tool_use":{"web_search_requests":1}}}',
      'event: message_stop\ndata: {"type":"message_stop"}',
    ),
    usage: usage({ inputTokens: 2500, outputTokens: 40, toolCalls: { web_search: 1 } }),
    complete: true,
  },
  {
    name: "Anthropic: an error event mid-stream is no end",
    request: request("anthropic", "anthropic_messages", true),
    injected: false,
    upstream: sse(
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}',
      'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    ),
    usage: usage({ inputTokens: 5, outputTokens: 1 }),
    complete: false,
  },
  {
    name: "Gemini alt=sse: the last running total wins",
    request: request("gemini", "gemini_stream", true),
    injected: false,
    upstream: geminiStream,
    client: geminiStream,
    usage: usage({ inputTokens: 8, outputTokens: 32, reasoningTokens: 29 }),
    complete: true,
  },
  {
    name: "Gemini: a blocked prompt ends the stream",
    request: request("gemini", "gemini_stream", true),
    injected: false,
    upstream:
      'data: {"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}\r\n\r\n',
    usage: usage({ inputTokens: 7 }),
    complete: true,
  },
  {
    name: "Groq: usage in x_groq",
    request: request("groq", "chat_completions", true),
    injected: false,
    upstream: groqStream,
    client: groqStream,
    usage: usage({ inputTokens: 40, outputTokens: 12 }),
    complete: true,
  },
  {
    name: "Groq with injection: x_groq stays, the extra usage chunk goes",
    request: request("groq", "chat_completions", true),
    injected: true,
    upstream: groqStream.replace(
      "data: [DONE]",
      `${groqChunk('"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":12,"total_tokens":52}')}\n\ndata: [DONE]`,
    ),
    client: groqStream,
    usage: usage({ inputTokens: 40, outputTokens: 12 }),
    complete: true,
  },
  {
    name: "OpenRouter: comments pass, cost is read, the injected chunk goes",
    request: request("openrouter", "chat_completions", true),
    injected: true,
    upstream: openRouterStream,
    client: openRouterStream.replace(/data: \{[^\n]*"choices":\[\],[^\n]*\n\n/, ""),
    usage: usage({ inputTokens: 194, outputTokens: 2, providerCostNanoUsd: 138600 }),
    complete: true,
  },
  {
    name: "Mistral: usage rides on the last content chunk, which is kept",
    request: request("mistral", "chat_completions", true),
    injected: false,
    upstream: mistralStream,
    client: mistralStream,
    usage: usage({ inputTokens: 10, outputTokens: 11 }),
    complete: true,
  },
  {
    name: "a stream cut short: no [DONE], not complete",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: sse(...openAiContent.slice(0, 2)),
    client: sse(...openAiContent.slice(0, 2)),
    usage: undefined,
    complete: false,
  },
  {
    name: "a stream cut inside an event: its bytes still reach the client",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: openAiUpstream.slice(0, openAiUpstream.indexOf('"choices":[]') + 5),
    client: openAiUpstream.slice(0, openAiUpstream.indexOf('"choices":[]') + 5),
    usage: undefined,
    complete: false,
  },
  {
    name: "a final [DONE] without its blank line is not read (SSE spec)",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: sse(...openAiContent, openAiUsageEvent) + "data: [DONE]\n",
    client: sse(...openAiContent) + "data: [DONE]\n",
    usage: openAiUsage,
    complete: false,
  },
  {
    name: "unknown events pass through and report nothing",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: sse("data: not json", 'event: weird\ndata: {"choices":[]}', ": comment", "retry: 10"),
    client: sse("data: not json", 'event: weird\ndata: {"choices":[]}', ": comment", "retry: 10"),
    usage: undefined,
    complete: false,
  },
  {
    name: "a leading byte-order mark",
    request: request("openai", "chat_completions", true),
    injected: true,
    upstream: `\uFEFF${openAiUpstream}`,
    client: `\uFEFF${openAiClientView}`,
    usage: openAiUsage,
    complete: true,
  },
];

function checkStream(streamCase: StreamCase, pieces: readonly Buffer[], label: string): void {
  const reader = createUsageReader(streamCase.request, streamCase.injected, SSE);
  const forwarded = pipe(reader, pieces);
  const client = streamCase.client ?? streamCase.upstream;
  assert.equal(forwarded.toString("utf8"), client, `${label}: forwarded bytes`);
  assert.deepEqual(reader.usage(), streamCase.usage, `${label}: usage`);
  assert.equal(reader.complete(), streamCase.complete, `${label}: complete`);
}

for (const streamCase of streamCases) {
  test(`SSE usage: ${streamCase.name}`, () => {
    const bytes = Buffer.from(streamCase.upstream, "utf8");
    checkStream(streamCase, [bytes], "one chunk");
    checkStream(streamCase, bytewise(bytes), "one byte at a time");
    const next = random(0x5eed);
    for (let round = 0; round < 50; round += 1) {
      checkStream(streamCase, randomSplit(bytes, next), `random split ${round}`);
    }
  });
}

test("SSE: injected usage is removed at every cut position of the stream", () => {
  const cases = streamCases.filter((c) => c.injected && c.complete);
  assert.ok(cases.length >= 4);
  for (const streamCase of cases) {
    const bytes = Buffer.from(streamCase.upstream, "utf8");
    for (let cut = 0; cut <= bytes.length; cut += 1) {
      checkStream(streamCase, splitAt(bytes, [cut]), `${streamCase.name}, cut at ${cut}`);
      checkStream(
        streamCase,
        splitAt(bytes, [cut, cut + 1]),
        `${streamCase.name}, 1 byte at ${cut}`,
      );
    }
  }
});

test("SSE: events are forwarded as soon as they are whole", () => {
  const reader = createUsageReader(request("openai", "chat_completions", true), true, SSE);
  const first = `${openAiContent[0] ?? ""}\n\n`;
  assert.equal(reader.push(Buffer.from(first.slice(0, 20))).length, 0);
  assert.equal(reader.push(Buffer.from(first.slice(20))).toString(), first);
  // The CR of a possible CRLF is held until the next byte tells.
  assert.equal(reader.push(Buffer.from("data: [DONE]\r\n\r")).toString(), "");
  assert.equal(reader.push(Buffer.from("\n")).toString(), "data: [DONE]\r\n\r\n");
  assert.equal(reader.complete(), true);
});

test("SSE: an event over the limit stops reading but not forwarding", () => {
  const big = sse(`data: {"pad":"${"x".repeat(500)}"}`);
  const upstream = sse(openAiContent[0] ?? "") + big + sse(openAiUsageEvent, "data: [DONE]");
  const reader = createUsageReader(request("openai", "chat_completions", true), true, SSE, 200);
  const forwarded = pipe(reader, bytewise(Buffer.from(upstream)));
  assert.equal(forwarded.toString(), upstream);
  assert.equal(reader.usage(), undefined);
  assert.equal(reader.complete(), false);
});

test("SSE: framing falls back to the request's stream flag without a content type", () => {
  const reader = createUsageReader(request("openai", "chat_completions", true), true, undefined);
  assert.equal(pipe(reader, [Buffer.from(openAiUpstream)]).toString(), openAiClientView);
  assert.deepEqual(reader.usage(), openAiUsage);
});

test("a JSON error answer to a streaming request is read as JSON", () => {
  const text =
    '{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}';
  const reader = createUsageReader(
    request("anthropic", "anthropic_messages", true),
    false,
    JSON_TYPE,
  );
  assert.equal(pipe(reader, [Buffer.from(text)]).toString(), text);
  assert.equal(reader.usage(), undefined);
  assert.equal(reader.complete(), true);
});

test("a call that is no known API passes through unread", () => {
  const text = sse(openAiUsageEvent, "data: [DONE]");
  const reader = createUsageReader(request("openai", "other", false), true, SSE);
  assert.equal(pipe(reader, bytewise(Buffer.from(text))).toString(), text);
  assert.equal(reader.usage(), undefined);
  assert.equal(reader.complete(), false);
});

// ---------------------------------------------------------------- USD → nano-USD

const dollars: [unknown, number | undefined][] = [
  [0, 0],
  [1, 1_000_000_000],
  [0.0001386, 138_600],
  [0.00000693, 6_930],
  [1.2e-7, 120],
  [1.5e-10, 1], // a fraction of a nano-dollar is charged, not dropped
  [0.1 + 0.2, 300_000_001], // 0.30000000000000004: the float's own digits, rounded up
  ["0.25", 250_000_000],
  ["2.5E-3", 2_500_000],
  [1e-300, 1],
  [1e6, 1_000_000_000_000_000],
  [1e7, undefined], // beyond a safe integer of nano-USD
  [-0.01, undefined],
  [Number.NaN, undefined],
  [Number.POSITIVE_INFINITY, undefined],
  ["-1", undefined],
  ["abc", undefined],
  [null, undefined],
  [{}, undefined],
];

for (const [value, expected] of dollars) {
  test(`usdToNanoCeil(${String(value)})`, () => {
    assert.equal(usdToNanoCeil(value), expected);
  });
}
