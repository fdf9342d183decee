import { parseDomainPattern } from "./domain-pattern.js";
import { parseUsdToNano } from "./money.js";

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
}

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
  const keys = Object.keys(doc).sort();
  if (keys.join(",") !== VERSION_KEYS.join(",")) return "unexpected or missing fields";
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
