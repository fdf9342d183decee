import assert from "node:assert/strict";
import { test } from "node:test";

import type { LlmApi } from "./llm-api-path.js";
import type { ProviderId } from "./providers.js";
import { readServerTools, withToolPrices, type ServerToolFacts } from "./server-tools.js";

const CENT = 10_000_000; // nano-USD

const cases: [string, LlmApi, ProviderId, Record<string, unknown>, ServerToolFacts][] = [
  ["no tools", "anthropic_messages", "anthropic", {}, { ok: true, nanoPerCall: {}, maxCalls: {} }],
  [
    "Anthropic web search with max_uses: $10 per 1,000, up to max_uses",
    "anthropic_messages",
    "anthropic",
    { tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 50 }] },
    { ok: true, nanoPerCall: { web_search: CENT }, maxCalls: { web_search: 50 } },
  ],
  [
    "Anthropic web search without max_uses is refused",
    "anthropic_messages",
    "anthropic",
    { tools: [{ type: "web_search_20250305", name: "web_search" }] },
    { ok: false, why: "web_search without max_uses: its cost cannot be bounded" },
  ],
  [
    "Anthropic web search with a fractional max_uses is refused",
    "anthropic_messages",
    "anthropic",
    { tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 2.5 }] },
    { ok: false, why: "web_search without max_uses: its cost cannot be bounded" },
  ],
  [
    "Anthropic client tools and web fetch cost tokens only",
    "anthropic_messages",
    "anthropic",
    {
      tools: [
        { name: "get_weather", input_schema: { type: "object" } },
        { type: "bash_20250124", name: "bash" },
        { type: "web_fetch_20250910", name: "web_fetch" },
      ],
    },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "Anthropic code execution (billed by container time) is refused",
    "anthropic_messages",
    "anthropic",
    { tools: [{ type: "code_execution_20250825", name: "code_execution" }] },
    { ok: false, why: "server tool code_execution_20250825 has no known price or bound" },
  ],
  [
    "Responses web_search with max_tool_calls: $10 per 1,000",
    "responses",
    "openai",
    { tools: [{ type: "web_search" }], max_tool_calls: 4 },
    { ok: true, nanoPerCall: { web_search: CENT }, maxCalls: { web_search: 4 } },
  ],
  [
    "Responses web_search_preview at its dearer rate, file search beside it, the shared limit for each",
    "responses",
    "openai",
    { tools: [{ type: "web_search_preview" }, { type: "file_search" }], max_tool_calls: 3 },
    {
      ok: true,
      nanoPerCall: { web_search: 2.5 * CENT, file_search: CENT / 4 },
      maxCalls: { web_search: 3, file_search: 3 },
    },
  ],
  [
    "Responses web_search without max_tool_calls is refused",
    "responses",
    "openai",
    { tools: [{ type: "web_search" }] },
    { ok: false, why: "built-in tools without max_tool_calls: their cost cannot be bounded" },
  ],
  [
    "Responses code_interpreter is refused",
    "responses",
    "openai",
    { tools: [{ type: "code_interpreter", container: { type: "auto" } }], max_tool_calls: 1 },
    { ok: false, why: "server tool code_interpreter has no known price or bound" },
  ],
  [
    "Responses image_generation is refused",
    "responses",
    "openai",
    { tools: [{ type: "image_generation" }], max_tool_calls: 1 },
    { ok: false, why: "server tool image_generation has no known price or bound" },
  ],
  [
    "Responses web_search on Azure (another price list) is refused",
    "responses",
    "azure",
    { tools: [{ type: "web_search" }], max_tool_calls: 1 },
    { ok: false, why: "server tool web_search has no known price or bound" },
  ],
  [
    "Responses function and MCP tools cost tokens only",
    "responses",
    "openai",
    {
      tools: [
        { type: "function", name: "f" },
        { type: "mcp", server_url: "https://x" },
      ],
    },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "Gemini Google Search grounding is refused",
    "gemini_generate",
    "gemini",
    { tools: [{ googleSearch: {} }] },
    { ok: false, why: "Gemini tool googleSearch has no known price or bound" },
  ],
  [
    "Gemini code execution, URL context and functions cost tokens only",
    "gemini_stream",
    "vertex",
    { tools: [{ codeExecution: {} }, { urlContext: {} }, { functionDeclarations: [] }] },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "a chat completions tool that is not a function is refused",
    "chat_completions",
    "groq",
    { tools: [{ type: "browser_search" }] },
    { ok: false, why: "server tool browser_search has no known price or bound" },
  ],
  [
    "OpenAI chat search model: one search per call, at the dearest chat-search rate",
    "chat_completions",
    "openai",
    { model: "gpt-4o-search-preview", messages: [] },
    { ok: true, nanoPerCall: {}, maxCalls: {}, fixedNano: 5 * CENT },
  ],
  [
    "OpenAI chat with web_search_options: the same",
    "chat_completions",
    "openai",
    { model: "gpt-5", web_search_options: {}, messages: [] },
    { ok: true, nanoPerCall: {}, maxCalls: {}, fixedNano: 5 * CENT },
  ],
  [
    "web_search_options on another host is refused",
    "chat_completions",
    "azure",
    { web_search_options: { search_context_size: "low" }, messages: [] },
    { ok: false, why: "web_search_options has no known price on this host" },
  ],
  [
    "chat completions functions cost tokens only",
    "chat_completions",
    "openai",
    { tools: [{ type: "function", function: { name: "f" } }] },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
];

for (const [name, api, provider, body, expected] of cases) {
  test(`readServerTools: ${name}`, () => {
    assert.deepEqual(readServerTools(api, provider, body), expected);
  });
}

test("withToolPrices: the dearer of ours and the table's, for enabled tools only", () => {
  const pricing = { source: "table", toolNanoPerCall: { web_search: 3 * CENT, file_search: 1 } };
  assert.deepEqual(withToolPrices(pricing, { nanoPerCall: { web_search: CENT } }).toolNanoPerCall, {
    web_search: 3 * CENT,
  });
  const untooled: { source: string; toolNanoPerCall?: Record<string, number> } = {
    source: "table",
  };
  assert.deepEqual(withToolPrices(untooled, { nanoPerCall: { file_search: 7 } }).toolNanoPerCall, {
    file_search: 7,
  });
});

test("withToolPrices: a fixed fee is charged per request", () => {
  const pricing: { toolFixedNano?: number } = {};
  assert.equal(
    withToolPrices(pricing, { nanoPerCall: {}, fixedNano: 5 * CENT }).toolFixedNano,
    5 * CENT,
  );
});
