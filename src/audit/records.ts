import { canonicalJson, sha256Hex } from "../authority/canonical-json.js";
import type { DenyReason } from "../policy/index.js";
import { capAuditText, MAX_AUDIT_TEXT_CHARS } from "./redact-path.js";

/** `prev_hash` of the first record: there is nothing before it to link to. */
export const GENESIS_HASH = "0".repeat(64);

/** Who ran: every record, decision or event, and every 403, carries the whole identity. */
export type RunIdentity = {
  readonly session_id: string;
  readonly agent_id: string;
  readonly owner: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly jti: string;
};

/**
 * What a metered LLM call adds. Amounts are exact decimal USD strings ("0.000125"), as policies
 * write them, because floats would make the log disagree with the ledger.
 */
export type MeteredFields = {
  readonly provider?: string;
  readonly model?: string;
  /** null when the response carried no usage. */
  readonly input_tokens?: number | null;
  readonly output_tokens?: number | null;
  readonly cost_usd?: string;
  /** What was reserved before the call left; the charge is settled against it. */
  readonly reserved_usd?: string;
  /** The whole reservation was charged (a stream cut short, usage missing): `charge_reason` says why. */
  readonly charged_full?: true;
  readonly charge_reason?: string;
  /** Absent when the ledger could not settle the call (the reservation stays open, fail closed). */
  readonly spent_usd?: string;
  readonly budget_usd?: string;
};

/**
 * One request's decision. `scheme`, `host`, `port` and `path` are null only when the request
 * could not be parsed at all (denied `malformed_request`). `path` must already be redacted.
 */
export type DecisionFields = RunIdentity &
  MeteredFields & {
    readonly method: string;
    readonly scheme: "http" | "https" | null;
    readonly host: string | null;
    readonly port: number | null;
    readonly path: string | null;
    readonly status: number;
    readonly bytes_in: number;
    readonly bytes_out: number;
    readonly duration_ms: number;
    /** A short, secret-free note on an upstream failure. */
    readonly error?: string;
    /**
     * Secrets by name (never a value): on a denial, the one the request carried where it may
     * not go; on an allowed request, the ones whose stand-ins were swapped in, joined by ",".
     */
    readonly secret?: string;
  } & (
    { readonly decision: "allow" } | { readonly decision: "deny"; readonly deny_reason: DenyReason }
  );

/** Where and how a request went, as the proxy read it; null where it could not be parsed. */
export interface RequestLine {
  readonly method: string;
  readonly scheme: "http" | "https" | null;
  readonly host: string | null;
  readonly port: number | null;
  /** Already redacted. */
  readonly path: string | null;
}

/** How a request ended. */
export interface RequestEnd {
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  /** Why it failed or was refused, when there is more to say than the deny reason. */
  readonly error?: string | undefined;
  /** The secrets it involved, by name (see DecisionFields.secret). */
  readonly secret?: string | undefined;
}

/** Audit errors are short notes: a long upstream message could carry anything. */
const MAX_ERROR_CHARS = 200;

/**
 * The one place a decision record is built: identity, request, outcome, then what a metered
 * call adds. `deny` is the reason for a denial, undefined for an allowed request.
 */
export function decisionRecord(
  identity: RunIdentity,
  request: RequestLine,
  deny: DenyReason | undefined,
  end: RequestEnd,
  metered?: MeteredFields,
): DecisionFields {
  // Field by field, not `...identity`: on Node 20 a literal that starts with a spread and goes
  // on with a dozen more fields takes ~17 µs to build, this one ~1 µs (every request pays it).
  return {
    session_id: identity.session_id,
    ...(deny === undefined ? ALLOWED : { decision: "deny", deny_reason: deny }),
    agent_id: identity.agent_id,
    owner: identity.owner,
    policy_id: identity.policy_id,
    policy_version: identity.policy_version,
    jti: identity.jti,
    method: request.method,
    scheme: request.scheme,
    host: request.host,
    port: request.port,
    path: request.path,
    status: end.status,
    bytes_in: end.bytesIn,
    bytes_out: end.bytesOut,
    duration_ms: end.durationMs,
    ...cappedModel(metered),
    ...(end.error === undefined ? {} : { error: end.error.slice(0, MAX_ERROR_CHARS) }),
    ...(end.secret === undefined ? {} : { secret: end.secret }),
  };
}

const ALLOWED = { decision: "allow" } as const;

/** The model is the agent's own text: bounded like a path. Rarely cut, so rarely copied. */
function cappedModel(metered: MeteredFields | undefined): MeteredFields | undefined {
  const model = metered?.model;
  if (model === undefined || model.length <= MAX_AUDIT_TEXT_CHARS) return metered;
  return { ...metered, model: capAuditText(model) };
}

export const LIFECYCLE_EVENTS = [
  "run_start",
  "run_end",
  "token_revoked_live",
  "agent_disabled_live",
  "token_expired_live",
  "limit_reached",
  "budget_exhausted",
] as const;

export type LifecycleEventName = (typeof LIFECYCLE_EVENTS)[number];

/** A run's lifecycle event; events may carry extra secret-free detail (proxy port, counts). */
export type LifecycleFields = RunIdentity & { readonly [extra: string]: unknown } & (
    | { readonly event: Exclude<LifecycleEventName, "run_end"> }
    | { readonly event: "run_end"; readonly exit_status: number; readonly reason: string }
  );

/** What `AuditLog.append` takes: the log adds `seq`, `prev_hash`, `hash` and, unless given, `ts`. */
export type AuditAppendInput = (DecisionFields | LifecycleFields) & { readonly ts?: string };

/** What the log adds to every line. */
export type ChainFields = {
  readonly ts: string;
  readonly seq: number;
  readonly prev_hash: string;
  readonly hash: string;
};

export type DecisionRecord = DecisionFields & ChainFields;
export type LifecycleRecord = LifecycleFields & ChainFields;
export type AuditRecord = DecisionRecord | LifecycleRecord;

export function isDecisionRecord(record: AuditRecord): record is DecisionRecord {
  return "decision" in record && !("event" in record);
}

/**
 * The chain hash: sha256 over the record's JSON text without `hash`, keys in the order written
 * (`hash` is always the last key of a line, so parsing a line and serializing it again without
 * `hash` gives back the hashed text). Hashing the text we write anyway, rather than a second,
 * key-sorted serialization, halves the cost of an audit line.
 */
export function auditRecordHash(record: Readonly<Record<string, unknown>>): string {
  const { hash: _ignored, ...rest } = record;
  return sha256Hex(JSON.stringify(rest));
}

/**
 * Whether `hash` is this record's chain hash: over the text as written, or, for lines written
 * before 2026-11-26, over the record's canonical JSON (keys sorted), so older logs still verify.
 * Either way the hash covers every field but `hash`; an edit shows unless the editor rehashes,
 * which the chain (without a key) never could prevent.
 */
export function recordHashMatches(
  record: Readonly<Record<string, unknown>>,
  hash: string,
): boolean {
  if (auditRecordHash(record) === hash) return true;
  const { hash: _ignored, ...rest } = record;
  return sha256Hex(canonicalJson(rest)) === hash;
}

const HASH_PATTERN = /^[0-9a-f]{64}$/;

export function isHashHex(value: unknown): value is string {
  return typeof value === "string" && HASH_PATTERN.test(value);
}

const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isNullOr =
  <T>(check: (v: unknown) => v is T) =>
  (v: unknown): v is T | null =>
    v === null || check(v);

/**
 * Checks the shape of a parsed line, so readers can trust the types. It does not check the
 * chain (that is `verifyAuditLog`'s job); a line of the wrong shape is undefined.
 */
export function toAuditRecord(value: unknown): AuditRecord | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  const common =
    isString(r["ts"]) &&
    Number.isSafeInteger(r["seq"]) &&
    isString(r["prev_hash"]) &&
    isString(r["hash"]) &&
    isString(r["session_id"]) &&
    isString(r["agent_id"]) &&
    isString(r["owner"]) &&
    isString(r["policy_id"]) &&
    isNumber(r["policy_version"]) &&
    isString(r["jti"]);
  if (!common) return undefined;
  if ("event" in r) {
    const event = r["event"];
    if (!LIFECYCLE_EVENTS.some((e) => e === event)) return undefined;
    if (event === "run_end" && !(isNumber(r["exit_status"]) && isString(r["reason"])))
      return undefined;
    return r as LifecycleRecord;
  }
  const decision =
    (r["decision"] === "allow" || (r["decision"] === "deny" && isString(r["deny_reason"]))) &&
    isString(r["method"]) &&
    isNullOr(isString)(r["scheme"]) &&
    isNullOr(isString)(r["host"]) &&
    isNullOr(isNumber)(r["port"]) &&
    isNullOr(isString)(r["path"]) &&
    isNumber(r["status"]) &&
    isNumber(r["bytes_in"]) &&
    isNumber(r["bytes_out"]) &&
    isNumber(r["duration_ms"]);
  return decision ? (r as DecisionRecord) : undefined;
}
