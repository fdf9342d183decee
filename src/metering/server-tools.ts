/**
 * Tools that run on the provider's side and bill per call on top of tokens (web search, file
 * search): which ones a request enables, how many calls it allows at most, and at what price.
 * A tool whose cost cannot be bounded before the call (no call limit, billed by container time,
 * billed as another model's tokens, or simply not known here) makes the request refused, never
 * passed free. Pure: no I/O.
 */
import type { LlmApi } from "./llm-api-path.js";
import type { ToolFee } from "./prices.js";
import type { ProviderId } from "./providers.js";

/**
 * Per-call prices of fee-charging server tools, nano-USD. HAND-WRITTEN, read 2026-12-02:
 * genai-prices has `web_searches_kcount` / `storage_searches_kcount` for some models only and
 * none per tool version, so these are the floor and the table's price for the model is taken
 * when it is higher (server-tools.ts → admission).
 * - Anthropic `web_search_*`: $10 per 1,000 searches (docs.anthropic.com, "Web search tool",
 *   Usage and pricing). `web_fetch_*` has no fee beyond tokens (same docs, "Web fetch tool").
 * - OpenAI Responses `web_search` (GA): $10 per 1,000 calls; `web_search_preview`: $25 per
 *   1,000 calls with non-reasoning models, the dearer of its two rates, taken for every model;
 *   `file_search`: $2.50 per 1,000 calls (platform.openai.com/docs/pricing, "Built-in tools").
 * - OpenAI chat completions search models (`gpt-4o-search-preview`…, or `web_search_options`):
 *   one search per request, $50 per 1,000 at the most (gpt-4o-search-preview with a high
 *   search context, the dearest rate OpenAI has listed for them; same page). Their usage does
 *   not report the search, so it is charged on every such call.
 */
const USD_PER_1000_CALLS = 1_000_000; // nano-USD per call for $1 per 1,000 calls

const ANTHROPIC_WEB_SEARCH_NANO = 10 * USD_PER_1000_CALLS;
const OPENAI_WEB_SEARCH_NANO = 10 * USD_PER_1000_CALLS;
const OPENAI_WEB_SEARCH_PREVIEW_NANO = 25 * USD_PER_1000_CALLS;
const OPENAI_FILE_SEARCH_NANO = 2.5 * USD_PER_1000_CALLS;
const OPENAI_CHAT_SEARCH_NANO = 50 * USD_PER_1000_CALLS;

/** What a request's tools add to its cost, or why they make it unpriceable. */
export type ServerToolFacts =
  | {
      readonly ok: true;
      /** The price each fee-charging tool enabled is billed at, nano-USD per call. */
      readonly nanoPerCall: Readonly<Partial<Record<ToolFee, number>>>;
      /** The most calls the request allows of each tool (a shared limit counts for each). */
      readonly maxCalls: Readonly<Partial<Record<ToolFee, number>>>;
      /** A fee the request costs whatever its usage says (chat search models), nano-USD. */
      readonly fixedNano?: number;
      /**
       * Set when a tool runs on the provider's side: the most model turns the provider may run
       * for this one request (tool-call limit + 1). Each turn reads the whole context again and
       * is billed for it, so the input bound is the context window × this.
       */
      readonly modelTurns?: number;
    }
  | { readonly ok: false; readonly why: string };

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** How one tool entry is billed. */
type ToolRule =
  | { readonly kind: "client" }
  | { readonly kind: "server" }
  | { readonly kind: "fee"; readonly fee: ToolFee; readonly nanoPerCall: number }
  | { readonly kind: "refused"; readonly why: string };

// CLIENT: run by the client, results come back in a later request. SERVER: run by the provider
// in a loop inside this request, with no fee beyond tokens.
const CLIENT: ToolRule = { kind: "client" };
const SERVER: ToolRule = { kind: "server" };
const perCall = (name: ToolFee, nanoPerCall: number): ToolRule => ({
  kind: "fee",
  fee: name,
  nanoPerCall,
});
const unbounded = (type: string): ToolRule => ({
  kind: "refused",
  why: `server tool ${type} has no known price or bound`,
});

// Anthropic tools the client runs (their results come back in a later request), and tools with
// no `type` at all (custom tools).
const ANTHROPIC_CLIENT_TOOL = /^(?:custom$|bash_|text_editor_|computer_|memory_)/;

function anthropicRule(tool: JsonObject): ToolRule {
  const type = tool.type;
  if (type === undefined || type === null) return CLIENT;
  if (typeof type !== "string") return { kind: "refused", why: "a tool type must be a string" };
  if (ANTHROPIC_CLIENT_TOOL.test(type)) return CLIENT;
  if (type.startsWith("web_fetch_")) return SERVER;
  if (type.startsWith("web_search_")) return perCall("web_search", ANTHROPIC_WEB_SEARCH_NANO);
  return unbounded(type);
}

// Responses tools the client runs.
const OPENAI_CLIENT_TOOLS = new Set([
  "function",
  "custom",
  "computer_use_preview",
  "computer_use",
  "local_shell",
  "shell",
  "apply_patch",
]);

/** A tool's `type` for a message: the string, or what kind of value it is instead. */
function typeName(type: unknown): string {
  if (typeof type === "string") return type;
  return type === null ? "null" : typeof type;
}

function openAiResponsesRule(provider: ProviderId, tool: JsonObject): ToolRule {
  const type = typeName(tool.type);
  if (OPENAI_CLIENT_TOOLS.has(type)) return CLIENT;
  // Remote MCP: OpenAI calls the server and feeds its answers back, billed as tokens only.
  if (type === "mcp") return SERVER;
  // Only OpenAI's own prices are known; Azure and others bill these tools differently.
  if (provider === "openai") {
    if (type === "web_search" || /^web_search_\d{4}_\d{2}_\d{2}$/.test(type)) {
      return perCall("web_search", OPENAI_WEB_SEARCH_NANO);
    }
    if (type.startsWith("web_search_preview")) {
      return perCall("web_search", OPENAI_WEB_SEARCH_PREVIEW_NANO);
    }
    if (type === "file_search") return perCall("file_search", OPENAI_FILE_SEARCH_NANO);
  }
  // code_interpreter is billed per container and its lifetime, image_generation as the image
  // model's tokens that `usage` does not report: neither is bounded by anything in the request.
  return unbounded(type);
}

// Gemini tool keys the client runs: function declarations.
const GEMINI_CLIENT_KEYS = new Set(["functionDeclarations", "function_declarations"]);

function geminiRule(tool: JsonObject): ToolRule {
  // Google Search grounding is billed per search, code execution and URL context as tokens of
  // a loop the provider runs (ai.google.dev/gemini-api/docs/pricing): none has a limit the
  // request can set, so none can be bounded and all are refused.
  const server = Object.keys(tool).find((key) => !GEMINI_CLIENT_KEYS.has(key));
  return server === undefined
    ? CLIENT
    : { kind: "refused", why: `Gemini tool ${server} has no known price or bound` };
}

function ruleFor(api: LlmApi, provider: ProviderId, tool: unknown): ToolRule {
  if (!isObject(tool)) return { kind: "refused", why: "a tool must be an object" };
  switch (api) {
    case "anthropic_messages":
      return anthropicRule(tool);
    case "gemini_generate":
    case "gemini_stream":
      return geminiRule(tool);
    case "responses":
      return openAiResponsesRule(provider, tool);
    default:
      // Chat completions and the OpenAI-compatible hosts: only tools the client runs.
      return tool.type === undefined || tool.type === "function" || tool.type === "custom"
        ? CLIENT
        : unbounded(typeName(tool.type));
  }
}

/**
 * OpenAI's chat search models search once per request, asked or not, and so does any chat model
 * given `web_search_options`. Other hosts' search options have no price here: refused.
 */
function chatSearch(provider: ProviderId, body: JsonObject): ServerToolFacts | undefined {
  const options = body.web_search_options;
  const asked = options !== undefined && options !== null;
  const searchModel = typeof body.model === "string" && /search/i.test(body.model);
  if (!asked && !(searchModel && provider === "openai")) return undefined;
  if (provider !== "openai") {
    return { ok: false, why: "web_search_options has no known price on this host" };
  }
  // One search, then the answer: two turns.
  return {
    ok: true,
    nanoPerCall: {},
    maxCalls: {},
    fixedNano: OPENAI_CHAT_SEARCH_NANO,
    modelTurns: 2,
  };
}

/** A call limit field: a non-negative safe integer, else undefined (no bound). */
function limit(value: unknown): number | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** What the tools of one body add up to, before the per-API call limits are applied. */
interface ToolTally {
  readonly nanoPerCall: Partial<Record<ToolFee, number>>;
  readonly maxCalls: Partial<Record<ToolFee, number>>;
  /** A tool runs on the provider's side (with or without a fee). */
  server: boolean;
  /** Anthropic: the sum of the server tools' `max_uses`, each tool's calls being its own. */
  uses: number;
}

function tallyTools(
  api: LlmApi,
  provider: ProviderId,
  tools: readonly unknown[],
): ToolTally | { readonly why: string } {
  const tally: ToolTally = { nanoPerCall: {}, maxCalls: {}, server: false, uses: 0 };
  for (const tool of tools) {
    const rule = ruleFor(api, provider, tool);
    if (rule.kind === "refused") return { why: rule.why };
    if (rule.kind === "client") continue;
    tally.server = true;
    const name = rule.kind === "fee" ? rule.fee : "web_fetch";
    if (rule.kind === "fee") {
      tally.nanoPerCall[rule.fee] = Math.max(tally.nanoPerCall[rule.fee] ?? 0, rule.nanoPerCall);
    }
    if (api !== "anthropic_messages") continue;
    // Anthropic: a free server tool (web fetch) still needs `max_uses`, for the turns it adds.
    const uses = limit(isObject(tool) ? tool.max_uses : undefined);
    if (uses === undefined) {
      return { why: `${name} without max_uses: its cost cannot be bounded` };
    }
    if (rule.kind === "fee") tally.maxCalls[rule.fee] = (tally.maxCalls[rule.fee] ?? 0) + uses;
    tally.uses += uses;
  }
  return tally;
}

/**
 * The server-tool facts of one request body. Anthropic bounds each server tool by its own
 * `max_uses`; the Responses API bounds all built-in tool calls together by `max_tool_calls`,
 * which is reserved for each fee-charging tool enabled (any one of them could take all the
 * calls; reserving each is more than the worst case, never less). Without the bound, the
 * request is refused. A server tool also makes the provider run the model again after each
 * call, so the facts carry the most model turns: the call limit + 1.
 */
export function readServerTools(
  api: LlmApi,
  provider: ProviderId,
  body: JsonObject,
): ServerToolFacts {
  const search = api === "chat_completions" ? chatSearch(provider, body) : undefined;
  if (search?.ok === false) return search;
  // Anthropic's MCP connector: the provider calls the servers in a loop with no limit to set.
  const mcp = body.mcp_servers;
  if (api === "anthropic_messages" && (Array.isArray(mcp) ? mcp.length > 0 : isObject(mcp))) {
    return { ok: false, why: "mcp_servers: their tool calls have no limit" };
  }
  const tools = Array.isArray(body.tools) ? (body.tools as unknown[]) : [];
  const tally = tallyTools(api, provider, tools);
  if ("why" in tally) return { ok: false, why: tally.why };
  const { nanoPerCall, maxCalls } = tally;
  let modelTurns = search?.modelTurns;
  if (api === "anthropic_messages" && tally.server) modelTurns = tally.uses + 1;
  if (api === "responses" && tally.server) {
    const calls = limit(body.max_tool_calls);
    if (calls === undefined) {
      return {
        ok: false,
        why: "built-in tools without max_tool_calls: their cost cannot be bounded",
      };
    }
    for (const fee of Object.keys(nanoPerCall) as ToolFee[]) maxCalls[fee] = calls;
    modelTurns = calls + 1;
  }
  const turns = modelTurns === undefined ? {} : { modelTurns };
  return search === undefined
    ? { ok: true, nanoPerCall, maxCalls, ...turns }
    : { ...search, nanoPerCall, maxCalls, ...turns };
}

/**
 * The model's pricing with the prices of the tools this request enables: per call, the dearer of
 * ours and the table's for the model; a fixed fee is charged per request. Only enabled tools
 * get a price, so a response that reports calls of another tool cannot be priced and is charged
 * its whole reservation.
 */
export function withToolPrices<P extends PricingFees>(
  pricing: P,
  tools: {
    readonly nanoPerCall: Readonly<Partial<Record<ToolFee, number>>>;
    readonly fixedNano?: number;
  },
): P {
  const prices: Partial<Record<ToolFee, number>> = {};
  for (const [fee, price] of Object.entries(tools.nanoPerCall) as [ToolFee, number][]) {
    prices[fee] = Math.max(price, pricing.toolNanoPerCall?.[fee] ?? 0);
  }
  const fixed = tools.fixedNano ?? 0;
  return {
    ...pricing,
    toolNanoPerCall: prices,
    ...(fixed === 0 ? {} : { toolFixedNano: fixed }),
  };
}

/** The parts of a ModelPricing that tools change. */
interface PricingFees {
  readonly toolNanoPerCall?: Readonly<Partial<Record<ToolFee, number>>>;
  readonly toolFixedNano?: number;
}
