import { usageError } from "../errors.js";
import { assertSecretName, type PolicyChanges } from "../authority/index.js";
import {
  formatNanoUsd,
  isValidModelName,
  parseDomainPattern,
  parseDurationSeconds,
  parseRequestRule,
  parseUsdToNano,
  type ModelPrice,
  type PolicyRules,
} from "../policy/index.js";
import type { Flags, FlagsOf } from "./command.js";
import type { CREATE_POLICY, UPDATE_POLICY } from "./declarations.js";

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** Validates a comma list of domain patterns; returns them canonical (punycode, lower case). */
export function parseDomainList(flag: string, text: string): string[] {
  return splitList(text).map((item) => {
    const parsed = parseDomainPattern(item);
    if (!parsed.ok) throw usageError("ERR_POLICY_DOMAIN_INVALID", `--${flag}: ${parsed.why}`);
    return parsed.pattern.text;
  });
}

function parseSpend(text: string): string {
  const nano = parseUsdToNano(text);
  if (nano === undefined) {
    throw usageError(
      "ERR_POLICY_SPEND_INVALID",
      `--max-spend-usd: ${JSON.stringify(text)} is not an amount from 0 to 1000000 with at most 9 decimals`,
    );
  }
  return formatNanoUsd(nano);
}

function parseModels(text: string): string[] | null {
  if (text.trim() === "*") return null;
  const models = splitList(text);
  for (const model of models) {
    if (!isValidModelName(model)) {
      throw usageError(
        "ERR_POLICY_MODEL_INVALID",
        `--allowed-models: ${JSON.stringify(model)} is not a model name`,
      );
    }
  }
  return models;
}

function parseCount(flag: string, text: string, allowNone: boolean): number | null {
  if (allowNone && text === "none") return null;
  if (!/^(0|[1-9][0-9]{0,14})$/.test(text)) {
    throw usageError(
      "ERR_POLICY_LIMIT_INVALID",
      `--${flag}: ${JSON.stringify(text)} is not a whole number${allowNone ? ' or "none"' : ""}`,
    );
  }
  return Number(text);
}

function parseRuntime(text: string, allowNone: boolean): number | null {
  if (allowNone && text === "none") return null;
  const seconds = parseDurationSeconds(text);
  if (seconds === undefined) {
    throw usageError(
      "ERR_POLICY_LIMIT_INVALID",
      `--max-runtime: ${JSON.stringify(text)} is not a duration such as 90s, 30m, 2h`,
    );
  }
  return seconds;
}

function parsePrices(specs: readonly string[]): Record<string, ModelPrice> {
  const prices: Record<string, ModelPrice> = {};
  for (const spec of specs) {
    const match = /^([^=]+)=([^/]+)\/([^/]+)$/.exec(spec);
    const model = match?.[1]?.trim() ?? "";
    const input = match?.[2]?.trim() ?? "";
    const output = match?.[3]?.trim() ?? "";
    const inNano = parseUsdToNano(input);
    const outNano = parseUsdToNano(output);
    if (
      match === null ||
      !isValidModelName(model) ||
      inNano === undefined ||
      outNano === undefined
    ) {
      throw usageError(
        "ERR_POLICY_PRICE_INVALID",
        `--price: ${JSON.stringify(spec)} is not MODEL=IN/OUT (USD per million tokens)`,
      );
    }
    prices[model] = {
      input_usd_per_mtok: formatNanoUsd(inNano),
      output_usd_per_mtok: formatNanoUsd(outNano),
    };
  }
  return prices;
}

const uniqueSorted = (list: readonly string[]): string[] => [...new Set(list)].sort();

/** "none" stands for an empty list (on update-policy: clear it). */
const isNone = (texts: readonly string[]): boolean =>
  texts.length === 1 && texts[0]?.trim() === "none";

function parseSecretNames(text: string): string[] {
  if (isNone([text])) return [];
  const names = splitList(text);
  names.forEach(assertSecretName);
  return uniqueSorted(names);
}

function parseInspectHosts(text: string): string[] {
  return isNone([text]) ? [] : uniqueSorted(parseDomainList("inspect-hosts", text));
}

/**
 * `--allow-requests` / `--deny-requests`: comma lists, the flag repeatable. A rule holds no comma
 * of its own (a comma in a path is written %2C), so splitting on commas never cuts one in two.
 */
function parseRules(flag: string, texts: readonly string[]): string[] {
  if (isNone(texts)) return [];
  return uniqueSorted(
    texts.flatMap(splitList).map((item) => {
      const parsed = parseRequestRule(item);
      if (!parsed.ok) throw usageError("ERR_POLICY_RULE_INVALID", `--${flag}: ${parsed.why}`);
      return parsed.rule.text;
    }),
  );
}

/** The rules of a new policy (`create-policy`). */
export function policyRulesFromFlags(flags: Flags<FlagsOf<typeof CREATE_POLICY>>): PolicyRules {
  const denied = flags["denied-domains"];
  const models = flags["allowed-models"];
  const requests = flags["max-requests"];
  const runtime = flags["max-runtime"];
  return {
    max_spend_usd: parseSpend(flags["max-spend-usd"]),
    allowed_domains: [
      ...new Set(parseDomainList("allowed-domains", flags["allowed-domains"])),
    ].sort(),
    denied_domains:
      denied === undefined ? [] : [...new Set(parseDomainList("denied-domains", denied))].sort(),
    allowed_models: models === undefined ? null : parseModels(models),
    max_requests: requests === undefined ? null : parseCount("max-requests", requests, false),
    max_runtime_seconds: runtime === undefined ? null : parseRuntime(runtime, false),
    allow_private_networks: flags["allow-private-networks"] ?? false,
    prices: parsePrices(flags.price ?? []),
    secrets: parseSecretNames(flags.secrets ?? "none"),
    inspect_hosts: parseInspectHosts(flags["inspect-hosts"] ?? "none"),
    allow_requests: parseRules("allow-requests", flags["allow-requests"] ?? []),
    deny_requests: parseRules("deny-requests", flags["deny-requests"] ?? []),
  };
}

/** The changes of `update-policy`; at least one field must change. */
export function policyChangesFromFlags(flags: Flags<FlagsOf<typeof UPDATE_POLICY>>): PolicyChanges {
  const changes: { -readonly [K in keyof PolicyChanges]: PolicyChanges[K] } = {};
  const spend = flags["max-spend-usd"];
  if (spend !== undefined) changes.max_spend_usd = parseSpend(spend);
  const allowed = flags["allowed-domains"];
  if (allowed !== undefined) changes.allowed_domains = parseDomainList("allowed-domains", allowed);
  const denied = flags["denied-domains"];
  if (denied !== undefined) changes.denied_domains = parseDomainList("denied-domains", denied);
  const add = flags["add-domains"];
  if (add !== undefined) changes.add_domains = parseDomainList("add-domains", add);
  const remove = flags["remove-domains"];
  if (remove !== undefined) changes.remove_domains = parseDomainList("remove-domains", remove);
  const models = flags["allowed-models"];
  if (models !== undefined) changes.allowed_models = parseModels(models);
  const requests = flags["max-requests"];
  if (requests !== undefined) changes.max_requests = parseCount("max-requests", requests, true);
  const runtime = flags["max-runtime"];
  if (runtime !== undefined) changes.max_runtime_seconds = parseRuntime(runtime, true);
  const privateNets = flags["allow-private-networks"];
  if (privateNets !== undefined) changes.allow_private_networks = privateNets;
  const prices = flags.price ?? [];
  if (prices.length > 0) changes.prices = parsePrices(prices);
  Object.assign(changes, laterChangesFromFlags(flags));
  if (Object.keys(changes).length === 0) {
    throw usageError("ERR_CLI_USAGE", "update-policy: give at least one field to change");
  }
  return changes;
}

/** The issue-13 fields of `update-policy`: a given flag replaces the list, "none" clears it. */
function laterChangesFromFlags(flags: Flags<FlagsOf<typeof UPDATE_POLICY>>): PolicyChanges {
  const secrets = flags.secrets;
  const inspect = flags["inspect-hosts"];
  const allow = flags["allow-requests"];
  const deny = flags["deny-requests"];
  return {
    ...(secrets === undefined ? {} : { secrets: parseSecretNames(secrets) }),
    ...(inspect === undefined ? {} : { inspect_hosts: parseInspectHosts(inspect) }),
    ...(allow === undefined ? {} : { allow_requests: parseRules("allow-requests", allow) }),
    ...(deny === undefined ? {} : { deny_requests: parseRules("deny-requests", deny) }),
  };
}
