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
    { ok: true, nanoPerCall: { web_search: CENT }, maxCalls: { web_search: 50 }, modelTurns: 51 },
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
    "Anthropic client tools cost tokens only, in one turn",
    "anthropic_messages",
    "anthropic",
    {
      tools: [
        { name: "get_weather", input_schema: { type: "object" } },
        { type: "bash_20250124", name: "bash" },
      ],
    },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "Anthropic web fetch costs tokens only, one turn more per use; web search's uses add up",
    "anthropic_messages",
    "anthropic",
    {
      tools: [
        { type: "web_fetch_20250910", name: "web_fetch", max_uses: 3 },
        { type: "web_search_20250305", name: "web_search", max_uses: 5 },
      ],
    },
    { ok: true, nanoPerCall: { web_search: CENT }, maxCalls: { web_search: 5 }, modelTurns: 9 },
  ],
  [
    "Anthropic web fetch without max_uses is refused: its turns cannot be bounded",
    "anthropic_messages",
    "anthropic",
    { tools: [{ type: "web_fetch_20250910", name: "web_fetch" }] },
    { ok: false, why: "web_fetch without max_uses: its cost cannot be bounded" },
  ],
  [
    "Anthropic MCP connector is refused: its calls have no limit",
    "anthropic_messages",
    "anthropic",
    { mcp_servers: [{ type: "url", url: "https://x", name: "x" }] },
    { ok: false, why: "mcp_servers: their tool calls have no limit" },
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
    { ok: true, nanoPerCall: { web_search: CENT }, maxCalls: { web_search: 4 }, modelTurns: 5 },
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
      modelTurns: 4,
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
    "Responses function tools cost tokens only, in one turn",
    "responses",
    "openai",
    { tools: [{ type: "function", name: "f" }] },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "Responses MCP costs tokens only, one turn more per call",
    "responses",
    "openai",
    {
      tools: [
        { type: "function", name: "f" },
        { type: "mcp", server_url: "https://x" },
      ],
      max_tool_calls: 6,
    },
    { ok: true, nanoPerCall: {}, maxCalls: {}, modelTurns: 7 },
  ],
  [
    "Responses MCP without max_tool_calls is refused: its turns cannot be bounded",
    "responses",
    "openai",
    { tools: [{ type: "mcp", server_url: "https://x" }] },
    { ok: false, why: "built-in tools without max_tool_calls: their cost cannot be bounded" },
  ],
  [
    "Gemini Google Search grounding is refused",
    "gemini_generate",
    "gemini",
    { tools: [{ googleSearch: {} }] },
    { ok: false, why: "Gemini tool googleSearch has no known price or bound" },
  ],
  [
    "Gemini functions cost tokens only",
    "gemini_stream",
    "vertex",
    { tools: [{ functionDeclarations: [] }, { function_declarations: [] }] },
    { ok: true, nanoPerCall: {}, maxCalls: {} },
  ],
  [
    "Gemini code execution is refused: its loop has no limit to set",
    "gemini_stream",
    "vertex",
    { tools: [{ functionDeclarations: [] }, { codeExecution: {} }] },
    { ok: false, why: "Gemini tool codeExecution has no known price or bound" },
  ],
  [
    "Gemini URL context is refused the same way",
    "gemini_generate",
    "gemini",
    { tools: [{ url_context: {} }] },
    { ok: false, why: "Gemini tool url_context has no known price or bound" },
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
    { ok: true, nanoPerCall: {}, maxCalls: {}, fixedNano: 5 * CENT, modelTurns: 2 },
  ],
  [
    "OpenAI chat with web_search_options: the same",
    "chat_completions",
    "openai",
    { model: "gpt-5", web_search_options: {}, messages: [] },
    { ok: true, nanoPerCall: {}, maxCalls: {}, fixedNano: 5 * CENT, modelTurns: 2 },
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
