/**
 * Which LLM API a request on a metered host calls, read from its method and path alone. The body
 * is read afterwards (llm-request.ts), and only for the APIs named here.
 */
import type { ProviderId } from "./providers.js";

/** The APIs whose requests and usage Vallignus reads; every other call is "other". */
export type LlmApi =
  | "chat_completions"
  | "responses"
  | "completions"
  | "embeddings"
  | "anthropic_messages"
  | "gemini_generate"
  | "gemini_stream"
  | "other";

/** Where a request goes: the API, a model named by the path, and the normalized path and query. */
export interface LlmRoute {
  readonly api: LlmApi;
  /** Gemini and Azure name the model (deployment) in the path; it wins over any body `model`. */
  readonly pathModel: string | undefined;
  /** Decoded, dot segments resolved, repeated and trailing slashes folded: what the rules matched. */
  readonly pathname: string;
  readonly query: URLSearchParams;
}

// `/v1beta/models/gemini-2.5-flash:streamGenerateContent`; tuned models keep their own prefix so
// that they are never mistaken for (and priced as) the base model.
const GEMINI_METHOD = /^\/v1[a-z0-9]*\/(models\/[^/:]+|tunedModels\/[^/:]+):([A-Za-z]+)$/;

// Vertex AI's Gemini calls: `/v1/projects/P/locations/L/publishers/google/models/M:method`. Only
// Google's own publisher is read: Anthropic and other partner models on Vertex (rawPredict, the
// OpenAI-compatible endpoint) are "other", so a POST to them is refused as unpriced.
const VERTEX_GEMINI_METHOD =
  /^\/v1[a-z0-9]*\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/([^/:@]+):([A-Za-z]+)$/;

/** Vertex AI takes the same bodies and answers the same usage for these two only. */
const VERTEX_APIS: Readonly<Record<string, LlmApi>> = {
  generateContent: "gemini_generate",
  streamGenerateContent: "gemini_stream",
};

const GEMINI_APIS: Readonly<Record<string, LlmApi>> = {
  generateContent: "gemini_generate",
  streamGenerateContent: "gemini_stream",
  embedContent: "embeddings",
  batchEmbedContents: "embeddings",
};

// Azure OpenAI routes by deployment; the body's `model`, if any, is ignored by Azure itself.
const AZURE_DEPLOYMENT = /^\/openai\/deployments\/([^/]+)(\/.*)$/;

// An encoded slash, backslash or dot in the path, in either case.
const ENCODED_SEPARATOR = /%(?:2f|5c|2e)/i;

/**
 * Why a request target is refused on a metered host before it is routed, or undefined. We route
 * by the decoded, normalized path, but the provider receives the raw bytes and may decode and
 * resolve them in another order (`/deployments/gpt-4o-mini%2F..%2Fo3-pro/…` is `gpt-4o-mini` to
 * one reading and `o3-pro` to another): a path whose meaning depends on that order is refused,
 * since no API needs an encoded separator, a backslash or a dot segment in its path.
 */
export function pathTrick(target: string): string | undefined {
  const withoutOrigin = target.replace(/^https?:\/\/[^/?#]*/i, "");
  const path = withoutOrigin.split(/[?#]/, 1)[0] ?? "";
  if (ENCODED_SEPARATOR.test(path)) return "the path has an encoded slash, backslash or dot";
  if (path.includes("\\")) return "the path has a backslash";
  if (path.split("/").some((segment) => segment === "." || segment === "..")) {
    return "the path has a dot segment";
  }
  return undefined;
}

/**
 * Splits a request target into a normalized pathname and its query. The pathname is decoded and
 * normalized before matching so that an encoded or dotted spelling of a billable path
 * (`/v1/chat%2Fcompletions`, `/v1/x/../chat/completions`) cannot slip past as "other".
 */
function splitTarget(target: string): { pathname: string; query: URLSearchParams } | undefined {
  let url: URL;
  try {
    if (/^https?:\/\//i.test(target)) url = new URL(target);
    else if (target.startsWith("/")) url = new URL(`https://metered.invalid${target}`);
    else return undefined;
  } catch {
    return undefined;
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(url.pathname);
  } catch {
    pathname = url.pathname;
  }
  pathname = pathname.replace(/\/{2,}/g, "/");
  if (pathname.length > 1 && pathname.endsWith("/")) pathname = pathname.slice(0, -1);
  return { pathname, query: url.searchParams };
}

/** The OpenAI-style and Anthropic APIs, recognized by how the path ends (hosts add prefixes). */
function apiForPathSuffix(pathname: string): LlmApi {
  // Mistral's agents endpoint takes and returns chat-completion shapes.
  if (pathname.endsWith("/chat/completions") || pathname.endsWith("/agents/completions")) {
    return "chat_completions";
  }
  // Legacy completions, and fill-in-the-middle (`/v1/fim/completions`, `/beta/completions`).
  if (pathname.endsWith("/completions")) return "completions";
  if (pathname.endsWith("/responses")) return "responses";
  if (pathname.endsWith("/embeddings")) return "embeddings";
  // `/v1/messages` exactly: the Assistants API's `/v1/threads/{id}/messages` is not a model call.
  if (pathname.endsWith("/v1/messages")) return "anthropic_messages";
  return "other";
}

/** Gemini's native `models/{model}:{method}` paths; undefined when the path is not one. */
function geminiRoute(pathname: string): { api: LlmApi; model: string } | undefined {
  const match = GEMINI_METHOD.exec(pathname);
  if (match === null) return undefined;
  const [, name = "", method = ""] = match;
  const model = name.startsWith("models/") ? name.slice("models/".length) : name;
  return { api: GEMINI_APIS[method] ?? "other", model };
}

/**
 * Classifies one request. Only POST calls a model; anything else (listing models, fetching a
 * stored response) is "other". A path that is not a known API is "other" too: the caller decides
 * what an unmetered call on a metered host may do.
 */
export function routeLlmPath(provider: ProviderId, method: string, target: string): LlmRoute {
  const split = splitTarget(target);
  const pathname = split?.pathname ?? "";
  const query = split?.query ?? new URLSearchParams();
  const other: LlmRoute = { api: "other", pathModel: undefined, pathname, query };
  if (split === undefined || method.toUpperCase() !== "POST") return other;

  if (provider === "gemini") {
    const gemini = geminiRoute(pathname);
    if (gemini !== undefined) {
      return gemini.api === "other"
        ? other
        : { ...other, api: gemini.api, pathModel: gemini.model };
    }
  }
  if (provider === "vertex") {
    const match = VERTEX_GEMINI_METHOD.exec(pathname);
    const api = match === null ? undefined : VERTEX_APIS[match[2] ?? ""];
    return api === undefined ? other : { ...other, api, pathModel: match?.[1] };
  }
  if (provider === "azure") {
    const azure = AZURE_DEPLOYMENT.exec(pathname);
    if (azure !== null) {
      const [, deployment = "", rest = ""] = azure;
      const api = apiForPathSuffix(rest);
      return api === "other" ? other : { ...other, api, pathModel: deployment };
    }
  }
  return { ...other, api: apiForPathSuffix(pathname) };
}
