import assert from "node:assert/strict";
import { test } from "node:test";

import { readLlmRequest, type LlmRequest } from "./llm-request.js";
import type { ProviderId } from "./providers.js";

type Expected = { [K in keyof LlmRequest]?: LlmRequest[K] | undefined } & {
  usageInjected?: boolean;
};

function body(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value), "utf8");
}

function readOk(provider: ProviderId, method: string, path: string, payload: unknown) {
  const reading = readLlmRequest(provider, method, path, body(payload));
  if (!reading.ok) assert.fail(`expected a reading, got: ${reading.why}`);
  return reading;
}

const chat = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] };
const gemini = { contents: [{ role: "user", parts: [{ text: "Hi" }] }] };

const readings: [string, ProviderId, string, string, unknown, Expected][] = [
  // What the request asks for.
  [
    "OpenAI chat with max_tokens",
    "openai",
    "POST",
    "/v1/chat/completions",
    { ...chat, max_tokens: 256 },
    { api: "chat_completions", model: "gpt-4o-mini", maxOutputTokens: 256, n: 1, stream: false },
  ],
  [
    "OpenAI chat with max_completion_tokens and n",
    "openai",
    "POST",
    "/v1/chat/completions",
    { ...chat, max_completion_tokens: 1000, n: 3 },
    { maxOutputTokens: 1000, n: 3 },
  ],
  [
    "both chat limits: the larger is the worst case",
    "openai",
    "POST",
    "/v1/chat/completions",
    { ...chat, max_tokens: 100, max_completion_tokens: 200 },
    { maxOutputTokens: 200 },
  ],
  [
    "null limits mean unset",
    "openai",
    "POST",
    "/v1/chat/completions",
    { ...chat, max_tokens: null, n: null, stream: null },
    { maxOutputTokens: undefined, n: 1, stream: false },
  ],
  [
    "Responses API",
    "openai",
    "POST",
    "/v1/responses",
    { model: "gpt-5", input: "Hi", max_output_tokens: 500, stream: true },
    { api: "responses", model: "gpt-5", maxOutputTokens: 500, stream: true, usageInjected: false },
  ],
  [
    "legacy completions: best_of candidates are billed",
    "openai",
    "POST",
    "/v1/completions",
    { model: "gpt-3.5-turbo-instruct", prompt: "Hi", max_tokens: 16, n: 2, best_of: 5 },
    { api: "completions", maxOutputTokens: 16, n: 5 },
  ],
  [
    "embeddings have no output",
    "openai",
    "POST",
    "/v1/embeddings",
    { model: "text-embedding-3-small", input: "Hi" },
    { api: "embeddings", model: "text-embedding-3-small", maxOutputTokens: 0 },
  ],
  [
    "Anthropic messages",
    "anthropic",
    "POST",
    "/v1/messages",
    { model: "claude-sonnet-4-5", max_tokens: 1024, stream: true, messages: [] },
    { api: "anthropic_messages", model: "claude-sonnet-4-5", maxOutputTokens: 1024, stream: true },
  ],
  [
    "Anthropic count_tokens is not a model call",
    "anthropic",
    "POST",
    "/v1/messages/count_tokens",
    { model: "claude-sonnet-4-5", messages: [] },
    { api: "other", model: undefined },
  ],
  [
    "Gemini generateContent: model from the path",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, generationConfig: { maxOutputTokens: 800, candidateCount: 2 } },
    {
      api: "gemini_generate",
      model: "gemini-2.5-flash",
      maxOutputTokens: 800,
      n: 2,
      stream: false,
    },
  ],
  [
    "Gemini streamGenerateContent streams by path",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    gemini,
    { api: "gemini_stream", model: "gemini-2.5-pro", stream: true, maxOutputTokens: undefined },
  ],
  [
    "Gemini snake_case config",
    "gemini",
    "POST",
    "/v1/models/gemini-2.0-flash:generateContent",
    { ...gemini, generation_config: { max_output_tokens: 64, candidate_count: 1 } },
    { model: "gemini-2.0-flash", maxOutputTokens: 64, n: 1 },
  ],
  [
    "Gemini tuned model keeps its prefix",
    "gemini",
    "POST",
    "/v1beta/tunedModels/my-model-123:generateContent",
    gemini,
    { api: "gemini_generate", model: "tunedModels/my-model-123" },
  ],
  [
    "Gemini countTokens is not a model call",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:countTokens",
    gemini,
    { api: "other", model: undefined },
  ],
  [
    "Gemini's OpenAI-compatible endpoint",
    "gemini",
    "POST",
    "/v1beta/openai/chat/completions",
    { ...chat, model: "gemini-2.5-flash", stream: true },
    { api: "chat_completions", model: "gemini-2.5-flash", stream: true, usageInjected: false },
  ],
  [
    "Azure deployment is the model, and a recent api-version gets usage injected",
    "azure",
    "POST",
    "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21",
    { messages: chat.messages, stream: true, max_tokens: 50 },
    { api: "chat_completions", model: "prod-gpt4o", maxOutputTokens: 50, usageInjected: true },
  ],
  [
    "Azure deployment wins over a body model",
    "azure",
    "POST",
    "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21",
    { ...chat, model: "gpt-4o-mini" },
    { model: "prod-gpt4o" },
  ],
  [
    "Azure before 2024-09-01 rejects stream_options: no injection",
    "azure",
    "POST",
    "/openai/deployments/prod/chat/completions?api-version=2024-02-01",
    { messages: chat.messages, stream: true },
    { model: "prod", stream: true, usageInjected: false },
  ],
  [
    "Azure 2024-09-01-preview accepts it",
    "azure",
    "POST",
    "/openai/deployments/prod/chat/completions?api-version=2024-09-01-preview",
    { messages: chat.messages, stream: true },
    { usageInjected: true },
  ],
  [
    "Azure v1 API: model in the body, injection",
    "azure",
    "POST",
    "/openai/v1/chat/completions",
    { ...chat, stream: true },
    { api: "chat_completions", model: "gpt-4o-mini", usageInjected: true },
  ],
  [
    "Azure embeddings deployment",
    "azure",
    "POST",
    "/openai/deployments/embed-small/embeddings?api-version=2024-10-21",
    { input: "Hi" },
    { api: "embeddings", model: "embed-small" },
  ],
  [
    "Azure AI model inference (serverless endpoint): the model is in the body",
    "azure",
    "POST",
    "/chat/completions?api-version=2024-05-01-preview",
    { ...chat, max_tokens: 100 },
    { api: "chat_completions", model: "gpt-4o-mini", maxOutputTokens: 100 },
  ],
  [
    "Vertex AI Gemini: the model is in the path, priced as Gemini",
    "vertex",
    "POST",
    "/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
    { ...gemini, generationConfig: { maxOutputTokens: 64 } },
    { api: "gemini_generate", model: "gemini-2.5-flash", maxOutputTokens: 64, stream: false },
  ],
  [
    "Vertex AI Gemini streaming",
    "vertex",
    "POST",
    "/v1beta1/projects/p1/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    gemini,
    { api: "gemini_stream", model: "gemini-2.5-pro", stream: true },
  ],
  [
    "Vertex AI: Anthropic's rawPredict is not read (refused as unpriced by the proxy)",
    "vertex",
    "POST",
    "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
    { anthropic_version: "vertex-2023-10-16", max_tokens: 10, messages: [] },
    { api: "other", model: undefined },
  ],
  [
    "Vertex AI: the OpenAI-compatible endpoint is not read",
    "vertex",
    "POST",
    "/v1/projects/p1/locations/us-central1/endpoints/openapi/chat/completions",
    { ...chat, model: "google/gemini-2.5-flash" },
    { api: "other" },
  ],
  [
    "Azure AI Foundry model inference: model in the body",
    "azure",
    "POST",
    "/models/chat/completions?api-version=2024-05-01-preview",
    { ...chat, model: "gpt-4o" },
    { api: "chat_completions", model: "gpt-4o" },
  ],
  [
    "Groq streaming chat gets usage injected",
    "groq",
    "POST",
    "/openai/v1/chat/completions",
    { ...chat, model: "llama-3.3-70b-versatile", stream: true },
    { model: "llama-3.3-70b-versatile", usageInjected: true },
  ],
  [
    "Mistral answers 422 to stream_options: no injection",
    "mistral",
    "POST",
    "/v1/chat/completions",
    { ...chat, model: "mistral-large-latest", stream: true },
    { model: "mistral-large-latest", stream: true, usageInjected: false },
  ],
  [
    "Mistral FIM is a completion",
    "mistral",
    "POST",
    "/v1/fim/completions",
    { model: "codestral-latest", prompt: "def", max_tokens: 64 },
    { api: "completions", maxOutputTokens: 64 },
  ],
  [
    "a client that asked for usage itself: nothing injected",
    "openrouter",
    "POST",
    "/api/v1/chat/completions",
    { ...chat, model: "openai/gpt-4o", stream: true, stream_options: { include_usage: true } },
    { model: "openai/gpt-4o", usageInjected: false },
  ],
  [
    "OpenRouter models list naming the one model",
    "openrouter",
    "POST",
    "/api/v1/chat/completions",
    { messages: chat.messages, models: ["openai/gpt-4o"] },
    { model: "openai/gpt-4o" },
  ],
  [
    "DeepSeek without a version prefix",
    "deepseek",
    "POST",
    "/chat/completions",
    { ...chat, model: "deepseek-chat", stream: true },
    { api: "chat_completions", model: "deepseek-chat", usageInjected: true },
  ],
  [
    "DeepSeek's Anthropic-compatible endpoint",
    "deepseek",
    "POST",
    "/anthropic/v1/messages",
    { model: "deepseek-chat", max_tokens: 100, messages: [] },
    { api: "anthropic_messages", maxOutputTokens: 100 },
  ],
  [
    "Fireworks inference prefix",
    "fireworks",
    "POST",
    "/inference/v1/chat/completions",
    { ...chat, model: "accounts/fireworks/models/llama-v3p1-8b-instruct", stream: true },
    { api: "chat_completions", usageInjected: true },
  ],
  [
    "xAI and Together",
    "xai",
    "POST",
    "/v1/chat/completions",
    { ...chat, model: "grok-4", stream: true, stream_options: { include_usage: false } },
    { model: "grok-4", usageInjected: true },
  ],
  // Routing that must not be fooled.
  [
    "GET /v1/models",
    "openai",
    "GET",
    "/v1/models",
    "",
    { api: "other", model: undefined, maxOutputTokens: undefined, n: 1, stream: false },
  ],
  [
    "GET of a model-call path lists, it does not call",
    "openai",
    "GET",
    "/v1/chat/completions?limit=10",
    "",
    { api: "other" },
  ],
  [
    "image generation is not a token API",
    "openai",
    "POST",
    "/v1/images/generations",
    { model: "gpt-image-1", prompt: "a cat" },
    { api: "other", model: undefined },
  ],
  [
    "Assistants thread messages are not Anthropic messages",
    "openai",
    "POST",
    "/v1/threads/thread_1/messages",
    { role: "user", content: "Hi" },
    { api: "other" },
  ],
  [
    "lower-case method",
    "openai",
    "post",
    "/v1/chat/completions",
    chat,
    { api: "chat_completions" },
  ],
  [
    "encoded separators in the query are not the path's",
    "openai",
    "POST",
    "/v1/chat/completions?after=a%2F..%2Fb",
    chat,
    { api: "chat_completions" },
  ],
  [
    "a dot inside a segment is not a dot segment",
    "azure",
    "POST",
    "/openai/deployments/gpt-4.1..mini/chat/completions",
    chat,
    { model: "gpt-4.1..mini" },
  ],
  [
    "a trailing slash and a doubled slash",
    "openai",
    "POST",
    "//v1//chat/completions/",
    chat,
    { api: "chat_completions" },
  ],
  [
    "an absolute-form target",
    "openai",
    "POST",
    "https://api.openai.com/v1/chat/completions?x=1",
    chat,
    { api: "chat_completions", model: "gpt-4o-mini" },
  ],
  // Input facts.
  [
    "text only",
    "openai",
    "POST",
    "/v1/chat/completions",
    chat,
    { hasImages: false, imageCount: 0, externalInput: false },
  ],
  [
    "two chat images",
    "openai",
    "POST",
    "/v1/chat/completions",
    {
      model: "gpt-4o",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Compare" },
            { type: "image_url", image_url: { url: "https://example.com/a.png" } },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          ],
        },
      ],
    },
    { hasImages: true, imageCount: 2, externalInput: false },
  ],
  [
    "chat audio input cannot be bounded by its bytes",
    "openai",
    "POST",
    "/v1/chat/completions",
    {
      model: "gpt-4o-audio-preview",
      messages: [
        {
          role: "user",
          content: [{ type: "input_audio", input_audio: { data: "UklG", format: "wav" } }],
        },
      ],
    },
    { hasImages: true, imageCount: 0, externalInput: true },
  ],
  [
    "Anthropic image and PDF",
    "anthropic",
    "POST",
    "/v1/messages",
    {
      model: "claude-sonnet-4-5",
      max_tokens: 10,
      messages: [
        {
          role: "user",
          content: [
            { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBO" } },
            {
              type: "document",
              source: { type: "base64", media_type: "application/pdf", data: "JVBE" },
            },
          ],
        },
      ],
    },
    { hasImages: true, imageCount: 1, externalInput: true },
  ],
  [
    "Gemini inline image, and a PDF",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    {
      contents: [
        {
          parts: [
            { inlineData: { mimeType: "image/jpeg", data: "/9j/" } },
            { inline_data: { mime_type: "application/pdf", data: "JVBE" } },
          ],
        },
      ],
    },
    { hasImages: true, imageCount: 1, externalInput: true },
  ],
  [
    "Gemini image only",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { contents: [{ parts: [{ inlineData: { mimeType: "image/png", data: "iVBO" } }] }] },
    { hasImages: true, imageCount: 1, externalInput: false },
  ],
  [
    "Responses continuing a stored conversation",
    "openai",
    "POST",
    "/v1/responses",
    { model: "gpt-5", input: "and then?", previous_response_id: "resp_123" },
    { externalInput: true },
  ],
  [
    "Responses with a server-side tool",
    "openai",
    "POST",
    "/v1/responses",
    { model: "gpt-5", input: "news?", tools: [{ type: "web_search" }] },
    { externalInput: true },
  ],
  [
    "Responses with a function tool only",
    "openai",
    "POST",
    "/v1/responses",
    { model: "gpt-5", input: "hi", tools: [{ type: "function", name: "f", parameters: {} }] },
    { externalInput: false },
  ],
  [
    "Responses image by file id",
    "openai",
    "POST",
    "/v1/responses",
    {
      model: "gpt-5",
      input: [{ role: "user", content: [{ type: "input_image", file_id: "file-1" }] }],
    },
    { imageCount: 1, externalInput: true },
  ],
  [
    "Anthropic server tool",
    "anthropic",
    "POST",
    "/v1/messages",
    {
      model: "claude-sonnet-4-5",
      max_tokens: 10,
      messages: [],
      tools: [{ type: "web_search_20250305", name: "web_search" }],
    },
    { externalInput: true },
  ],
  [
    "Anthropic client tools",
    "anthropic",
    "POST",
    "/v1/messages",
    {
      model: "claude-sonnet-4-5",
      max_tokens: 10,
      messages: [],
      tools: [
        { name: "get_weather", input_schema: { type: "object" } },
        { type: "bash_20250124", name: "bash" },
        { type: "custom", name: "x", input_schema: { type: "object" } },
      ],
    },
    { externalInput: false },
  ],
  [
    "Gemini grounding with search",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, tools: [{ googleSearch: {} }] },
    { externalInput: true },
  ],
  [
    "Gemini function declarations",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, tools: [{ functionDeclarations: [{ name: "f" }] }] },
    { externalInput: false },
  ],
  [
    "Gemini cached content",
    "gemini",
    "POST",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, cachedContent: "cachedContents/abc" },
    { externalInput: true },
  ],
  [
    "OpenRouter :online web search",
    "openrouter",
    "POST",
    "/api/v1/chat/completions",
    { ...chat, model: "openai/gpt-4o:online" },
    { externalInput: true },
  ],
  // Predicted outputs: rejected prediction tokens are billed as output (review F1).
  [
    "a chat prediction: the bytes of its strings bound its tokens",
    "openai",
    "POST",
    "/v1/chat/completions",
    {
      ...chat,
      max_completion_tokens: 1,
      prediction: { type: "content", content: " a".repeat(10) },
    },
    { maxOutputTokens: 1, predictionTokens: 7 + 20 },
  ],
  [
    "a chat prediction in text parts, multi-byte",
    "azure",
    "POST",
    "/openai/v1/chat/completions",
    { ...chat, prediction: { type: "content", content: [{ type: "text", text: "日本" }] } },
    { predictionTokens: 7 + 4 + 6 },
  ],
  [
    "no prediction",
    "openai",
    "POST",
    "/v1/chat/completions",
    chat,
    { predictionTokens: undefined },
  ],
  // Service tiers that may bill above the table (review F4).
  ...(
    [
      ["default", undefined],
      ["flex", undefined],
      ["auto", undefined],
      ["priority", "service_tier priority is billed above the standard prices"],
      ["scale", "service_tier scale is billed above the standard prices"],
    ] as const
  ).map(([tier, why]): [string, ProviderId, string, string, unknown, Expected] => [
    `service_tier ${tier}`,
    "openai",
    "POST",
    "/v1/responses",
    { model: "gpt-4.1", input: "hi", service_tier: tier },
    { unpricedTier: why },
  ]),
  [
    "Anthropic's standard_only tier is standard",
    "anthropic",
    "POST",
    "/v1/messages",
    { model: "claude-sonnet-4-5", max_tokens: 1, messages: [], service_tier: "standard_only" },
    { unpricedTier: undefined },
  ],
];

for (const [name, provider, method, path, payload, expected] of readings) {
  test(`readLlmRequest: ${name}`, () => {
    const reading = readOk(provider, method, path, payload);
    const { usageInjected, ...fields } = expected;
    for (const [key, value] of Object.entries(fields)) {
      assert.deepEqual(reading.request[key as keyof LlmRequest], value, key);
    }
    if (usageInjected !== undefined) assert.equal(reading.usageInjected, usageInjected);
    assert.equal(reading.request.provider, provider);
    assert.equal(reading.request.inputBytes, reading.forwardBody.length);
  });
}

const refusals: [string, ProviderId, string, unknown][] = [
  ["not JSON", "openai", "/v1/chat/completions", "{model:"],
  ["an empty body", "openai", "/v1/chat/completions", ""],
  ["a JSON array", "openai", "/v1/chat/completions", [chat]],
  ["a JSON string", "anthropic", "/v1/messages", '"hi"'],
  ["a negative limit", "openai", "/v1/chat/completions", { ...chat, max_tokens: -1 }],
  ["a fractional limit", "openai", "/v1/chat/completions", { ...chat, max_completion_tokens: 1.5 }],
  ["a limit as text", "anthropic", "/v1/messages", { model: "c", max_tokens: "100", messages: [] }],
  ["an unsafe integer", "openai", "/v1/responses", { model: "m", max_output_tokens: 2 ** 60 }],
  ["n = 0", "openai", "/v1/chat/completions", { ...chat, n: 0 }],
  ["n above 128", "openai", "/v1/chat/completions", { ...chat, n: 129 }],
  ["best_of above 128", "openai", "/v1/completions", { model: "m", prompt: "p", best_of: 500 }],
  ["a model that is not text", "openai", "/v1/chat/completions", { ...chat, model: 4 }],
  ["stream as text", "openai", "/v1/chat/completions", { ...chat, stream: "yes" }],
  ["stream_options as text", "openai", "/v1/chat/completions", { ...chat, stream_options: "x" }],
  [
    "a Gemini config that is not an object",
    "gemini",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, generationConfig: [] },
  ],
  [
    "too many Gemini candidates",
    "gemini",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    { ...gemini, generationConfig: { candidateCount: 1000 } },
  ],
  [
    "a negative Gemini limit",
    "gemini",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    { ...gemini, generationConfig: { maxOutputTokens: -5 } },
  ],
  [
    "an OpenRouter fallback to a second model",
    "openrouter",
    "/api/v1/chat/completions",
    { ...chat, model: "openai/gpt-4o-mini", models: ["openai/gpt-4o-mini", "openai/o1-pro"] },
  ],
  // A path the provider may decode or resolve otherwise than we do (review F5).
  ["an encoded slash", "openai", "/v1/chat%2Fcompletions", chat],
  [
    "an Azure deployment hidden behind encoded dot segments",
    "azure",
    "/openai/deployments/gpt-4o-mini%2F..%2Fo3-pro/chat/completions?api-version=2024-10-21",
    chat,
  ],
  ["a lower-case encoded slash", "azure", "/openai/deployments/a%2f..%2fb/chat/completions", chat],
  ["an encoded dot", "openai", "/v1/x/%2E%2e/chat/completions", chat],
  ["an encoded backslash", "azure", "/openai/deployments/a%5C..%5cb/chat/completions", chat],
  ["a backslash", "azure", "/openai/deployments/a\\..\\b/chat/completions", chat],
  ["dot segments", "openai", "/v1/files/../chat/completions", chat],
  ["a single-dot segment", "openai", "/v1/./chat/completions", chat],
  ["a trailing dot segment", "openai", "/v1/chat/completions/..", chat],
  [
    "dot segments in an absolute-form target",
    "openai",
    "https://api.openai.com/v1/files/../chat/completions",
    chat,
  ],
  [
    "an OpenRouter models list that is not text",
    "openrouter",
    "/api/v1/chat/completions",
    { ...chat, models: [1] },
  ],
];

for (const [name, provider, path, payload] of refusals) {
  test(`readLlmRequest refuses ${name}`, () => {
    const reading = readLlmRequest(provider, "POST", path, body(payload));
    if (reading.ok) assert.fail("expected a refusal");
    assert.ok(reading.why.length > 0);
  });
}

test("readLlmRequest refuses a path trick on a call it would not otherwise read", () => {
  for (const [method, path] of [
    ["GET", "/v1/models/%2E%2E/files"],
    ["GET", "/v1/files/../models"],
    ["DELETE", "/openai/deployments/a%2Fb"],
  ] as const) {
    const reading = readLlmRequest("openai", method, path, Buffer.alloc(0));
    assert.equal(reading.ok, false, `${method} ${path}`);
  }
});

test("readLlmRequest refuses invalid UTF-8 rather than guessing", () => {
  const bytes = Buffer.concat([
    Buffer.from('{"model":"'),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('"}'),
  ]);
  const reading = readLlmRequest("openai", "POST", "/v1/chat/completions", bytes);
  assert.equal(reading.ok, false);
});

test("readLlmRequest refuses repeated keys and deep nesting before parsing them", () => {
  const deep = (depth: number) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  const table: [string, string, string, string][] = [
    [
      "a cost field given twice",
      "/v1/chat/completions",
      '{"model":"gpt-4o-mini","max_tokens":1,"messages":[],"max_tokens":100000}',
      "request body repeats a key in an object",
    ],
    [
      "an Anthropic model given twice",
      "/v1/messages",
      '{"model":"claude-haiku-4-5","max_tokens":1,"messages":[],"model":"claude-opus-4-1"}',
      "request body repeats a key in an object",
    ],
    [
      // The review's crash: the usage-option rewrite (JSON.stringify) overflowed the stack.
      "streaming metadata 20,000 objects deep",
      "/v1/chat/completions",
      `{"model":"gpt-4o-mini","stream":true,"messages":[],"metadata":${deep(20_000)}}`,
      "request body nests deeper than 64 levels",
    ],
  ];
  for (const [name, path, text, why] of table) {
    const provider = path === "/v1/messages" ? "anthropic" : "openai";
    const reading = readLlmRequest(provider, "POST", path, Buffer.from(text));
    assert.deepEqual(reading, { ok: false, why }, name);
  }
});

test("readLlmRequest refuses a body over the limit, and only then", () => {
  const payload = body(chat);
  const over = readLlmRequest(
    "openai",
    "POST",
    "/v1/chat/completions",
    payload,
    payload.length - 1,
  );
  assert.deepEqual(over, {
    ok: false,
    why: `request body is larger than ${payload.length - 1} bytes`,
  });
  const at = readLlmRequest("openai", "POST", "/v1/chat/completions", payload, payload.length);
  assert.equal(at.ok, true);
});

test("readLlmRequest does not read the body of an unknown call", () => {
  const upload = Buffer.from("--boundary\r\nContent-Disposition: form-data\r\n\r\n\x00\x01");
  const reading = readOk("openai", "POST", "/v1/files", upload);
  assert.equal(reading.request.api, "other");
  assert.equal(reading.forwardBody, upload);
  assert.equal(reading.request.inputBytes, upload.length);
});

test("readLlmRequest forwards the client's own bytes when nothing is injected", () => {
  const raw = '{ "model" : "gpt-4o-mini",\n  "messages": [], "temperature": 1.0 }';
  const reading = readOk("openai", "POST", "/v1/chat/completions", raw);
  assert.equal(reading.usageInjected, false);
  assert.equal(reading.forwardBody.toString("utf8"), raw);
});

test("usage injection appends stream_options and keeps the key order", () => {
  const raw = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi é"}]}';
  const reading = readOk("openai", "POST", "/v1/chat/completions", raw);
  assert.equal(reading.usageInjected, true);
  assert.equal(
    reading.forwardBody.toString("utf8"),
    '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi é"}],' +
      '"stream_options":{"include_usage":true}}',
  );
  assert.equal(reading.request.inputBytes, reading.forwardBody.length);
});

test("usage injection keeps the client's other stream_options where they were", () => {
  const raw =
    '{"model":"gpt-4o","stream_options":{"include_obfuscation":false,"include_usage":false},' +
    '"stream":true,"messages":[]}';
  const reading = readOk("openai", "POST", "/v1/chat/completions", raw);
  assert.equal(reading.usageInjected, true);
  assert.equal(
    reading.forwardBody.toString("utf8"),
    '{"model":"gpt-4o","stream_options":{"include_obfuscation":false,"include_usage":true},' +
      '"stream":true,"messages":[]}',
  );
});

test("no injection for a request that does not stream", () => {
  const reading = readOk("openai", "POST", "/v1/chat/completions", { ...chat, stream: false });
  assert.equal(reading.usageInjected, false);
});
