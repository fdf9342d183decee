import { parseDomainPattern } from "./domain-pattern.js";
import { parseUsdToNano } from "./money.js";
import { parseRequestRule } from "./request-rule.js";

/** Prices a policy sets for models the offline table lacks, in USD per million tokens. */
export interface ModelPrice {
  readonly input_usd_per_mtok: string;
  readonly output_usd_per_mtok: string;
}

/** The rules of one policy version: what a token bound to it may do. */
export interface PolicyRules {
  readonly max_spend_usd: string;
  readonly allowed_domains: readonly string[];
  readonly denied_domains: readonly string[];
  /** null: any model that has a price. */
  readonly allowed_models: readonly string[] | null;
  readonly max_requests: number | null;
  readonly max_runtime_seconds: number | null;
  readonly allow_private_networks: boolean;
  readonly prices: Readonly<Record<string, ModelPrice>>;
  /** Names of the secrets whose stand-ins this policy's runs get (`auth set-secret`). */
  readonly secrets: readonly string[];
  /** Hosts whose tunnels are opened and whose requests are seen, beyond the metered LLM hosts. */
  readonly inspect_hosts: readonly string[];
  /** Request rules, `METHOD host/path-glob`, canonical (see request-rule.ts). */
  readonly allow_requests: readonly string[];
  readonly deny_requests: readonly string[];
}

/**
 * Fields added after the first release (issue 13). A version file holds each only when it is
 * not empty, so a policy that uses none of them hashes as it always did, and older files (which
 * lack them) read as "none".
 */
export const LATER_POLICY_FIELDS = [
  "secrets",
  "inspect_hosts",
  "allow_requests",
  "deny_requests",
] as const;

/** One immutable version file, `policies/<id>/v0001.json`. */
export interface PolicyVersion extends PolicyRules {
  readonly policy_id: string;
  readonly version: number;
  readonly created_at: string;
  /** sha256 (hex) of the canonical JSON of every other field. */
  readonly sha256: string;
}

const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Ids of agents, policies and tokens: `^[a-z0-9][a-z0-9._-]{0,63}$`. */
export function isValidId(text: string): boolean {
  return ID_PATTERN.test(text);
}

/**
 * A secret's name is the environment variable the agent sees: upper case, so that it is one
 * file name on case-insensitive file systems too.
 */
const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,63}$/;

export function isValidSecretName(text: string): boolean {
  return SECRET_NAME.test(text);
}

/** The longest model name we accept; provider model ids are far shorter. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/;

export function isValidModelName(text: string): boolean {
  return MODEL_NAME.test(text);
}

function isNullableCount(value: unknown): boolean {
  return value === null || (Number.isSafeInteger(value) && (value as number) >= 0);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

function patternsAreCanonical(list: readonly string[]): boolean {
  return list.every((text) => {
    const parsed = parseDomainPattern(text, { storedPattern: true });
    return parsed.ok && parsed.pattern.text === text;
  });
}

function rulesAreCanonical(list: readonly string[]): boolean {
  return list.every((text) => {
    const parsed = parseRequestRule(text, { storedRule: true });
    return parsed.ok && parsed.rule.text === text;
  });
}

/** Why a later field (absent, or a non-empty list) is not as we write it, or undefined. */
function laterFieldProblem(doc: Record<string, unknown>): string | undefined {
  const checks: Record<(typeof LATER_POLICY_FIELDS)[number], (list: string[]) => boolean> = {
    secrets: (list) => list.every(isValidSecretName),
    inspect_hosts: patternsAreCanonical,
    allow_requests: rulesAreCanonical,
    deny_requests: rulesAreCanonical,
  };
  for (const field of LATER_POLICY_FIELDS) {
    if (!(field in doc)) continue;
    const list = doc[field];
    if (!isStringArray(list) || list.length === 0 || !checks[field](list)) return `bad ${field}`;
  }
  return undefined;
}

function pricesAreValid(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  return Object.entries(value).every(([model, price]) => {
    if (!isValidModelName(model) || typeof price !== "object" || price === null) return false;
    const p = price as Record<string, unknown>;
    return (
      Object.keys(p).length === 2 &&
      typeof p["input_usd_per_mtok"] === "string" &&
      typeof p["output_usd_per_mtok"] === "string" &&
      parseUsdToNano(p["input_usd_per_mtok"]) !== undefined &&
      parseUsdToNano(p["output_usd_per_mtok"]) !== undefined
    );
  });
}

const VERSION_KEYS = [
  "policy_id",
  "version",
  "created_at",
  "max_spend_usd",
  "allowed_domains",
  "denied_domains",
  "allowed_models",
  "max_requests",
  "max_runtime_seconds",
  "allow_private_networks",
  "prices",
  "sha256",
].sort();

/**
 * Checks that a parsed version file has exactly the shape we write. Returns the reason it
 * does not, or undefined. The hash is checked separately (it needs canonical JSON).
 */
export function describePolicyVersionProblem(doc: Record<string, unknown>): string | undefined {
  const later: readonly string[] = LATER_POLICY_FIELDS;
  const keys = Object.keys(doc)
    .filter((key) => !later.includes(key))
    .sort();
  if (keys.join(",") !== VERSION_KEYS.join(",")) return "unexpected or missing fields";
  const laterProblem = laterFieldProblem(doc);
  if (laterProblem !== undefined) return laterProblem;
  if (typeof doc["policy_id"] !== "string" || !isValidId(doc["policy_id"])) return "bad policy_id";
  if (!Number.isSafeInteger(doc["version"]) || (doc["version"] as number) < 1) return "bad version";
  if (typeof doc["created_at"] !== "string") return "bad created_at";
  if (
    typeof doc["max_spend_usd"] !== "string" ||
    parseUsdToNano(doc["max_spend_usd"]) === undefined
  ) {
    return "bad max_spend_usd";
  }
  if (!isStringArray(doc["allowed_domains"]) || !patternsAreCanonical(doc["allowed_domains"])) {
    return "bad allowed_domains";
  }
  if (!isStringArray(doc["denied_domains"]) || !patternsAreCanonical(doc["denied_domains"])) {
    return "bad denied_domains";
  }
  const models = doc["allowed_models"];
  if (models !== null && !(isStringArray(models) && models.every(isValidModelName))) {
    return "bad allowed_models";
  }
  if (!isNullableCount(doc["max_requests"])) return "bad max_requests";
  if (!isNullableCount(doc["max_runtime_seconds"])) return "bad max_runtime_seconds";
  if (typeof doc["allow_private_networks"] !== "boolean") return "bad allow_private_networks";
  if (!pricesAreValid(doc["prices"])) return "bad prices";
  if (typeof doc["sha256"] !== "string" || !/^[0-9a-f]{64}$/.test(doc["sha256"]))
    return "bad sha256";
  return undefined;
}

/** A checked version file as the rest of the code sees it: absent later fields read as empty. */
export function withLaterFields<T extends Record<string, unknown>>(
  doc: T,
): T & Pick<PolicyRules, (typeof LATER_POLICY_FIELDS)[number]> {
  const list = (field: string): readonly string[] => {
    const value = doc[field];
    return isStringArray(value) ? value : [];
  };
  return {
    ...doc,
    secrets: list("secrets"),
    inspect_hosts: list("inspect_hosts"),
    allow_requests: list("allow_requests"),
    deny_requests: list("deny_requests"),
  };
}
