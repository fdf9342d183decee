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
 * Runs every check in a fixed order. With `stopAtFirst`, it returns at the first failure
 * (verification); without, it goes on where it can (inspection, which shows every verdict).
 */
async function runChecks(
  token: string,
  view: TokenAuthorityView,
  now: Date,
  stopAtFirst: boolean,
): Promise<{ inspection: TokenInspection; failure: Failure | undefined }> {
  const checks: CheckVerdict[] = [];
  let failure: Failure | undefined;
  let header: ProtectedHeaderParameters | undefined;
  let claims: Record<string, unknown> | undefined;
  const done = () => ({ inspection: { header, claims, checks }, failure });
  const record = (
    check: CheckName,
    ok: boolean | null,
    detail: string,
    reason?: TokenRefusal,
  ): boolean => {
    checks.push({ check, ok, detail });
    if (ok === false && reason !== undefined && failure === undefined)
      failure = { reason, message: detail };
    return ok === false && stopAtFirst;
  };

  if (
    token.length > MAX_TOKEN_LENGTH ||
    !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)
  ) {
    record("format", false, "not a compact JWT", "token_malformed");
    return done();
  }
  try {
    header = decodeProtectedHeader(token);
    claims = decodeJwt(token);
  } catch {
    record("format", false, "header or payload does not decode", "token_malformed");
    return done();
  }
  if (record("format", true, "compact JWT")) return done();

  if (header.alg !== "EdDSA" || header.crit !== undefined) {
    if (
      record(
        "algorithm",
        false,
        `algorithm ${String(header.alg)} is not EdDSA`,
        "token_bad_algorithm",
      )
    )
      return done();
  } else {
    record("algorithm", true, "EdDSA");
  }

  const kid = typeof header.kid === "string" ? header.kid : undefined;
  const key = kid === undefined ? undefined : view.findKey(kid);
  if (key === undefined) {
    const detail =
      kid === undefined ? "no kid in header" : `kid ${kid} is not a key of this authority`;
    if (record("kid", false, detail, "token_unknown_key")) return done();
    record("key_not_revoked", null, "unknown key");
    record("signature", null, "unknown key");
  } else {
    record("kid", true, `kid ${kid ?? ""}`);
    if (
      record(
        "key_not_revoked",
        !key.revoked,
        key.revoked ? `key ${kid ?? ""} was revoked` : "key in force",
        "token_key_revoked",
      )
    ) {
      return done();
    }
    let signatureOk = false;
    if (header.alg === "EdDSA") {
      try {
        await compactVerify(token, key.publicKey, { algorithms: ["EdDSA"] });
        signatureOk = true;
      } catch {
        signatureOk = false;
      }
    }
    if (
      record(
        "signature",
        signatureOk,
        signatureOk ? "valid Ed25519 signature" : "signature does not verify",
        "token_bad_signature",
      )
    ) {
      return done();
    }
  }

  const problem = describeClaimsProblem(claims);
  if (problem !== undefined) {
    record("claims", false, problem, "token_bad_claims");
    for (const check of ["expiry", "revocation", "agent", "policy"] as const) {
      record(check, null, "claims are invalid");
    }
    return done();
  }
  record("claims", true, "all claims present and well-formed");
  const valid = claims as unknown as TokenClaims;

  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (valid.iat > nowSeconds + CLOCK_SKEW_SECONDS) {
    if (record("expiry", false, "issued in the future", "token_bad_claims")) return done();
  } else if (nowSeconds >= valid.exp + CLOCK_SKEW_SECONDS) {
    if (
      record(
        "expiry",
        false,
        `expired at ${new Date(valid.exp * 1000).toISOString()}`,
        "token_expired",
      )
    )
      return done();
  } else {
    record("expiry", true, `valid until ${new Date(valid.exp * 1000).toISOString()}`);
  }

  const revoked = view.isRevoked(valid.jti);
  if (
    record(
      "revocation",
      !revoked,
      revoked ? `jti ${valid.jti} is revoked` : "not revoked",
      "token_revoked",
    )
  )
    return done();

  const agent = view.findAgent(valid.agent_id);
  if (agent === undefined) {
    if (record("agent", false, `agent ${valid.agent_id} does not exist`, "agent_unknown"))
      return done();
  } else if (agent.disabled) {
    if (record("agent", false, `agent ${valid.agent_id} is disabled`, "agent_disabled"))
      return done();
  } else if (agent.owner !== valid.owner) {
    if (record("agent", false, `owner does not match agent ${valid.agent_id}`, "token_bad_claims"))
      return done();
  } else {
    record("agent", true, `agent ${valid.agent_id} enabled`);
  }

  const stored = view.findPolicyHash(valid.policy_id, valid.policy_version);
  const policyName = `policy ${valid.policy_id} v${valid.policy_version}`;
  if (stored === undefined) {
    record("policy", false, `${policyName} does not exist`, "policy_unknown");
  } else if ("tampered" in stored) {
    record("policy", false, `${policyName} was changed on disk`, "policy_mismatch");
  } else if (stored.sha256 !== valid.policy_sha256) {
    record("policy", false, `${policyName} hash differs from the token's`, "policy_mismatch");
  } else {
    record("policy", true, `${policyName} present, hash equal`);
  }
  return done();
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
