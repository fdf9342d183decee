/**
 * How each provider reports token usage, JSON body or stream event alike. Every reader takes
 * parsed JSON of unknown shape and never throws: a shape it does not know yields no usage, and
 * the caller then charges the full reservation.
 */
import type { LlmRequest } from "./llm-request.js";
import type { Modality, UsageParts } from "./prices.js";
import type { ProviderId } from "./providers.js";

/**
 * Token usage of one call, split the way prices are: each token is counted in one of the four
 * totals only; `UsageParts` then says which of them were audio, image or video, and what
 * server-tool calls came on top (genai-prices' model of usage).
 */
export interface Usage extends UsageParts {
  /** Input tokens at the full input price (cache reads and writes excluded). */
  readonly inputTokens: number;
  /** Output tokens, reasoning/thinking included: all are billed at the output price. */
  readonly outputTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  /** Informational: the part of `outputTokens` spent reasoning. */
  readonly reasoningTokens: number;
  /** What the provider itself says the call cost (OpenRouter `usage.cost`, xAI ticks), in nano-USD. */
  readonly providerCostNanoUsd?: number;
}

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads usage from one parsed JSON value: a whole response body, or one stream event. */
export interface UsageFormat {
  /**
   * Takes one value. Returns true when the value is the usage-only chunk that was requested by
   * injection (the caller then hides that event from the client).
   */
  read(value: unknown): boolean;
  /** The stream's `data: [DONE]` sentinel. */
  done(): void;
  usage(): Usage | undefined;
  /** The response reached the end its format documents. */
  complete(): boolean;
}

/** Absent or null → undefined; a non-negative safe integer → itself; anything else → NaN. */
function count(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0
    ? value
    : Number.NaN;
}

function field(object: unknown, key: string): unknown {
  return isObject(object) ? object[key] : undefined;
}

/**
 * A Usage only when every count is a non-negative safe integer: an inconsistent report (cached
 * tokens above the prompt, a string where a number belongs) is treated as no report at all.
 */
function checkedUsage(usage: Usage): Usage | undefined {
  const counts = [
    usage.inputTokens,
    usage.outputTokens,
    usage.cacheReadTokens,
    usage.cacheWriteTokens,
    usage.reasoningTokens,
    ...[
      usage.promptByModality,
      usage.cachedByModality,
      usage.outputByModality,
      usage.toolCalls,
    ].flatMap((parts) => Object.values(parts ?? {})),
  ];
  return counts.every((value) => Number.isSafeInteger(value) && value >= 0) ? usage : undefined;
}

type Counts = Partial<Record<Modality, number>>;

/** The non-zero entries, or nothing: a usage without media reads as it always did. */
function nonZero<K extends string>(
  counts: Partial<Record<K, number>>,
): Partial<Record<K, number>> | undefined {
  const kept = Object.entries(counts).filter(([, value]) => value !== 0 && value !== undefined);
  return kept.length === 0 ? undefined : (Object.fromEntries(kept) as Partial<Record<K, number>>);
}

/** `{ promptByModality: … }` when there is something to say, else `{}`. */
function parts(key: keyof UsageParts, counts: Record<string, number | undefined>): UsageParts {
  const kept = nonZero(counts);
  return kept === undefined ? {} : { [key]: kept };
}

/** OpenAI's `*_tokens_details`: `audio_tokens` and `image_tokens` (NaN when malformed). */
function openAiModalities(details: unknown): Counts {
  return {
    audio: count(field(details, "audio_tokens")) ?? 0,
    image: count(field(details, "image_tokens")) ?? 0,
  };
}

const GEMINI_MODALITY: Readonly<Record<string, Modality>> = {
  AUDIO: "audio",
  IMAGE: "image",
  VIDEO: "video",
};

/**
 * Gemini's `[{ modality, tokenCount }]` lists, summed per modality; TEXT and DOCUMENT are billed
 * as text. Undefined when the list is absent; NaN counts when it is malformed.
 */
function geminiModalities(...lists: unknown[]): Counts | undefined {
  if (lists.every((list) => list === undefined || list === null)) return undefined;
  const sums: Counts = {};
  for (const list of lists) {
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) return { audio: Number.NaN };
    for (const entry of list) {
      const modality = GEMINI_MODALITY[String(field(entry, "modality"))];
      const tokens = count(field(entry, "tokenCount")) ?? 0;
      if (modality !== undefined) sums[modality] = (sums[modality] ?? 0) + tokens;
    }
  }
  return sums;
}

const NANO_DIGITS = 9;
const DECIMAL_USD = /^(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * A USD amount as nano-USD, rounded up (a fraction of a nano-dollar is charged, never dropped).
 * The decimal text is converted with integers: a JSON number is first turned back into its
 * shortest decimal spelling (`String(0.00014)` is "0.00014"), which is the provider's own text
 * whenever it had at most 15 significant digits.
 */
export function usdToNanoCeil(value: unknown): number | undefined {
  let text: string;
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) return undefined;
    text = String(value);
  } else if (typeof value === "string") {
    text = value.trim();
  } else {
    return undefined;
  }
  const match = DECIMAL_USD.exec(text);
  if (match === null) return undefined;
  const [, whole = "", fraction = "", exponentText = "0"] = match;
  const shift = Number(exponentText) - fraction.length + NANO_DIGITS;
  if (Math.abs(shift) > 400) return shift < 0 ? 1 : undefined;
  const digits = BigInt(whole + fraction);
  let nano: bigint;
  if (shift >= 0) {
    nano = digits * 10n ** BigInt(shift);
  } else {
    const divisor = 10n ** BigInt(-shift);
    nano = (digits + divisor - 1n) / divisor;
  }
  return nano <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(nano) : undefined;
}

/** xAI reports cost in ticks of 1e-10 USD. */
function xaiTicksToNano(value: unknown): number | undefined {
  const ticks = count(value);
  if (ticks === undefined || Number.isNaN(ticks)) return undefined;
  return Number((BigInt(ticks) + 9n) / 10n);
}

/** OpenRouter's charge; with a provider key of one's own (BYOK), the upstream bill comes on top. */
function openRouterCost(usage: JsonObject): number | undefined {
  const cost = usdToNanoCeil(usage.cost);
  if (cost === undefined || usage.is_byok !== true) return cost;
  const upstream = usdToNanoCeil(field(usage.cost_details, "upstream_inference_cost"));
  return upstream === undefined ? undefined : cost + upstream;
}

function providerCost(provider: ProviderId, usage: JsonObject): number | undefined {
  if (provider === "openrouter") return openRouterCost(usage);
  if (provider === "xai") return xaiTicksToNano(usage.cost_in_usd_ticks);
  return undefined;
}

/**
 * An OpenAI-style `usage` object (chat, completions, embeddings, and every OpenAI-compatible
 * host). Cached prompt tokens are moved out of the input, never counted twice; DeepSeek names
 * them `prompt_cache_hit_tokens`. Reasoning is normally inside `completion_tokens`; xAI counts it
 * beside them, which shows as `total_tokens` = prompt + completion + reasoning.
 */
export function openAiUsage(
  usage: unknown,
  provider: ProviderId,
  outputOptional: boolean,
): Usage | undefined {
  if (!isObject(usage)) return undefined;
  const prompt = count(usage.prompt_tokens);
  let completion = count(usage.completion_tokens);
  if (prompt === undefined) return undefined;
  if (completion === undefined) {
    if (!outputOptional) return undefined;
    completion = 0;
  }
  const cached =
    count(usage.prompt_cache_hit_tokens) ??
    count(field(usage.prompt_tokens_details, "cached_tokens")) ??
    0;
  const reasoning = count(field(usage.completion_tokens_details, "reasoning_tokens")) ?? 0;
  const total = count(usage.total_tokens);
  const reasoningBeside =
    reasoning > 0 &&
    (provider === "xai" ||
      (total === prompt + completion + reasoning && total !== prompt + completion));
  const cost = providerCost(provider, usage);
  return checkedUsage({
    inputTokens: prompt - cached,
    outputTokens: reasoningBeside ? completion + reasoning : completion,
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
    reasoningTokens: reasoning,
    ...parts("promptByModality", openAiModalities(usage.prompt_tokens_details)),
    ...parts("outputByModality", openAiModalities(usage.completion_tokens_details)),
    ...(cost === undefined ? {} : { providerCostNanoUsd: cost }),
  });
}

/** Server-tool calls of a Responses API `output` list: one item per call, whatever it found. */
const RESPONSES_TOOL_ITEMS: Readonly<Record<string, "web_search" | "file_search">> = {
  web_search_call: "web_search",
  file_search_call: "file_search",
};

function responsesToolCalls(output: unknown): Record<string, number> {
  const calls: Record<string, number> = {};
  if (!Array.isArray(output)) return calls;
  for (const item of output) {
    const tool = RESPONSES_TOOL_ITEMS[String(field(item, "type"))];
    if (tool !== undefined) calls[tool] = (calls[tool] ?? 0) + 1;
  }
  return calls;
}

/**
 * The Responses API's `usage`: input includes cached tokens, output includes reasoning. Its
 * server-tool calls are not in `usage` but in the response's `output` items (`web_search_call`,
 * `file_search_call`), one item per billed call.
 */
export function responsesUsage(usage: unknown, output?: unknown): Usage | undefined {
  if (!isObject(usage)) return undefined;
  const input = count(usage.input_tokens);
  const outputTokens = count(usage.output_tokens);
  if (input === undefined || outputTokens === undefined) return undefined;
  const cached = count(field(usage.input_tokens_details, "cached_tokens")) ?? 0;
  return checkedUsage({
    inputTokens: input - cached,
    outputTokens,
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
    reasoningTokens: count(field(usage.output_tokens_details, "reasoning_tokens")) ?? 0,
    ...parts("promptByModality", openAiModalities(usage.input_tokens_details)),
    ...parts("outputByModality", openAiModalities(usage.output_tokens_details)),
    ...parts("toolCalls", responsesToolCalls(output)),
  });
}

/** Anthropic's counts as last reported; `input_tokens` already excludes cache reads and writes. */
interface AnthropicTotals {
  input?: number;
  output?: number;
  cacheWrite?: number;
  cacheRead?: number;
  /** `server_tool_use.web_search_requests`: searches billed per 1,000 on top of tokens. */
  webSearches?: number;
}

/**
 * Overwrites the totals with each count the report carries. `message_start` and `message_delta`
 * both carry running totals, so a later report replaces an earlier one; adding would double count.
 */
function overwriteAnthropicTotals(totals: AnthropicTotals, usage: unknown): void {
  if (!isObject(usage)) return;
  const updates: [keyof AnthropicTotals, unknown][] = [
    ["input", usage.input_tokens],
    ["output", usage.output_tokens],
    ["cacheWrite", usage.cache_creation_input_tokens],
    ["cacheRead", usage.cache_read_input_tokens],
    ["webSearches", field(usage.server_tool_use, "web_search_requests")],
  ];
  for (const [key, value] of updates) {
    const tokens = count(value);
    if (tokens !== undefined) totals[key] = tokens;
  }
}

function anthropicUsage(totals: AnthropicTotals): Usage | undefined {
  if (totals.input === undefined || totals.output === undefined) return undefined;
  return checkedUsage({
    inputTokens: totals.input,
    outputTokens: totals.output,
    cacheReadTokens: totals.cacheRead ?? 0,
    cacheWriteTokens: totals.cacheWrite ?? 0,
    reasoningTokens: 0, // Anthropic bills thinking inside output_tokens and does not split it out
    ...parts("toolCalls", { web_search: totals.webSearches }),
  });
}

/**
 * Gemini's `usageMetadata`: `promptTokenCount` includes cached tokens; thoughts are billed as
 * output but counted beside `candidatesTokenCount`; tool-use prompt tokens (search results,
 * code execution) are billed as input but counted beside the prompt.
 */
export function geminiUsage(metadata: unknown): Usage | undefined {
  if (!isObject(metadata)) return undefined;
  const prompt = count(metadata.promptTokenCount);
  if (prompt === undefined) return undefined;
  const cached = count(metadata.cachedContentTokenCount) ?? 0;
  const toolPrompt = count(metadata.toolUsePromptTokenCount) ?? 0;
  const candidates = count(metadata.candidatesTokenCount) ?? 0;
  const thoughts = count(metadata.thoughtsTokenCount) ?? 0;
  const promptParts = parts(
    "promptByModality",
    geminiModalities(metadata.promptTokensDetails, metadata.toolUsePromptTokensDetails) ?? {},
  );
  // Gemini lists cached tokens by modality whenever it caches: a modality it does not list there
  // had none cached. Without the list, the split is unknown and priced as such (prices.ts).
  const cachedParts = geminiModalities(metadata.cacheTokensDetails);
  const cachedSplit =
    promptParts.promptByModality === undefined || cachedParts === undefined
      ? {}
      : { cachedByModality: { audio: 0, image: 0, video: 0, ...cachedParts } };
  return checkedUsage({
    inputTokens: prompt - cached + toolPrompt,
    outputTokens: candidates + thoughts,
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
    reasoningTokens: thoughts,
    ...promptParts,
    ...cachedSplit,
    ...parts("outputByModality", geminiModalities(metadata.candidatesTokensDetails) ?? {}),
  });
}

/** A Gemini response chunk that ends the response: a finish reason, or a blocked prompt. */
function isFinalGeminiChunk(chunk: JsonObject): boolean {
  const candidates = chunk.candidates;
  if (Array.isArray(candidates)) {
    const finished = candidates.some((candidate) => {
      const reason = field(candidate, "finishReason");
      return typeof reason === "string" && reason !== "" && reason !== "FINISH_REASON_UNSPECIFIED";
    });
    if (finished) return true;
  }
  return typeof field(chunk.promptFeedback, "blockReason") === "string";
}

/** Shared state: the last usage seen (last wins) and whether the end was reached. */
class Tally {
  last: Usage | undefined;
  ended = false;

  /** Records a report; an unreadable report also clears what came before it, failing closed. */
  record(usage: Usage | undefined): void {
    this.last = usage;
  }
}

/** OpenAI-compatible chat and completions: usage in `usage` (or Groq's `x_groq.usage`), `[DONE]` ends. */
function openAiFormat(request: LlmRequest, usageInjected: boolean): UsageFormat {
  const tally = new Tally();
  const outputOptional = request.api === "embeddings";
  return {
    read(value) {
      if (!isObject(value)) return false;
      if (isObject(value.usage))
        tally.record(openAiUsage(value.usage, request.provider, outputOptional));
      const groq = field(value.x_groq, "usage");
      if (isObject(groq)) tally.record(openAiUsage(groq, request.provider, outputOptional));
      // The chunk `include_usage` adds: no choices, just usage. Hidden when the client did not ask.
      const choices = value.choices;
      return (
        usageInjected && Array.isArray(choices) && choices.length === 0 && isObject(value.usage)
      );
    },
    done() {
      tally.ended = true;
    },
    usage: () => tally.last,
    complete: () => tally.ended,
  };
}

const RESPONSES_END = new Set(["response.completed", "response.incomplete", "response.failed"]);

/** The Responses API: a whole `response` object (JSON), or its terminal event (stream). */
function responsesFormat(): UsageFormat {
  const tally = new Tally();
  return {
    read(value) {
      if (!isObject(value)) return false;
      if (typeof value.type === "string" && RESPONSES_END.has(value.type)) {
        tally.record(
          responsesUsage(field(value.response, "usage"), field(value.response, "output")),
        );
        tally.ended = true;
      } else if (value.object === "response") {
        tally.record(responsesUsage(value.usage, value.output));
        tally.ended = true;
      }
      return false;
    },
    done() {
      // The Responses API has no [DONE] sentinel; its terminal events end it.
    },
    usage: () => tally.last,
    complete: () => tally.ended,
  };
}

/** Anthropic messages: a whole `message` (JSON) or message_start / message_delta / message_stop. */
function anthropicFormat(): UsageFormat {
  let totals: AnthropicTotals = {};
  let ended = false;
  return {
    read(value) {
      if (!isObject(value)) return false;
      switch (value.type) {
        case "message":
          totals = {};
          overwriteAnthropicTotals(totals, value.usage);
          ended = true;
          break;
        case "message_start":
          totals = {};
          overwriteAnthropicTotals(totals, field(value.message, "usage"));
          break;
        case "message_delta":
          overwriteAnthropicTotals(totals, value.usage);
          break;
        case "message_stop":
          ended = true;
          break;
      }
      return false;
    },
    done() {
      // Anthropic has no [DONE] sentinel; message_stop ends it.
    },
    usage: () => anthropicUsage(totals),
    complete: () => ended,
  };
}

/** Gemini: each chunk's `usageMetadata` is a running total, so the last one wins. */
function geminiFormat(): UsageFormat {
  const tally = new Tally();
  return {
    read(value) {
      // A JSON (non-SSE) stream is one array of chunks.
      const chunks = Array.isArray(value) ? value : [value];
      for (const chunk of chunks) {
        if (!isObject(chunk)) continue;
        if (chunk.usageMetadata !== undefined) tally.record(geminiUsage(chunk.usageMetadata));
        if (isFinalGeminiChunk(chunk)) tally.ended = true;
      }
      return false;
    },
    done() {
      // Gemini has no [DONE] sentinel; the chunk with a finish reason ends it.
    },
    usage: () => tally.last,
    complete: () => tally.ended,
  };
}

/** Calls that are not a known model API: nothing is read. */
function noUsageFormat(): UsageFormat {
  return {
    read: () => false,
    done: () => undefined,
    usage: () => undefined,
    complete: () => false,
  };
}

/** The usage format of one request's response. */
export function usageFormatFor(request: LlmRequest, usageInjected: boolean): UsageFormat {
  switch (request.api) {
    case "chat_completions":
    case "completions":
      return openAiFormat(request, usageInjected);
    case "embeddings":
      // Gemini's native embedContent answers carry no usage at all: the reservation stands.
      return openAiFormat(request, false);
    case "responses":
      return responsesFormat();
    case "anthropic_messages":
      return anthropicFormat();
    case "gemini_generate":
    case "gemini_stream":
      return geminiFormat();
    case "other":
      return noUsageFormat();
  }
}
