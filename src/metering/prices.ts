/**
 * What a model costs, in integer nano-USD per million tokens, and what a usage costs.
 *
 * Prices come from the policy's `prices` overrides first, then from the offline table of
 * `@pydantic/genai-prices` (pinned exactly). That package ships its data inside its bundle and
 * only ever fetches when a caller installs an updater with `updatePrices()`; nothing in
 * Vallignus calls it, so the table in use is the one that was installed, with no network, ever.
 *
 * Every choice below leans to the side that cannot overrun a budget: a price we cannot read
 * exactly is no price (the proxy denies `model_price_unknown`), and where the table has several
 * prices for one component (context tiers, time-of-day windows, 5-minute vs 1-hour cache
 * writes) we take the highest.
 */
import type { ModelInfo, ModelPrice } from "@pydantic/genai-prices";

import { parseUsdToNano, type PolicyRules } from "../policy/index.js";
import type { ProviderId } from "./providers.js";

let priceTable: typeof import("@pydantic/genai-prices") | undefined;

/**
 * Loads the offline price table. It is large, so it is loaded once, on the first metered call
 * (or by whoever prices first), not at every CLI start.
 */
export async function loadPriceTable(): Promise<void> {
  priceTable ??= await import("@pydantic/genai-prices");
}

/** Media that the price table may price apart from text. */
export type Modality = "audio" | "image" | "video";

export const MODALITIES: readonly Modality[] = ["audio", "image", "video"];

/** Server-side tools billed per call on top of tokens (see server-tools.ts). */
export type ToolFee = "web_search" | "file_search";

/** The prices of one modality's tokens, nano-USD per million. */
export interface ModalityPricing {
  readonly inputNanoPerMTok: number;
  readonly cacheReadNanoPerMTok: number;
  readonly outputNanoPerMTok: number;
}

/** What one model costs. Prices are integer nano-USD per million tokens (USD/MTok × 1e9). */
export interface ModelPricing {
  readonly source: "policy" | "table";
  readonly inputNanoPerMTok: number;
  readonly outputNanoPerMTok: number;
  readonly cacheReadNanoPerMTok: number;
  readonly cacheWriteNanoPerMTok: number;
  /** The most output tokens one completion of this model can produce, when known. */
  readonly maxOutputTokens: number | undefined;
  /**
   * Audio, image and video tokens where the table prices them apart (gpt-audio: audio output
   * $64/M against $10/M for text). A modality without its own price is billed as text, as
   * genai-prices bills it; absent altogether means every modality is priced as text.
   */
  readonly modalities?: Readonly<Partial<Record<Modality, ModalityPricing>>>;
  /** Reasoning output where the table prices it apart from other output. */
  readonly outputReasoningNanoPerMTok?: number;
  /** A fee per request (the table's `requests_kcount`), nano-USD. */
  readonly requestNano?: number;
  /**
   * A server-tool fee this request costs whatever its usage says (a chat search model's one
   * search), nano-USD. Apart from `requestNano` because it belongs to the request, not the
   * model: the cheapest next call to the model does not pay it.
   */
  readonly toolFixedNano?: number;
  /**
   * Nano-USD per server-tool call. From the table (`web_searches_kcount`…) as looked up; at
   * admission it becomes the price of the tools the request enables (server-tools.ts). A call
   * that reports a tool without a price here is charged its whole reservation.
   */
  readonly toolNanoPerCall?: Readonly<Partial<Record<ToolFee, number>>>;
}

/**
 * Token counts of one call, as disjoint parts: `inputTokens` are the prompt tokens billed at the
 * full input price, i.e. NOT counting the ones read from or written to the prompt cache (OpenAI's
 * `prompt_tokens` includes its `cached_tokens`: subtract them; Anthropic's `input_tokens` already
 * excludes both cache counts).
 */
export interface TokenUsage extends UsageParts {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  /** The part of `outputTokens` spent reasoning (only priced apart where the table says so). */
  readonly reasoningTokens?: number;
}

/**
 * What a usage says beyond its four totals, each present only when the provider reported it. This
 * is genai-prices' model of usage (`input_audio_tokens` ⊂ `input_tokens`, `cache_audio_read_tokens`
 * ⊂ both, `output_audio_tokens` ⊂ `output_tokens`, `web_searches` beside them), kept as our own
 * fields because the package prices in floating-point USD and exports no unit model to reuse.
 */
export interface UsageParts {
  /** Prompt tokens of a modality, cached or not: parts of inputTokens + cacheReadTokens. */
  readonly promptByModality?: Readonly<Partial<Record<Modality, number>>>;
  /** Of those, the ones read from the cache, when the provider splits them (Gemini does). */
  readonly cachedByModality?: Readonly<Partial<Record<Modality, number>>>;
  /** Output tokens of a modality: parts of outputTokens. */
  readonly outputByModality?: Readonly<Partial<Record<Modality, number>>>;
  /** Server-tool calls the response reports. */
  readonly toolCalls?: Readonly<Partial<Record<ToolFee, number>>>;
}

/** Our provider ids -> the package's provider ids. Azure's entry falls back to OpenAI's prices. */
const TABLE_PROVIDER: Readonly<Record<ProviderId, string>> = {
  openai: "openai",
  anthropic: "anthropic",
  gemini: "google",
  groq: "groq",
  mistral: "mistral",
  deepseek: "deepseek",
  openrouter: "openrouter",
  xai: "x-ai",
  together: "together",
  fireworks: "fireworks",
  azure: "azure",
  // Vertex AI bills Gemini at the Gemini API's list prices; the package prices both as "google".
  vertex: "google",
};

/**
 * OpenRouter names models `vendor/model`. Its own table lags new models, and for first-party
 * models OpenRouter charges the vendor's list price, so an OpenRouter model missing from its
 * table is priced as the vendor's. Vendors whose models many hosts serve at different prices
 * (meta-llama, qwen…) are deliberately absent: those stay unpriced.
 */
const OPENROUTER_VENDOR: Readonly<Record<string, string>> = {
  openai: "openai",
  anthropic: "anthropic",
  google: "google",
  "x-ai": "x-ai",
  mistralai: "mistral",
  deepseek: "deepseek",
};

/**
 * Documented maximum output tokens per completion, for when the request sets no limit; the
 * package's data has context windows but no output limits. Sources: each provider's model pages
 * (platform.openai.com/docs/models, docs.anthropic.com "Models overview", ai.google.dev
 * "Gemini models", api-docs.deepseek.com "Models & Pricing"). Where a limit changed between
 * snapshots we keep the largest (gpt-4o-2024-05-13 allowed 4,096, later snapshots 16,384), and
 * claude-3-7-sonnet carries its 128K beta limit rather than the 64K default. A model matches its
 * entry exactly, or with a dated/version suffix (`-2024-08-06`, `-20241022`, `-0613`, `-001`,
 * `-latest`, `@20240229`), never by a looser prefix, so a new model is never given an older
 * one's limit. Without an entry, the table's context window bounds the output (input and output
 * share it), and without that, the caller's default applies.
 */
const KNOWN_MAX_OUTPUT_TOKENS: ReadonlyMap<string, number> = new Map([
  ["gpt-3.5-turbo", 4_096],
  ["gpt-4", 8_192],
  ["gpt-4-turbo", 4_096],
  ["gpt-4o", 16_384],
  ["gpt-4o-mini", 16_384],
  ["chatgpt-4o-latest", 16_384],
  ["gpt-4.1", 32_768],
  ["gpt-4.1-mini", 32_768],
  ["gpt-4.1-nano", 32_768],
  ["gpt-5", 128_000],
  ["gpt-5-mini", 128_000],
  ["gpt-5-nano", 128_000],
  ["o1", 100_000],
  ["o1-mini", 65_536],
  ["o1-preview", 32_768],
  ["o3", 100_000],
  ["o3-mini", 100_000],
  ["o4-mini", 100_000],
  ["claude-3-haiku", 4_096],
  ["claude-3-sonnet", 4_096],
  ["claude-3-opus", 4_096],
  ["claude-3-5-haiku", 8_192],
  ["claude-3-5-sonnet", 8_192],
  ["claude-3-7-sonnet", 128_000],
  ["claude-sonnet-4", 64_000],
  ["claude-sonnet-4-0", 64_000],
  ["claude-sonnet-4-5", 64_000],
  ["claude-opus-4", 32_000],
  ["claude-opus-4-0", 32_000],
  ["claude-opus-4-1", 32_000],
  ["claude-opus-4-5", 64_000],
  ["claude-haiku-4-5", 64_000],
  ["gemini-1.5-flash", 8_192],
  ["gemini-1.5-flash-8b", 8_192],
  ["gemini-1.5-pro", 8_192],
  ["gemini-2.0-flash", 8_192],
  ["gemini-2.0-flash-lite", 8_192],
  ["gemini-2.5-flash", 65_536],
  ["gemini-2.5-flash-lite", 65_536],
  ["gemini-2.5-pro", 65_536],
  ["deepseek-chat", 8_192],
  ["deepseek-reasoner", 64_000],
]);

const VERSION_SUFFIX = /^(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-\d{3}|-latest|@\d{8})$/;

const NANO_PER_USD_DIGITS = 9;

/**
 * Converts a table price (USD per million tokens, a JS number) to nano-USD per million tokens,
 * rounding UP to the next nano. The number is read through its shortest decimal form (what
 * `String(n)` prints, which is the decimal the data was written with: 0.15 -> "0.15"), so no
 * binary-float error enters. Undefined for a negative, non-finite or unsafely large value.
 */
export function usdPerMTokToNano(usdPerMTok: number): number | undefined {
  if (!Number.isFinite(usdPerMTok) || usdPerMTok < 0) return undefined;
  const match = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(usdPerMTok));
  if (match === null) return undefined;
  const [, whole = "", fraction = "", exponent = "0"] = match;
  const digits = whole + fraction;
  // Position of the decimal point in `digits` once the value is scaled to nano-USD.
  const point = whole.length + Number(exponent) + NANO_PER_USD_DIGITS;
  if (point > 30) return undefined;
  const kept = point <= 0 ? "0" : digits.slice(0, point).padEnd(point, "0");
  const dropped = point <= 0 ? digits : digits.slice(point);
  const nano = BigInt(kept) + (/[1-9]/.test(dropped) ? 1n : 0n);
  return nano <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(nano) : undefined;
}

/** Gemini's REST paths and some SDKs name models `models/<id>`; the table and limits use `<id>`. */
function tableModelId(provider: ProviderId, model: string): string {
  const trimmed = model.trim();
  return (provider === "gemini" || provider === "vertex") && trimmed.startsWith("models/")
    ? trimmed.slice("models/".length)
    : trimmed;
}

/** The documented output limit of a model, or undefined. */
function knownMaxOutputTokens(model: string): number | undefined {
  const id = model.toLowerCase();
  // OpenRouter and Groq prefix a vendor (`openai/gpt-4o`); the limit belongs to the model.
  const bare = id.slice(id.lastIndexOf("/") + 1);
  const exact = KNOWN_MAX_OUTPUT_TOKENS.get(bare);
  if (exact !== undefined) return exact;
  for (const [base, limit] of KNOWN_MAX_OUTPUT_TOKENS) {
    if (bare.startsWith(base) && VERSION_SUFFIX.test(bare.slice(base.length))) return limit;
  }
  return undefined;
}

interface TableEntry {
  readonly model: ModelInfo;
  /** The price map in force at the given time, as the package chose it. */
  readonly priceAt: ModelPrice;
}

/** The package's own model matching (aliases, date spellings, fallback providers). */
function lookUp(tableProvider: string, model: string, at: Date): TableEntry | undefined {
  try {
    // An empty usage prices nothing; we only want the matched model and its price map.
    if (priceTable === undefined)
      throw new Error("the price table is not loaded (call loadPriceTable)");
    const result = priceTable.calcPrice({}, model, { providerId: tableProvider, timestamp: at });
    return result === null ? undefined : { model: result.model, priceAt: result.model_price };
  } catch {
    // A malformed table entry or an invalid date: no price, so the request is denied.
    return undefined;
  }
}

function lookUpTable(provider: ProviderId, model: string, at: Date): TableEntry | undefined {
  const found = lookUp(TABLE_PROVIDER[provider], model, at);
  if (found !== undefined || provider !== "openrouter") return found;
  // A `:variant` suffix (`:nitro`, `:online`, `:free`…) changes routing or adds fees: no fallback.
  const match = /^([a-z0-9-]+)\/([^/:]+)$/i.exec(model);
  const vendor = match?.[1] === undefined ? undefined : OPENROUTER_VENDOR[match[1].toLowerCase()];
  return vendor === undefined || match?.[2] === undefined
    ? undefined
    : lookUp(vendor, match[2], at);
}

/**
 * The price maps that may apply to a call that starts at `at`: the one in force then, plus every
 * time-of-day window of the model (DeepSeek's off-peak discounts, peak surcharges), because a
 * call reserved in one window can finish in the next and must not cost more than it reserved.
 */
function candidatePrices(entry: TableEntry): ModelPrice[] {
  const { prices } = entry.model;
  if (!Array.isArray(prices)) return [entry.priceAt];
  const windows = prices
    .filter((conditional) => conditional.constraint?.type === "time_of_date")
    .map((conditional) => conditional.prices);
  return [entry.priceAt, ...windows];
}

class UnreadablePrice extends Error {}

/** The highest price of one component across price maps and context tiers, in nano-USD/MTok. */
function highestNano(maps: readonly ModelPrice[], key: string): number | undefined {
  let highest: number | undefined;
  for (const map of maps) {
    const value: unknown = map[key];
    if (value === undefined) continue;
    for (const price of tierPrices(value)) {
      const nano = usdPerMTokToNano(price);
      if (nano === undefined) throw new UnreadablePrice(key);
      highest = highest === undefined ? nano : Math.max(highest, nano);
    }
  }
  return highest;
}

/** A flat price, or every tier of a tiered one (an upper bound needs the highest of them). */
function tierPrices(value: unknown): number[] {
  if (typeof value === "number") return [value];
  if (typeof value === "object" && value !== null && "base" in value && "tiers" in value) {
    const { base, tiers } = value;
    if (typeof base === "number" && Array.isArray(tiers)) {
      const prices = tiers.map((tier: unknown) =>
        typeof tier === "object" && tier !== null && "price" in tier ? tier.price : undefined,
      );
      if (prices.every((price) => typeof price === "number")) return [base, ...prices];
    }
  }
  throw new UnreadablePrice("tiers");
}

/**
 * The price keys this file reads. A model that the table prices by any other key (audio hours,
 * document pages, per-message fees…) has a cost we would not count, so it is unpriced.
 */
const READ_PRICE_KEYS: ReadonlySet<string> = new Set([
  "input_mtok",
  "output_mtok",
  "cache_read_mtok",
  "cache_write_mtok",
  "cache_write_1h_mtok",
  "output_reasoning_mtok",
  "requests_kcount",
  "web_searches_kcount",
  "storage_searches_kcount",
  ...MODALITIES.flatMap((m) => [`input_${m}_mtok`, `cache_${m}_read_mtok`, `output_${m}_mtok`]),
]);

/** A per-thousand price (`*_kcount`) as nano-USD for one, rounded up. */
function highestNanoEach(maps: readonly ModelPrice[], key: string): number | undefined {
  const perThousand = highestNano(maps, key);
  return perThousand === undefined ? undefined : Math.ceil(perThousand / 1_000);
}

/**
 * Each modality's prices, following genai-prices' rule that tokens without a price of their own
 * are billed as their parent: audio input without `input_audio_mtok` as input, cached audio
 * without `cache_audio_read_mtok` as cached input (or as audio input when the table has no cache
 * price). Where both parents are priced and the table names no price for the overlap, the
 * package refuses to price it; we take the dearer parent, an upper bound.
 */
function modalityPrices(
  maps: readonly ModelPrice[],
  text: ModalityPricing,
): Partial<Record<Modality, ModalityPricing>> | undefined {
  const tableCacheRead = highestNano(maps, "cache_read_mtok");
  const result: Partial<Record<Modality, ModalityPricing>> = {};
  for (const modality of MODALITIES) {
    const input = highestNano(maps, `input_${modality}_mtok`);
    const cacheRead = highestNano(maps, `cache_${modality}_read_mtok`);
    const output = highestNano(maps, `output_${modality}_mtok`);
    if (input === undefined && cacheRead === undefined && output === undefined) continue;
    const inherited =
      input === undefined
        ? text.cacheReadNanoPerMTok
        : tableCacheRead === undefined
          ? input
          : Math.max(input, tableCacheRead);
    result[modality] = {
      inputNanoPerMTok: input ?? text.inputNanoPerMTok,
      cacheReadNanoPerMTok: cacheRead ?? inherited,
      outputNanoPerMTok: output ?? text.outputNanoPerMTok,
    };
  }
  return Object.keys(result).length > 0 ? result : undefined;
}

function tablePriceExtras(maps: readonly ModelPrice[]): Partial<ModelPricing> {
  const reasoning = highestNano(maps, "output_reasoning_mtok");
  const requestNano = highestNanoEach(maps, "requests_kcount");
  const webSearch = highestNanoEach(maps, "web_searches_kcount");
  const fileSearch = highestNanoEach(maps, "storage_searches_kcount");
  const tools: Partial<Record<ToolFee, number>> = {
    ...(webSearch === undefined ? {} : { web_search: webSearch }),
    ...(fileSearch === undefined ? {} : { file_search: fileSearch }),
  };
  return {
    ...(reasoning === undefined ? {} : { outputReasoningNanoPerMTok: reasoning }),
    ...(requestNano === undefined ? {} : { requestNano }),
    ...(Object.keys(tools).length === 0 ? {} : { toolNanoPerCall: tools }),
  };
}

function fromTable(
  entry: TableEntry,
  maxOutputTokens: number | undefined,
): ModelPricing | undefined {
  const maps = candidatePrices(entry);
  const unread = maps.some((map) =>
    Object.entries(map).some(([key, value]) => value !== undefined && !READ_PRICE_KEYS.has(key)),
  );
  if (unread) return undefined;
  try {
    const input = highestNano(maps, "input_mtok");
    // Embedding models have no output tokens, so the table lists no output price for them;
    // any other model without one is unpriced rather than given free output.
    const output =
      highestNano(maps, "output_mtok") ?? (/embed/i.test(entry.model.id) ? 0 : undefined);
    if (input === undefined || output === undefined) return undefined;
    // Our usage does not say which cache writes were 5-minute and which 1-hour: take the dearer.
    const writes = [
      highestNano(maps, "cache_write_mtok"),
      highestNano(maps, "cache_write_1h_mtok"),
    ];
    const cacheWrite = writes.filter((price) => price !== undefined);
    const text = {
      inputNanoPerMTok: input,
      outputNanoPerMTok: output,
      // Without a cache price the provider bills those tokens as ordinary input.
      cacheReadNanoPerMTok: highestNano(maps, "cache_read_mtok") ?? input,
    };
    const modalities = modalityPrices(maps, text);
    return {
      source: "table",
      ...text,
      cacheWriteNanoPerMTok: cacheWrite.length > 0 ? Math.max(...cacheWrite) : input,
      maxOutputTokens,
      ...(modalities === undefined ? {} : { modalities }),
      ...tablePriceExtras(maps),
    };
  } catch (error) {
    if (error instanceof UnreadablePrice) return undefined;
    throw error;
  }
}

/**
 * The price of `model` at `provider` for a call starting at `at`: the policy's override when it
 * names this model, else the offline table; undefined when neither prices it (deny
 * `model_price_unknown`). Overrides price cache reads and writes like input, since a policy
 * cannot name cache prices. Where the table has tiers (by context length) or time-of-day windows,
 * each component is the highest of them: an upper bound, so reservations hold (the price of a
 * call below the tier threshold is overstated, never understated).
 */
export function findPricing(
  provider: ProviderId,
  model: string,
  overrides: PolicyRules["prices"],
  at: Date,
): ModelPricing | undefined {
  const tableId = tableModelId(provider, model);
  if (tableId === "") return undefined;
  const override = Object.hasOwn(overrides, model)
    ? overrides[model]
    : Object.hasOwn(overrides, tableId)
      ? overrides[tableId]
      : undefined;
  const entry = lookUpTable(provider, tableId, at);
  const maxOutputTokens = knownMaxOutputTokens(tableId) ?? entry?.model.context_window;
  if (override !== undefined) {
    const input = parseUsdToNano(override.input_usd_per_mtok);
    const output = parseUsdToNano(override.output_usd_per_mtok);
    // A policy price we cannot read is not silently replaced by the table's: fail closed.
    if (input === undefined || output === undefined) return undefined;
    return {
      source: "policy",
      inputNanoPerMTok: input,
      outputNanoPerMTok: output,
      cacheReadNanoPerMTok: input,
      cacheWriteNanoPerMTok: input,
      maxOutputTokens,
    };
  }
  return entry === undefined ? undefined : fromTable(entry, maxOutputTokens);
}

/**
 * The context window (input + output tokens) the table gives for a model, or undefined. It
 * bounds the input of a request whose prompt is not all in its body (a `previous_response_id`,
 * a cached-content name, a file id, a server-side tool that fetches pages).
 */
export function findContextWindow(
  provider: ProviderId,
  model: string,
  at: Date,
): number | undefined {
  return lookUpTable(provider, tableModelId(provider, model), at)?.model.context_window;
}

const TOKENS_PER_MTOK = 1_000_000n;

function tokenCount(name: string, value: number): bigint {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
  }
  return BigInt(value);
}

/** ceil(tokens × price / 1e6) in exact integer arithmetic. */
export function componentNanoUsd(tokens: bigint, nanoPerMTok: number): bigint {
  const product = tokens * tokenCount("price", nanoPerMTok);
  return (product + TOKENS_PER_MTOK - 1n) / TOKENS_PER_MTOK;
}

/** A modality's prices, or text's where the table has none of its own. */
export function modalityPricing(pricing: ModelPricing, modality: Modality): ModalityPricing {
  return pricing.modalities?.[modality] ?? pricing;
}

/** A component: tokens at a price per million. */
type Component = readonly [tokens: bigint, nanoPerMTok: number];

function part(
  parts: Readonly<Partial<Record<Modality, number>>> | undefined,
  modality: Modality,
): bigint {
  return tokenCount(`${modality} tokens`, parts?.[modality] ?? 0);
}

function nonNegative(name: string, value: bigint): bigint {
  if (value < 0n) throw new RangeError(`${name}: the parts exceed the total`);
  return value;
}

/**
 * The prompt side as priced components. A modality whose cached share the provider does not
 * report (OpenAI gives `audio_tokens` and `cached_tokens`, not cached audio) is priced at the
 * dearer of its cached and uncached prices, and text is then given the fewest cached tokens the
 * counts allow, at the dearer of its two prices: whatever the true split, no less is charged.
 */
function inputComponents(pricing: ModelPricing, usage: TokenUsage): Component[] {
  const uncached = tokenCount("inputTokens", usage.inputTokens);
  const cached = tokenCount("cacheReadTokens", usage.cacheReadTokens);
  const components: Component[] = [];
  let mediaUncached = 0n;
  let mediaCached = 0n;
  let unsplit = false;
  for (const modality of MODALITIES) {
    const prompt = part(usage.promptByModality, modality);
    if (prompt === 0n) continue;
    const prices = modalityPricing(pricing, modality);
    const known = usage.cachedByModality?.[modality];
    if (known === undefined && cached > 0n) {
      unsplit = true;
      const dearer = Math.max(prices.inputNanoPerMTok, prices.cacheReadNanoPerMTok);
      components.push([prompt, dearer]);
      mediaCached += prompt; // counted against the cache first: the fewest cached text tokens
      continue;
    }
    const cachedPart = part(usage.cachedByModality, modality);
    const uncachedPart = nonNegative(`${modality} tokens`, prompt - cachedPart);
    components.push(
      [uncachedPart, prices.inputNanoPerMTok],
      [cachedPart, prices.cacheReadNanoPerMTok],
    );
    mediaUncached += uncachedPart;
    mediaCached += cachedPart;
  }
  const textTotal = nonNegative("text input", uncached + cached - mediaUncached - mediaCached);
  if (!unsplit) nonNegative("cached input", cached - mediaCached);
  const cachedText = cached > mediaCached ? cached - mediaCached : 0n;
  const textPrice = unsplit
    ? Math.max(pricing.inputNanoPerMTok, pricing.cacheReadNanoPerMTok)
    : pricing.inputNanoPerMTok;
  components.push(
    [nonNegative("uncached text input", textTotal - cachedText), textPrice],
    [cachedText, pricing.cacheReadNanoPerMTok],
    [tokenCount("cacheWriteTokens", usage.cacheWriteTokens), pricing.cacheWriteNanoPerMTok],
  );
  return components;
}

/** The output side as priced components; reasoning apart only where the table prices it apart. */
function outputComponents(pricing: ModelPricing, usage: TokenUsage): Component[] {
  const components: Component[] = [];
  let media = 0n;
  for (const modality of MODALITIES) {
    const tokens = part(usage.outputByModality, modality);
    media += tokens;
    components.push([tokens, modalityPricing(pricing, modality).outputNanoPerMTok]);
  }
  const text = nonNegative("text output", tokenCount("outputTokens", usage.outputTokens) - media);
  const reasoningPrice = pricing.outputReasoningNanoPerMTok;
  if (reasoningPrice === undefined || reasoningPrice === pricing.outputNanoPerMTok) {
    components.push([text, pricing.outputNanoPerMTok]);
    return components;
  }
  const reasoning = tokenCount("reasoningTokens", usage.reasoningTokens ?? 0);
  components.push(
    [nonNegative("non-reasoning output", text - reasoning), pricing.outputNanoPerMTok],
    [reasoning, reasoningPrice],
  );
  return components;
}

/** Server-tool fees: a reported call without a price is a cost we cannot state, so it throws. */
function toolNanoUsd(pricing: ModelPricing, usage: TokenUsage): bigint {
  let total = 0n;
  for (const [tool, calls] of Object.entries(usage.toolCalls ?? {})) {
    const count = tokenCount(`${tool} calls`, calls);
    if (count === 0n) continue;
    const price = pricing.toolNanoPerCall?.[tool as ToolFee];
    if (price === undefined) throw new RangeError(`no price for ${tool} calls`);
    total += count * tokenCount("tool price", price);
  }
  return total;
}

/**
 * The cost of a usage in nano-USD: each side's tokens at one price rounded UP to the next nano, summed exactly
 * (BigInt inside, so tokens × price never loses a digit), plus the table's per-request fee and
 * the server-tool calls reported. Throws RangeError on a count that is not a non-negative safe
 * integer, parts that exceed their total, a tool call without a price, or a total beyond
 * Number.MAX_SAFE_INTEGER (≈ 9 million USD): each means a bug or a corrupt response, and callers
 * treat a throw as "charge the reservation".
 */
export function costNanoUsd(pricing: ModelPricing, usage: TokenUsage): number {
  let total =
    tokenCount("requestNano", pricing.requestNano ?? 0) +
    tokenCount("toolFixedNano", pricing.toolFixedNano ?? 0) +
    toolNanoUsd(pricing, usage);
  for (const side of [inputComponents(pricing, usage), outputComponents(pricing, usage)]) {
    for (const [price, tokens] of byPrice(side)) total += componentNanoUsd(tokens, price);
  }
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError("cost exceeds Number.MAX_SAFE_INTEGER nano-USD");
  }
  return Number(total);
}

/**
 * Tokens summed per price before rounding, so that one side rounds up once per distinct price:
 * the reservation's rounding slack is counted in distinct prices (distinctPrices).
 */
function byPrice(components: readonly Component[]): Map<number, bigint> {
  const sums = new Map<number, bigint>();
  for (const [tokens, price] of components) sums.set(price, (sums.get(price) ?? 0n) + tokens);
  return sums;
}

/** How many distinct prices each side of a cost can round at (see reservationNanoUsd). */
export function distinctPrices(pricing: ModelPricing): { input: number; output: number } {
  const input = new Set([
    pricing.inputNanoPerMTok,
    pricing.cacheReadNanoPerMTok,
    pricing.cacheWriteNanoPerMTok,
    Math.max(pricing.inputNanoPerMTok, pricing.cacheReadNanoPerMTok),
  ]);
  const output = new Set([pricing.outputNanoPerMTok]);
  if (pricing.outputReasoningNanoPerMTok !== undefined) {
    output.add(pricing.outputReasoningNanoPerMTok);
  }
  for (const modality of MODALITIES) {
    const media = modalityPricing(pricing, modality);
    input.add(media.inputNanoPerMTok);
    input.add(media.cacheReadNanoPerMTok);
    input.add(Math.max(media.inputNanoPerMTok, media.cacheReadNanoPerMTok));
    output.add(media.outputNanoPerMTok);
  }
  return { input: input.size, output: output.size };
}
