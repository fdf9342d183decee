import { createHash } from "node:crypto";

import { VallignusError } from "../errors.js";
import { meteredProviderFor, type ProviderId } from "../metering/index.js";
import { isValidSecretName, parseDomainPattern } from "../policy/index.js";
import type { SecretPlacement } from "../secrets/index.js";

/*
 * What a secret is, checked at the edge: its name, its value, where the value goes. Pure: the
 * CLI calls these before it touches the home, the file store calls them again on what it reads.
 * No message here ever holds a value: a value is described by its length and a position only.
 */

/** The shortest value we hold: a shorter one could not be told apart from ordinary text. */
export const MIN_SECRET_LENGTH = 16;
export const MAX_SECRET_LENGTH = 8192;

/** Visible ASCII only: no space, CR or LF, so a value is one unambiguous run of bytes. */
const VISIBLE = /^[\x21-\x7e]*$/;

export function assertSecretName(name: string): void {
  if (!isValidSecretName(name)) {
    throw new VallignusError(
      "ERR_SECRET_NAME_INVALID",
      `invalid secret name ${JSON.stringify(name)}: it is the environment variable the agent sees, 1-64 of A-Z 0-9 _ starting with a letter`,
    );
  }
}

/** Why a value cannot be held, or undefined. The reason names a length or a position only. */
export function secretValueProblem(value: string): string | undefined {
  if (value.length < MIN_SECRET_LENGTH || value.length > MAX_SECRET_LENGTH) {
    return `the value has ${value.length} characters; it must have ${MIN_SECRET_LENGTH} to ${MAX_SECRET_LENGTH}`;
  }
  if (!VISIBLE.test(value)) {
    const at = /[^\x21-\x7e]/.exec(value)?.index ?? 0;
    return `character ${at + 1} of the value is not visible ASCII (no spaces, line breaks or non-ASCII)`;
  }
  return undefined;
}

export function assertSecretValue(value: string): void {
  const problem = secretValueProblem(value);
  if (problem !== undefined) throw new VallignusError("ERR_SECRET_VALUE_INVALID", problem);
}

/** The value as read from stdin or a variable: one trailing line break is the pipe's, not its. */
export function stripOneLineBreak(text: string): string {
  if (text.endsWith("\r\n")) return text.slice(0, -2);
  if (text.endsWith("\n")) return text.slice(0, -1);
  return text;
}

/** The first 8 hex digits of the value's sha256: enough to tell two values apart, not to guess. */
export function secretFingerprint(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex").slice(0, 8);
}

/** RFC 9110 token characters. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]{1,64}$/;
/** The proxy frames the request and talks to the proxy itself with these: never a secret's place. */
const FRAMING_HEADERS = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-connection",
]);
const QUERY_NAME = /^[A-Za-z0-9._~-]{1,64}$/;
const TEMPLATE = /^[\x20-\x7e]{1,256}$/;
const SLOT = "{secret}";

function placementError(why: string): VallignusError {
  return new VallignusError("ERR_SECRET_PLACEMENT", why);
}

/** Why a placement is not one we write, or undefined; for placements read back from a file. */
export function placementProblem(placement: SecretPlacement): string | undefined {
  if (placement.kind === "query") {
    return QUERY_NAME.test(placement.name)
      ? undefined
      : `query parameter ${JSON.stringify(placement.name)}: use 1-64 of A-Z a-z 0-9 . _ ~ -`;
  }
  if (!HEADER_NAME.test(placement.name)) {
    return `header ${JSON.stringify(placement.name)} is not a header name (token characters)`;
  }
  if (FRAMING_HEADERS.has(placement.name)) {
    return `header ${placement.name} frames the request; a secret cannot go there`;
  }
  const template = placement.template;
  if (template === null) return undefined;
  if (!TEMPLATE.test(template) || template.split(SLOT).length !== 2) {
    return `the template must hold ${SLOT} exactly once, in 1-256 visible ASCII characters or spaces`;
  }
  return undefined;
}

/** What the flags say about placement (`--header`, `--template`, `--query`). */
export interface PlacementFlags {
  readonly header?: string | undefined;
  readonly template?: string | undefined;
  readonly query?: string | undefined;
}

type Family = "bearer" | "anthropic" | "gemini" | "azure";

/** Where each known LLM API takes its key; Vertex takes OAuth tokens, not keys, so it is absent. */
const FAMILY: Partial<Record<ProviderId, Family>> = {
  openai: "bearer",
  groq: "bearer",
  mistral: "bearer",
  deepseek: "bearer",
  openrouter: "bearer",
  xai: "bearer",
  together: "bearer",
  fireworks: "bearer",
  anthropic: "anthropic",
  gemini: "gemini",
  azure: "azure",
};

const FAMILY_PLACEMENTS: Record<Family, readonly SecretPlacement[]> = {
  bearer: [{ kind: "header", name: "authorization", template: "Bearer {secret}" }],
  // Anthropic's own SDK (1.x) sends an API key as `Authorization: Bearer`, older clients and
  // curl examples as x-api-key: either place is the key's own.
  anthropic: [
    { kind: "header", name: "x-api-key", template: null },
    { kind: "header", name: "authorization", template: "Bearer {secret}" },
  ],
  gemini: [
    { kind: "header", name: "x-goog-api-key", template: null },
    { kind: "query", name: "key" },
  ],
  azure: [{ kind: "header", name: "api-key", template: null }],
};

/** The family of a canonical host pattern: a wildcard stands for any one name under it. */
function familyOf(pattern: string): Family | undefined {
  const parsed = parseDomainPattern(pattern, { storedPattern: true });
  if (!parsed.ok || parsed.pattern.ipLiteral) return undefined;
  const { host, wildcard } = parsed.pattern;
  const provider = meteredProviderFor(wildcard ? `x.${host}` : host);
  return provider === undefined ? undefined : FAMILY[provider];
}

/** Where the placements of known LLM hosts are, when every host is of one family. */
function inferPlacements(hosts: readonly string[]): readonly SecretPlacement[] {
  const families = new Set(hosts.map(familyOf));
  const [family] = families;
  if (families.size !== 1 || family === undefined) {
    throw placementError(
      "give --header or --query: the place of the value is known only when every host is a known LLM API of one kind (OpenAI-style, Anthropic, Gemini or Azure OpenAI)",
    );
  }
  return FAMILY_PLACEMENTS[family];
}

/** The placements the flags give, or those of the hosts' LLM API when they give none. */
export function placementsFromFlags(
  hosts: readonly string[],
  flags: PlacementFlags,
): readonly SecretPlacement[] {
  if (flags.template !== undefined && flags.header === undefined) {
    throw placementError("--template needs --header: it is the header's value");
  }
  if (flags.header === undefined && flags.query === undefined) return inferPlacements(hosts);
  const placements: SecretPlacement[] = [];
  if (flags.header !== undefined) {
    placements.push({
      kind: "header",
      name: flags.header.toLowerCase(),
      template: flags.template ?? null,
    });
  }
  if (flags.query !== undefined) placements.push({ kind: "query", name: flags.query });
  for (const placement of placements) {
    const problem = placementProblem(placement);
    if (problem !== undefined) throw placementError(problem);
  }
  return placements;
}

/** One placement as a person reads it: `header authorization: Bearer {secret}`, `query key`. */
export function describePlacement(placement: SecretPlacement): string {
  if (placement.kind === "query") return `query ${placement.name}`;
  return placement.template === null
    ? `header ${placement.name}`
    : `header ${placement.name}: ${placement.template}`;
}
