import type { KeyObject } from "node:crypto";

import {
  compactVerify,
  decodeJwt,
  decodeProtectedHeader,
  type ProtectedHeaderParameters,
} from "jose";

import type { ErrorCode } from "../errors.js";
import {
  CLOCK_SKEW_SECONDS,
  describeClaimsProblem,
  MAX_TOKEN_LENGTH,
  type TokenClaims,
} from "./claims.js";

/** Why a token is refused. Each maps to one `ERR_TOKEN_*` code. */
export type TokenRefusal =
  | "token_malformed"
  | "token_bad_algorithm"
  | "token_unknown_key"
  | "token_key_revoked"
  | "token_bad_signature"
  | "token_bad_claims"
  | "token_expired"
  | "token_revoked"
  | "agent_unknown"
  | "agent_disabled"
  | "policy_unknown"
  | "policy_mismatch";

export const REFUSAL_CODES: Readonly<Record<TokenRefusal, ErrorCode>> = {
  token_malformed: "ERR_TOKEN_MALFORMED",
  token_bad_algorithm: "ERR_TOKEN_ALGORITHM",
  token_unknown_key: "ERR_TOKEN_UNKNOWN_KEY",
  token_key_revoked: "ERR_TOKEN_KEY_REVOKED",
  token_bad_signature: "ERR_TOKEN_SIGNATURE",
  token_bad_claims: "ERR_TOKEN_CLAIMS",
  token_expired: "ERR_TOKEN_EXPIRED",
  token_revoked: "ERR_TOKEN_REVOKED",
  agent_unknown: "ERR_TOKEN_AGENT_UNKNOWN",
  agent_disabled: "ERR_TOKEN_AGENT_DISABLED",
  policy_unknown: "ERR_TOKEN_POLICY_UNKNOWN",
  policy_mismatch: "ERR_TOKEN_POLICY_MISMATCH",
};

/** What verification needs to know of the authority; the caller does the I/O. */
export interface TokenAuthorityView {
  findKey(kid: string): { publicKey: KeyObject; revoked: boolean } | undefined;
  isRevoked(jti: string): boolean;
  findAgent(agentId: string): { owner: string; disabled: boolean } | undefined;
  /** The stored hash of a version; `tampered` when its file no longer matches that hash. */
  findPolicyHash(
    policyId: string,
    version: number,
  ): { sha256: string } | { tampered: true } | undefined;
}

export type CheckName =
  | "format"
  | "algorithm"
  | "kid"
  | "key_not_revoked"
  | "signature"
  | "claims"
  | "expiry"
  | "revocation"
  | "agent"
  | "policy";

export interface CheckVerdict {
  readonly check: CheckName;
  /** null: could not be checked because an earlier step failed. */
  readonly ok: boolean | null;
  readonly detail: string;
}

export interface TokenInspection {
  readonly header: ProtectedHeaderParameters | undefined;
  readonly claims: Record<string, unknown> | undefined;
  readonly checks: readonly CheckVerdict[];
}

export type TokenVerdict =
  | { readonly ok: true; readonly claims: TokenClaims; readonly kid: string }
  | { readonly ok: false; readonly reason: TokenRefusal; readonly message: string };

interface Failure {
  readonly reason: TokenRefusal;
  readonly message: string;
}

/**
 * The verdicts so far, in the fixed order of the checks. With `stopAtFirst` a failure ends the
 * run (verification); without, checks go on where they can (inspection shows every verdict).
 */
class Checklist {
  readonly checks: CheckVerdict[] = [];
  failure: Failure | undefined;

  constructor(private readonly stopAtFirst: boolean) {}

  /** Records one verdict; true when the checks should stop here. */
  record(check: CheckName, ok: boolean | null, detail: string, reason?: TokenRefusal): boolean {
    this.checks.push({ check, ok, detail });
    if (ok === false && reason !== undefined && this.failure === undefined)
      this.failure = { reason, message: detail };
    return ok === false && this.stopAtFirst;
  }

  result(
    header: ProtectedHeaderParameters | undefined,
    claims: Record<string, unknown> | undefined,
  ): { inspection: TokenInspection; failure: Failure | undefined } {
    return { inspection: { header, claims, checks: this.checks }, failure: this.failure };
  }
}

/** What decoded; `claims` is undefined when the token is not a decodable compact JWT. */
type Decoded = {
  header: ProtectedHeaderParameters | undefined;
  claims: Record<string, unknown> | undefined;
};

/** A token that is not a decodable compact JWT ends every check, inspection included. */
function checkFormat(list: Checklist, token: string): Decoded {
  if (
    token.length > MAX_TOKEN_LENGTH ||
    !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)
  ) {
    list.record("format", false, "not a compact JWT", "token_malformed");
    return { header: undefined, claims: undefined };
  }
  let header: ProtectedHeaderParameters | undefined;
  try {
    header = decodeProtectedHeader(token);
    const decoded = { header, claims: decodeJwt(token) };
    list.record("format", true, "compact JWT");
    return decoded;
  } catch {
    list.record("format", false, "header or payload does not decode", "token_malformed");
    // Inspection still shows a header that decoded.
    return { header, claims: undefined };
  }
}

function checkAlgorithm(list: Checklist, header: ProtectedHeaderParameters): boolean {
  if (header.alg === "EdDSA" && header.crit === undefined)
    return list.record("algorithm", true, "EdDSA");
  const detail = `algorithm ${String(header.alg)} is not EdDSA`;
  return list.record("algorithm", false, detail, "token_bad_algorithm");
}

/** kid known, key not revoked, and the signature made with it. */
async function checkKey(
  list: Checklist,
  token: string,
  header: ProtectedHeaderParameters,
  view: TokenAuthorityView,
): Promise<boolean> {
  const kid = typeof header.kid === "string" ? header.kid : undefined;
  const key = kid === undefined ? undefined : view.findKey(kid);
  if (kid === undefined || key === undefined) {
    const detail =
      kid === undefined ? "no kid in header" : `kid ${kid} is not a key of this authority`;
    if (list.record("kid", false, detail, "token_unknown_key")) return true;
    list.record("key_not_revoked", null, "unknown key");
    return list.record("signature", null, "unknown key");
  }
  list.record("kid", true, `kid ${kid}`);
  const keyDetail = key.revoked ? `key ${kid} was revoked` : "key in force";
  if (list.record("key_not_revoked", !key.revoked, keyDetail, "token_key_revoked")) return true;
  let signatureOk = false;
  if (header.alg === "EdDSA") {
    try {
      await compactVerify(token, key.publicKey, { algorithms: ["EdDSA"] });
      signatureOk = true;
    } catch {
      signatureOk = false;
    }
  }
  const detail = signatureOk ? "valid Ed25519 signature" : "signature does not verify";
  return list.record("signature", signatureOk, detail, "token_bad_signature");
}

/** The claims, typed, when all are present and well-formed; the checks after it need them. */
function checkClaims(list: Checklist, claims: Record<string, unknown>): TokenClaims | undefined {
  const problem = describeClaimsProblem(claims);
  if (problem !== undefined) {
    list.record("claims", false, problem, "token_bad_claims");
    for (const check of ["expiry", "revocation", "agent", "policy"] as const) {
      list.record(check, null, "claims are invalid");
    }
    return undefined;
  }
  list.record("claims", true, "all claims present and well-formed");
  return claims as unknown as TokenClaims;
}

function checkExpiry(list: Checklist, claims: TokenClaims, now: Date): boolean {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const until = new Date(claims.exp * 1000).toISOString();
  if (claims.iat > nowSeconds + CLOCK_SKEW_SECONDS)
    return list.record("expiry", false, "issued in the future", "token_bad_claims");
  if (nowSeconds >= claims.exp + CLOCK_SKEW_SECONDS)
    return list.record("expiry", false, `expired at ${until}`, "token_expired");
  return list.record("expiry", true, `valid until ${until}`);
}

function checkRevocation(list: Checklist, claims: TokenClaims, view: TokenAuthorityView): boolean {
  const revoked = view.isRevoked(claims.jti);
  const detail = revoked ? `jti ${claims.jti} is revoked` : "not revoked";
  return list.record("revocation", !revoked, detail, "token_revoked");
}

function checkAgent(list: Checklist, claims: TokenClaims, view: TokenAuthorityView): boolean {
  const agent = view.findAgent(claims.agent_id);
  const name = `agent ${claims.agent_id}`;
  if (agent === undefined)
    return list.record("agent", false, `${name} does not exist`, "agent_unknown");
  if (agent.disabled) return list.record("agent", false, `${name} is disabled`, "agent_disabled");
  if (agent.owner !== claims.owner)
    return list.record("agent", false, `owner does not match ${name}`, "token_bad_claims");
  return list.record("agent", true, `${name} enabled`);
}

function checkPolicy(list: Checklist, claims: TokenClaims, view: TokenAuthorityView): void {
  const stored = view.findPolicyHash(claims.policy_id, claims.policy_version);
  const name = `policy ${claims.policy_id} v${claims.policy_version}`;
  if (stored === undefined)
    list.record("policy", false, `${name} does not exist`, "policy_unknown");
  else if ("tampered" in stored)
    list.record("policy", false, `${name} was changed on disk`, "policy_mismatch");
  else if (stored.sha256 !== claims.policy_sha256)
    list.record("policy", false, `${name} hash differs from the token's`, "policy_mismatch");
  else list.record("policy", true, `${name} present, hash equal`);
}

/**
 * Runs every check in a fixed order. With `stopAtFirst`, it returns at the first failure
 * (verification); without, it goes on where it can (inspection, which shows every verdict).
 */
async function runChecks(
  token: string,
  view: TokenAuthorityView,
  now: Date,
  stopAtFirst: boolean,
): Promise<{ inspection: TokenInspection; failure: Failure | undefined }> {
  const list = new Checklist(stopAtFirst);
  const { header, claims } = checkFormat(list, token);
  if (header === undefined || claims === undefined) return list.result(header, claims);
  if (checkAlgorithm(list, header) || (await checkKey(list, token, header, view)))
    return list.result(header, claims);
  const valid = checkClaims(list, claims);
  const stopped =
    valid === undefined ||
    checkExpiry(list, valid, now) ||
    checkRevocation(list, valid, view) ||
    checkAgent(list, valid, view);
  if (!stopped) checkPolicy(list, valid, view);
  return list.result(header, claims);
}

/** Decodes without trusting and reports a verdict for every check. */
export async function inspectToken(
  token: string,
  view: TokenAuthorityView,
  now: Date,
): Promise<TokenInspection> {
  return (await runChecks(token, view, now, false)).inspection;
}

/** The one verification `auth verify-token` and `run` use: accepted only if every check passes. */
export async function verifyToken(
  token: string,
  view: TokenAuthorityView,
  now: Date,
): Promise<TokenVerdict> {
  const { inspection, failure } = await runChecks(token, view, now, true);
  if (failure !== undefined) return { ok: false, reason: failure.reason, message: failure.message };
  const claims = inspection.claims as unknown as TokenClaims;
  return { ok: true, claims, kid: String(inspection.header?.kid) };
}
