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
  | "azure";

/** A row of the table: an exact host, or `*.suffix` for any subdomain (never the apex). */
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
  // Each Azure OpenAI resource has its own subdomain: `<resource>.openai.azure.com`.
  { pattern: "*.openai.azure.com", provider: "azure" },
]);

const EXACT = new Map<string, ProviderId>(
  METERED_HOSTS.filter((row) => !row.pattern.startsWith("*.")).map((row) => [
    row.pattern,
    row.provider,
  ]),
);

const SUFFIXES: readonly (readonly [suffix: string, provider: ProviderId])[] = METERED_HOSTS.filter(
  (row) => row.pattern.startsWith("*."),
).map((row) => [row.pattern.slice(1), row.provider] as const);

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
    // `suffix` starts with ".", so the apex itself and look-alikes ("xopenai.azure.com") miss.
    if (name.length > suffix.length && name.endsWith(suffix)) return provider;
  }
  return undefined;
}
