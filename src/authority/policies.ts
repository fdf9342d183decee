import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

import { VallignusError } from "../errors.js";
import {
  describePolicyVersionProblem,
  LATER_POLICY_FIELDS,
  withLaterFields,
  type ModelPrice,
  type PolicyRules,
  type PolicyVersion,
} from "../policy/index.js";
import { assertValidId } from "./agents.js";
import { createFileExclusive, PUBLIC_FILE_MODE, withFileLock } from "../storage/index.js";
import { policyContentHash } from "./canonical-json.js";
import { DIR_MODE, type Home, parseStateJson, readTextIfExists } from "./home.js";

/** What `update-policy` may change. Absent fields keep the previous version's value. */
export interface PolicyChanges {
  readonly max_spend_usd?: string;
  readonly allowed_domains?: readonly string[];
  readonly denied_domains?: readonly string[];
  readonly add_domains?: readonly string[];
  readonly remove_domains?: readonly string[];
  readonly allowed_models?: readonly string[] | null;
  readonly max_requests?: number | null;
  readonly max_runtime_seconds?: number | null;
  readonly allow_private_networks?: boolean;
  readonly prices?: Readonly<Record<string, ModelPrice>>;
  readonly secrets?: readonly string[];
  readonly inspect_hosts?: readonly string[];
  readonly allow_requests?: readonly string[];
  readonly deny_requests?: readonly string[];
}

const VERSION_FILE = /^v([0-9]{4,})\.json$/;

export function versionFileName(version: number): string {
  return `v${String(version).padStart(4, "0")}.json`;
}

function policyDir(home: Home, policyId: string): string {
  return home.path("policies", policyId);
}

/** Version numbers present for a policy, ascending; empty when the policy does not exist. */
export function listPolicyVersions(home: Home, policyId: string): number[] {
  let names: string[];
  try {
    names = readdirSync(policyDir(home, policyId));
  } catch {
    return [];
  }
  return names
    .map((name) => VERSION_FILE.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/**
 * Reads one version and checks it: exact shape, and its stored sha256 equals the hash of its
 * content. A file edited on disk is reported as tampered, never used.
 */
export function findPolicyVersion(
  home: Home,
  policyId: string,
  version: number,
): PolicyVersion | undefined {
  const path = join(policyDir(home, policyId), versionFileName(version));
  const text = readTextIfExists(path);
  if (text === undefined) return undefined;
  const doc = parseStateJson(path, text);
  const problem = describePolicyVersionProblem(doc);
  if (problem !== undefined) {
    throw new VallignusError(
      "ERR_POLICY_CORRUPT",
      `${path} is not a valid policy version: ${problem}`,
    );
  }
  if (doc["policy_id"] !== policyId || doc["version"] !== version) {
    throw new VallignusError("ERR_POLICY_CORRUPT", `${path} names another policy or version`);
  }
  if (policyContentHash(doc) !== doc["sha256"]) {
    throw new VallignusError(
      "ERR_POLICY_TAMPERED",
      `${path} was changed after it was written (its content no longer matches its sha256)`,
    );
  }
  return withLaterFields(doc) as unknown as PolicyVersion;
}

export function getPolicyVersion(home: Home, policyId: string, version?: number): PolicyVersion {
  assertValidId("policy", policyId);
  const versions = listPolicyVersions(home, policyId);
  const latest = versions.at(-1);
  if (latest === undefined) {
    throw new VallignusError("ERR_POLICY_NOT_FOUND", `no policy ${JSON.stringify(policyId)}`);
  }
  const wanted = version ?? latest;
  const found = findPolicyVersion(home, policyId, wanted);
  if (found === undefined) {
    throw new VallignusError(
      "ERR_POLICY_VERSION_NOT_FOUND",
      `policy ${JSON.stringify(policyId)} has no version ${wanted} (latest is ${latest})`,
    );
  }
  return found;
}

function sealVersion(
  policyId: string,
  version: number,
  rules: PolicyRules,
  now: Date,
): PolicyVersion {
  const body = {
    policy_id: policyId,
    version,
    created_at: now.toISOString(),
    max_spend_usd: rules.max_spend_usd,
    allowed_domains: [...rules.allowed_domains],
    denied_domains: [...rules.denied_domains],
    allowed_models: rules.allowed_models === null ? null : [...rules.allowed_models],
    max_requests: rules.max_requests,
    max_runtime_seconds: rules.max_runtime_seconds,
    allow_private_networks: rules.allow_private_networks,
    prices: rules.prices,
    // Written only when set: a policy without them hashes as before they existed.
    ...Object.fromEntries(
      LATER_POLICY_FIELDS.filter((field) => rules[field].length > 0).map((field) => [
        field,
        [...rules[field]],
      ]),
    ),
  };
  return withLaterFields({ ...body, sha256: policyContentHash(body) });
}

function writeVersion(home: Home, doc: PolicyVersion): boolean {
  const path = join(policyDir(home, doc.policy_id), versionFileName(doc.version));
  // The later fields go into the file only when set, as sealVersion hashed them.
  const later: readonly string[] = LATER_POLICY_FIELDS;
  const file = Object.fromEntries(
    Object.entries(doc).filter(
      ([key, value]) => !later.includes(key) || (Array.isArray(value) && value.length > 0),
    ),
  );
  return createFileExclusive(path, `${JSON.stringify(file, null, 2)}\n`, PUBLIC_FILE_MODE);
}

function lockPath(home: Home, policyId: string): string {
  return join(policyDir(home, policyId), ".lock");
}

export function createPolicy(
  home: Home,
  policyId: string,
  rules: PolicyRules,
  now: Date,
): PolicyVersion {
  assertValidId("policy", policyId);
  mkdirSync(policyDir(home, policyId), { recursive: true, mode: DIR_MODE });
  return withFileLock(lockPath(home, policyId), () => {
    if (listPolicyVersions(home, policyId).length > 0) {
      throw new VallignusError(
        "ERR_POLICY_EXISTS",
        `policy ${JSON.stringify(policyId)} already exists; use update-policy`,
      );
    }
    const doc = sealVersion(policyId, 1, rules, now);
    if (!writeVersion(home, doc)) {
      throw new VallignusError(
        "ERR_POLICY_EXISTS",
        `policy ${JSON.stringify(policyId)} already exists`,
      );
    }
    return doc;
  });
}

function uniqueSorted(list: readonly string[]): string[] {
  return [...new Set(list)].sort();
}

export function applyPolicyChanges(base: PolicyRules, changes: PolicyChanges): PolicyRules {
  let allowed = [...(changes.allowed_domains ?? base.allowed_domains)];
  for (const domain of changes.remove_domains ?? []) {
    if (!allowed.includes(domain)) {
      throw new VallignusError(
        "ERR_POLICY_DOMAIN_ABSENT",
        `${domain} is not in the allowed domains`,
      );
    }
    allowed = allowed.filter((d) => d !== domain);
  }
  allowed.push(...(changes.add_domains ?? []));
  return {
    max_spend_usd: changes.max_spend_usd ?? base.max_spend_usd,
    allowed_domains: uniqueSorted(allowed),
    denied_domains: uniqueSorted(changes.denied_domains ?? base.denied_domains),
    allowed_models:
      changes.allowed_models === undefined
        ? base.allowed_models
        : changes.allowed_models === null
          ? null
          : uniqueSorted(changes.allowed_models),
    max_requests: changes.max_requests === undefined ? base.max_requests : changes.max_requests,
    max_runtime_seconds:
      changes.max_runtime_seconds === undefined
        ? base.max_runtime_seconds
        : changes.max_runtime_seconds,
    allow_private_networks: changes.allow_private_networks ?? base.allow_private_networks,
    prices: { ...base.prices, ...(changes.prices ?? {}) },
    secrets: uniqueSorted(changes.secrets ?? base.secrets),
    inspect_hosts: uniqueSorted(changes.inspect_hosts ?? base.inspect_hosts),
    allow_requests: uniqueSorted(changes.allow_requests ?? base.allow_requests),
    deny_requests: uniqueSorted(changes.deny_requests ?? base.deny_requests),
  };
}

/** Writes version n+1 under the policy's lock; earlier versions are never touched. */
export function updatePolicy(
  home: Home,
  policyId: string,
  changes: PolicyChanges,
  now: Date,
): PolicyVersion {
  assertValidId("policy", policyId);
  getPolicyVersion(home, policyId);
  return withFileLock(lockPath(home, policyId), () => {
    const latest = getPolicyVersion(home, policyId);
    const rules = applyPolicyChanges(latest, changes);
    const doc = sealVersion(policyId, latest.version + 1, rules, now);
    if (!writeVersion(home, doc)) {
      throw new VallignusError(
        "ERR_POLICY_CONFLICT",
        `version ${doc.version} appeared while writing it`,
      );
    }
    return doc;
  });
}

export function listPolicyIds(home: Home): string[] {
  return readdirSync(home.dir("policies"), { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && listPolicyVersions(home, entry.name).length > 0)
    .map((entry) => entry.name)
    .sort();
}
