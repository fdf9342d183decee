/**
 * Reads an intercepted LLM API request before it leaves: which model, how many output tokens it
 * may produce at most, how many choices, whether it streams, and how large its input can be. The
 * proxy reserves the worst-case cost from these facts. Pure: no I/O, no clock.
 */
import { checkJsonShape } from "./json-shape.js";
import { pathTrick, routeLlmPath, type LlmApi, type LlmRoute } from "./llm-api-path.js";
import type { ProviderId } from "./providers.js";
import { scanRequestInputs } from "./request-inputs.js";
import { readServerTools, type ServerToolFacts } from "./server-tools.js";

export type { LlmApi } from "./llm-api-path.js";

/** The facts of one LLM API request that a reservation is computed from. */
export interface LlmRequest {
  readonly provider: ProviderId;
  readonly api: LlmApi;
  /** The model as the provider will see it (Gemini: from the path; Azure: the deployment name). */
  readonly model: string | undefined;
  /** The requested output cap per choice, undefined when the request sets none. Embeddings: 0. */
  readonly maxOutputTokens: number | undefined;
  /** How many outputs the provider generates and bills (`n`, `best_of`, `candidateCount`); ≥ 1. */
  readonly n: number;
  readonly stream: boolean;
  /** UTF-8 bytes of the body sent upstream: an upper bound of its text's input tokens. */
  readonly inputBytes: number;
  /** See InputFacts: media whose token cost does not follow their bytes. */
  readonly hasImages: boolean;
  /** See InputFacts: image parts, each to be allowed a per-image token count beyond its bytes. */
  readonly imageCount: number;
  /** See InputFacts: input the body does not carry, so `inputBytes` is no bound. */
  readonly externalInput: boolean;
  /** Fee-charging server tools the request enables, or why they cannot be priced; absent: none. */
  readonly serverTools?: ServerToolFacts;
  /**
   * An upper bound on the tokens of a predicted output (chat `prediction`): OpenAI bills its
   * rejected tokens at the output price, beyond `max_completion_tokens`. Absent: none.
   */
  readonly predictionTokens?: number;
  /** Why the requested `service_tier` may bill above the table's prices; absent: it cannot. */
  readonly unpricedTier?: string;
}

export type LlmRequestReading =
  | {
      readonly ok: true;
      readonly request: LlmRequest;
      /** The body to send upstream: the client's own bytes unless usage reporting was injected. */
      readonly forwardBody: Buffer;
      /** True when `stream_options.include_usage` was added; the usage reader then hides its chunk. */
      readonly usageInjected: boolean;
    }
  | { readonly ok: false; readonly why: string };

/** The largest body read by default: Anthropic's own request limit, and room for a few images. */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024;

/** More choices than this is refused: no provider allows it, and it would multiply the reservation. */
export const MAX_CHOICES = 128;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A rejection; the proxy denies it `malformed_request` and the message goes to the audit only. */
class Malformed {
  constructor(readonly why: string) {}
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The body as a JSON object, or why not. Invalid UTF-8 is refused rather than replaced. A body
 * that repeats a key is refused: JSON.parse keeps the last `max_tokens` or `model`, a provider
 * may keep the first, and the reservation would then not bound what it runs. Depth is bounded
 * before anything recursive (JSON.stringify in the usage-option rewrite) sees the value.
 */
function parseJsonObject(body: Buffer): JsonObject | Malformed {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    return new Malformed("request body is not valid UTF-8 JSON");
  }
  const shape = checkJsonShape(text);
  if (!shape.ok) return new Malformed(shape.why);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return new Malformed("request body is not valid UTF-8 JSON");
  }
  return isObject(value) ? value : new Malformed("request body is not a JSON object");
}

/**
 * A token limit or count field: absent/null → undefined; a non-negative safe integer → itself.
 * Anything else is refused: a provider might read "100.5" or "-1" differently from us.
 */
function readCount(object: JsonObject, key: string): number | undefined | Malformed {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  return new Malformed(`${key} must be a non-negative integer`);
}

/** The largest of several spellings of one limit, as the worst case must assume. */
function largestCount(
  objects: readonly JsonObject[],
  keys: readonly string[],
): number | undefined | Malformed {
  let largest: number | undefined;
  for (const object of objects) {
    for (const key of keys) {
      const value = readCount(object, key);
      if (value instanceof Malformed) return value;
      if (value !== undefined) largest = Math.max(largest ?? 0, value);
    }
  }
  return largest;
}

/** Gemini's generation config; the REST API accepts both camelCase and snake_case. */
function geminiConfigs(body: JsonObject): JsonObject[] | Malformed {
  const configs: JsonObject[] = [];
  for (const key of ["generationConfig", "generation_config"]) {
    const config = body[key];
    if (config === undefined || config === null) continue;
    if (!isObject(config)) return new Malformed(`${key} must be an object`);
    configs.push(config);
  }
  return configs;
}

interface Limits {
  readonly maxOutputTokens: number | undefined;
  readonly n: number;
}

/** The output cap and the choice count of one API's body. */
function readLimits(api: LlmApi, body: JsonObject): Limits | Malformed {
  let outputs: number | undefined | Malformed;
  let choices: number | undefined | Malformed;
  switch (api) {
    case "chat_completions":
      outputs = largestCount([body], ["max_tokens", "max_completion_tokens"]);
      choices = largestCount([body], ["n"]);
      break;
    case "completions":
      // `best_of` candidates are generated and billed server-side, even though one is returned.
      outputs = largestCount([body], ["max_tokens"]);
      choices = largestCount([body], ["n", "best_of"]);
      break;
    case "responses":
      outputs = largestCount([body], ["max_output_tokens"]);
      break;
    case "anthropic_messages":
      outputs = largestCount([body], ["max_tokens"]);
      break;
    case "gemini_generate":
    case "gemini_stream": {
      const configs = geminiConfigs(body);
      if (configs instanceof Malformed) return configs;
      outputs = largestCount(configs, ["maxOutputTokens", "max_output_tokens"]);
      choices = largestCount(configs, ["candidateCount", "candidate_count"]);
      break;
    }
    case "embeddings":
      outputs = 0; // an embedding has no output tokens
      break;
    case "other":
      break;
  }
  if (outputs instanceof Malformed) return outputs;
  if (choices instanceof Malformed) return choices;
  if (choices !== undefined && (choices < 1 || choices > MAX_CHOICES)) {
    return new Malformed(`the number of choices must be between 1 and ${MAX_CHOICES}`);
  }
  return { maxOutputTokens: outputs, n: choices ?? 1 };
}

/** The body's `stream` flag; Gemini streams by path instead. */
function readStream(route: LlmRoute, body: JsonObject): boolean | Malformed {
  if (route.api === "gemini_stream") return true;
  if (route.api === "gemini_generate") return false;
  const stream = body.stream;
  if (stream === undefined || stream === null) return false;
  return typeof stream === "boolean" ? stream : new Malformed("stream must be a boolean");
}

/**
 * The model the provider will run. A path model (Gemini, Azure deployment) wins because the
 * provider routes by it. OpenRouter's `models` fallback list is refused when it names more than
 * one model: the reservation and the model allowlist judge one model, and a fallback could run
 * a dearer or a forbidden one.
 */
function readModel(
  route: LlmRoute,
  provider: ProviderId,
  body: JsonObject,
): string | undefined | Malformed {
  if (route.pathModel !== undefined) return route.pathModel;
  const model = body.model;
  if (model !== undefined && model !== null && typeof model !== "string") {
    return new Malformed("model must be a string");
  }
  const named = model === "" ? undefined : (model ?? undefined);
  if (provider !== "openrouter" || body.models === undefined || body.models === null) return named;
  const models = body.models;
  if (!Array.isArray(models) || !models.every((entry) => typeof entry === "string")) {
    return new Malformed("models must be a list of strings");
  }
  const distinct = new Set<string>(models);
  if (named !== undefined) distinct.add(named);
  if (distinct.size > 1) return new Malformed("a models fallback list may name only one model");
  return [...distinct][0];
}

// OpenAI-compatible hosts that accept `stream_options`. Mistral is left out on purpose: it
// answers 422 "extra_forbidden" to it, and sends usage in its last chunk unasked.
const STREAM_OPTIONS_HOSTS = new Set<ProviderId>([
  "openai",
  "azure",
  "groq",
  "deepseek",
  "openrouter",
  "xai",
  "together",
  "fireworks",
]);

/**
 * Azure rejects `stream_options` ("Unrecognized request argument") before api-version
 * 2024-09-01-preview; the v1 API (`/openai/v1/…`, api-version `preview`/`latest`) accepts it.
 */
function azureAcceptsStreamOptions(route: LlmRoute): boolean {
  if (route.pathname.startsWith("/openai/v1/")) return true;
  const version = route.query.get("api-version");
  if (version === null) return false;
  if (version === "preview" || version === "latest") return true;
  const date = /^\d{4}-\d{2}-\d{2}/.exec(version)?.[0];
  return date !== undefined && date >= "2024-09-01";
}

/**
 * True when a streamed chat completion would come back without usage unless we ask for it:
 * the client did not set `stream_options.include_usage: true` and the host accepts the option.
 */
function needsUsageInjection(
  provider: ProviderId,
  route: LlmRoute,
  body: JsonObject,
  stream: boolean,
): boolean {
  if (route.api !== "chat_completions" || !stream || !STREAM_OPTIONS_HOSTS.has(provider)) {
    return false;
  }
  if (provider === "azure" && !azureAcceptsStreamOptions(route)) return false;
  const options = body.stream_options;
  return !(isObject(options) && options.include_usage === true);
}

/**
 * The body with `stream_options.include_usage: true`. Re-serialized from the parsed object:
 * JSON.stringify keeps the client's key order (object keys keep insertion order, and a spread
 * keeps an existing `stream_options` where it was), its other `stream_options` and every other
 * field; only whitespace and number spellings (`1.0` → `1`) may change.
 */
function withUsageOption(body: JsonObject): Buffer {
  const options = isObject(body.stream_options) ? body.stream_options : {};
  const rewritten = { ...body, stream_options: { ...options, include_usage: true } };
  return Buffer.from(JSON.stringify(rewritten), "utf8");
}

/**
 * The UTF-8 bytes of every string in a chat request's `prediction`: its text (a string or text
 * parts) is tokenized like the prompt, at most one token per byte (see inputTokenBound). The
 * walk is iterative; the body's depth is already bounded.
 */
function predictionBytes(api: LlmApi, body: JsonObject): number | undefined {
  if (api !== "chat_completions" || body.prediction === undefined || body.prediction === null) {
    return undefined;
  }
  let bytes = 0;
  const pending: unknown[] = [body.prediction];
  while (pending.length > 0) {
    const node = pending.pop();
    if (typeof node === "string") bytes += Buffer.byteLength(node, "utf8");
    else if (Array.isArray(node)) pending.push(...(node as unknown[]));
    else if (isObject(node)) pending.push(...Object.values(node));
  }
  return bytes;
}

/**
 * Tiers that standard prices bound: absent, `auto` and `default` run at standard rates, `flex`
 * is cheaper (OpenAI), and Anthropic's `standard_only` is standard by its name. Any other tier
 * (`priority`, `scale`…) may bill more than the table says, so the call cannot be priced.
 */
const STANDARD_PRICED_TIERS = new Set(["auto", "default", "flex", "standard_only"]);

function unpricedTier(body: JsonObject): string | undefined {
  const tier = body.service_tier;
  if (tier === undefined || tier === null) return undefined;
  if (typeof tier === "string" && STANDARD_PRICED_TIERS.has(tier)) return undefined;
  const named = typeof tier === "string" ? tier.slice(0, 64) : typeof tier;
  return `service_tier ${named} is billed above the standard prices`;
}

/** `{ key: value }`, or nothing when value is undefined (exactOptionalPropertyTypes). */
function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

function refuse(malformed: Malformed): LlmRequestReading {
  return { ok: false, why: malformed.why };
}

function passThrough(provider: ProviderId, body: Buffer): LlmRequestReading {
  const request: LlmRequest = {
    provider,
    api: "other",
    model: undefined,
    maxOutputTokens: undefined,
    n: 1,
    stream: false,
    inputBytes: body.length,
    hasImages: false,
    imageCount: 0,
    externalInput: false,
  };
  return { ok: true, request, forwardBody: body, usageInjected: false };
}

/**
 * Reads one request to a metered host. `path` is the request target (path and query). Calls
 * that are not a known model API (GET /v1/models, file uploads…) come back as api "other" with
 * their body untouched and unread; a known API call must be a JSON object within `maxBodyBytes`
 * with well-formed limits, else `{ ok: false }` and the proxy denies it `malformed_request`.
 */
export function readLlmRequest(
  provider: ProviderId,
  method: string,
  path: string,
  body: Buffer,
  maxBodyBytes: number = DEFAULT_MAX_REQUEST_BODY_BYTES,
): LlmRequestReading {
  const trick = pathTrick(path);
  if (trick !== undefined) return { ok: false, why: trick };
  const route = routeLlmPath(provider, method, path);
  if (route.api === "other") return passThrough(provider, body);
  if (body.length > maxBodyBytes) {
    return { ok: false, why: `request body is larger than ${maxBodyBytes} bytes` };
  }
  const parsed = parseJsonObject(body);
  if (parsed instanceof Malformed) return refuse(parsed);
  const model = readModel(route, provider, parsed);
  if (model instanceof Malformed) return refuse(model);
  const limits = readLimits(route.api, parsed);
  if (limits instanceof Malformed) return refuse(limits);
  const stream = readStream(route, parsed);
  if (stream instanceof Malformed) return refuse(stream);
  const options = parsed.stream_options;
  if (options !== undefined && options !== null && !isObject(options)) {
    return { ok: false, why: "stream_options must be an object" };
  }
  const usageInjected = needsUsageInjection(provider, route, parsed, stream);
  const forwardBody = usageInjected ? withUsageOption(parsed) : body;
  const inputs = scanRequestInputs(route.api, provider, parsed);
  const request: LlmRequest = {
    provider,
    api: route.api,
    model,
    maxOutputTokens: limits.maxOutputTokens,
    n: limits.n,
    stream,
    inputBytes: forwardBody.length,
    hasImages: inputs.hasImages,
    imageCount: inputs.imageCount,
    externalInput: inputs.externalInput,
    serverTools: readServerTools(route.api, provider, parsed),
    ...optional("predictionTokens", predictionBytes(route.api, parsed)),
    ...optional("unpricedTier", unpricedTier(parsed)),
  };
  return { ok: true, request, forwardBody, usageInjected };
}
