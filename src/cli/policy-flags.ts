import { usageError } from "../errors.js";
import type { PolicyChanges } from "../authority/index.js";
import {
  formatNanoUsd,
  isValidModelName,
  parseDomainPattern,
  parseDurationSeconds,
  parseUsdToNano,
  type ModelPrice,
  type PolicyRules,
} from "../policy/index.js";
import { type OptionSpec, type ParsedArgs, booleanFlag, listFlag, stringFlag } from "./args.js";

export const POLICY_FIELD_OPTIONS: OptionSpec = {
  "policy-id": { type: "string" },
  "max-spend-usd": { type: "string" },
  "allowed-domains": { type: "string" },
  "denied-domains": { type: "string" },
  "allowed-models": { type: "string" },
  "max-requests": { type: "string" },
  "max-runtime": { type: "string" },
  "allow-private-networks": { type: "boolean" },
  price: { type: "string", multiple: true },
};

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

/** The rules of a new policy (`create-policy`). */
export function policyRulesFromFlags(parsed: ParsedArgs): PolicyRules {
  const spend = stringFlag(parsed, "max-spend-usd");
  const allowed = stringFlag(parsed, "allowed-domains");
  if (spend === undefined)
    throw usageError("ERR_CLI_USAGE", "create-policy: --max-spend-usd is required");
  if (allowed === undefined)
    throw usageError("ERR_CLI_USAGE", "create-policy: --allowed-domains is required");
  const denied = stringFlag(parsed, "denied-domains");
  const models = stringFlag(parsed, "allowed-models");
  const requests = stringFlag(parsed, "max-requests");
  const runtime = stringFlag(parsed, "max-runtime");
  return {
    max_spend_usd: parseSpend(spend),
    allowed_domains: [...new Set(parseDomainList("allowed-domains", allowed))].sort(),
    denied_domains:
      denied === undefined ? [] : [...new Set(parseDomainList("denied-domains", denied))].sort(),
    allowed_models: models === undefined ? null : parseModels(models),
    max_requests: requests === undefined ? null : parseCount("max-requests", requests, false),
    max_runtime_seconds: runtime === undefined ? null : parseRuntime(runtime, false),
    allow_private_networks: booleanFlag(parsed, "allow-private-networks") ?? false,
    prices: parsePrices(listFlag(parsed, "price")),
  };
}

/** The changes of `update-policy`; at least one field must change. */
export function policyChangesFromFlags(parsed: ParsedArgs): PolicyChanges {
  const changes: { -readonly [K in keyof PolicyChanges]: PolicyChanges[K] } = {};
  const text = (name: string) => stringFlag(parsed, name);
  const spend = text("max-spend-usd");
  if (spend !== undefined) changes.max_spend_usd = parseSpend(spend);
  const allowed = text("allowed-domains");
  if (allowed !== undefined) changes.allowed_domains = parseDomainList("allowed-domains", allowed);
  const denied = text("denied-domains");
  if (denied !== undefined) changes.denied_domains = parseDomainList("denied-domains", denied);
  const add = text("add-domains");
  if (add !== undefined) changes.add_domains = parseDomainList("add-domains", add);
  const remove = text("remove-domains");
  if (remove !== undefined) changes.remove_domains = parseDomainList("remove-domains", remove);
  const models = text("allowed-models");
  if (models !== undefined) changes.allowed_models = parseModels(models);
  const requests = text("max-requests");
  if (requests !== undefined) changes.max_requests = parseCount("max-requests", requests, true);
  const runtime = text("max-runtime");
  if (runtime !== undefined) changes.max_runtime_seconds = parseRuntime(runtime, true);
  const privateNets = booleanFlag(parsed, "allow-private-networks");
  if (privateNets !== undefined) changes.allow_private_networks = privateNets;
  const prices = listFlag(parsed, "price");
  if (prices.length > 0) changes.prices = parsePrices(prices);
  if (Object.keys(changes).length === 0) {
    throw usageError("ERR_CLI_USAGE", "update-policy: give at least one field to change");
  }
  return changes;
}
