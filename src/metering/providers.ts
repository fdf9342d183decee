/**
 * The one table of metered LLM API hosts. A CONNECT to one of these is intercepted (TLS
 * terminated, request read, usage metered); every other allowed host stays an opaque tunnel.
 */

/** The providers Vallignus meters, by the host their API is served from. */
export type ProviderId =
  | "openai"
  | "anthropic"
  | "gemini"
  | "groq"
  | "mistral"
  | "deepseek"
  | "openrouter"
  | "xai"
  | "together"
  | "fireworks"
  | "azure"
  | "vertex";

/**
 * A row of the table: an exact host; `*.suffix` for any subdomain (never the apex); or
 * `*-rest.domain` for any single first label that ends in `-rest` (Vertex AI's regional hosts,
 * `us-central1-aiplatform.googleapis.com`).
 */
export interface MeteredHost {
  readonly pattern: string;
  readonly provider: ProviderId;
}

/** Every metered host, for the README and `--help`; `meteredProviderFor` is built from it. */
export const METERED_HOSTS: readonly MeteredHost[] = Object.freeze([
  { pattern: "api.openai.com", provider: "openai" },
  { pattern: "api.anthropic.com", provider: "anthropic" },
  { pattern: "generativelanguage.googleapis.com", provider: "gemini" },
  { pattern: "api.groq.com", provider: "groq" },
  { pattern: "api.mistral.ai", provider: "mistral" },
  { pattern: "api.deepseek.com", provider: "deepseek" },
  { pattern: "openrouter.ai", provider: "openrouter" },
  { pattern: "api.x.ai", provider: "xai" },
  { pattern: "api.together.xyz", provider: "together" },
  { pattern: "api.together.ai", provider: "together" },
  { pattern: "api.fireworks.ai", provider: "fireworks" },
  // OpenAI's data-residency hosts (`eu.api.openai.com`, `us.api.openai.com`) serve the same API
  // at the same prices; any other subdomain is OpenAI's too, so it is metered, never tunnelled.
  { pattern: "*.api.openai.com", provider: "openai" },
  // Mistral's Codestral endpoint: the same chat and FIM APIs as api.mistral.ai.
  { pattern: "codestral.mistral.ai", provider: "mistral" },
  // Each Azure OpenAI / Azure AI resource has its own subdomain under one of these; all speak
  // the OpenAI wire format (deployments in the path) or Azure AI's model-inference API.
  { pattern: "*.openai.azure.com", provider: "azure" },
  { pattern: "*.cognitiveservices.azure.com", provider: "azure" },
  { pattern: "*.services.ai.azure.com", provider: "azure" },
  // Azure OpenAI in the US Government and China clouds: the same API as *.openai.azure.com.
  { pattern: "*.openai.azure.us", provider: "azure" },
  { pattern: "*.openai.azure.cn", provider: "azure" },
  // Azure AI model inference (serverless and managed endpoints): OpenAI-compatible chat with the
  // model in the body, so a priced model is metered and any other is refused, never tunnelled.
  { pattern: "*.models.ai.azure.com", provider: "azure" },
  { pattern: "*.inference.ai.azure.com", provider: "azure" },
  // Vertex AI: the global host and the regional ones. Only Gemini's generateContent paths are
  // read and priced (llm-api-path.ts); any other POST there is refused as unpriced.
  { pattern: "aiplatform.googleapis.com", provider: "vertex" },
  { pattern: "*-aiplatform.googleapis.com", provider: "vertex" },
  // Google's mutual-TLS endpoints serve the same APIs at the same prices as the hosts above.
  { pattern: "generativelanguage.mtls.googleapis.com", provider: "gemini" },
  { pattern: "aiplatform.mtls.googleapis.com", provider: "vertex" },
  { pattern: "*-aiplatform.mtls.googleapis.com", provider: "vertex" },
]);

const EXACT = new Map<string, ProviderId>(
  METERED_HOSTS.filter((row) => !row.pattern.startsWith("*")).map((row) => [
    row.pattern,
    row.provider,
  ]),
);

/** `*.x` → ".x" and `*-x` → "-x": a name matches when it ends so and has a label before. */
const SUFFIXES: readonly (readonly [suffix: string, provider: ProviderId])[] = METERED_HOSTS.filter(
  (row) => row.pattern.startsWith("*"),
).map((row) => [row.pattern.slice(1), row.provider] as const);

/** The part a `*-x` pattern's star stands for must be one DNS label, no dot in it. */
const ONE_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * The provider whose API `host` serves, or undefined for a host that is not metered.
 *
 * The caller passes the lower-case punycode host without a trailing dot; this still folds case
 * and one trailing dot, because a metered host that slipped through as "unmetered" would be
 * tunnelled without a budget check — the one mistake this function must never make.
 */
export function meteredProviderFor(host: string): ProviderId | undefined {
  const name = (host.endsWith(".") ? host.slice(0, -1) : host).toLowerCase();
  const exact = EXACT.get(name);
  if (exact !== undefined) return exact;
  for (const [suffix, provider] of SUFFIXES) {
    // `.x` suffixes: the apex itself and look-alikes ("xopenai.azure.com") miss.
    if (name.length <= suffix.length || !name.endsWith(suffix)) continue;
    if (suffix.startsWith(".") || ONE_LABEL.test(name.slice(0, -suffix.length))) return provider;
  }
  return undefined;
}
