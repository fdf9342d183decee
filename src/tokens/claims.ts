/** The issuer every Vallignus token names. */
export const ISSUER = "vallignus";

/** Tokens are compared against the local clock; this much lateness is forgiven (documented). */
export const CLOCK_SKEW_SECONDS = 2;

/** Tokens longer than this are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 8192;

/** The claims of a Vallignus token, as the contract names them. */
export interface TokenClaims {
  readonly iss: typeof ISSUER;
  readonly sub: string;
  readonly agent_id: string;
  readonly owner: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly policy_sha256: string;
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
}

const ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const JTI = /^[0-9a-f]{32}$/;
const SHA256 = /^[0-9a-f]{64}$/;

function isTime(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

/** Validates decoded claims; returns the reason they are unacceptable, or undefined. */
export function describeClaimsProblem(claims: Record<string, unknown>): string | undefined {
  if (claims["iss"] !== ISSUER) return `issuer is not "${ISSUER}"`;
  const agentId = claims["agent_id"];
  if (typeof agentId !== "string" || !ID.test(agentId)) return "agent_id is missing or invalid";
  if (claims["sub"] !== agentId) return "sub does not equal agent_id";
  if (typeof claims["owner"] !== "string") return "owner is missing";
  const policyId = claims["policy_id"];
  if (typeof policyId !== "string" || !ID.test(policyId)) return "policy_id is missing or invalid";
  const version = claims["policy_version"];
  if (!Number.isSafeInteger(version) || (version as number) < 1) return "policy_version is invalid";
  const hash = claims["policy_sha256"];
  if (typeof hash !== "string" || !SHA256.test(hash)) return "policy_sha256 is invalid";
  if (!isTime(claims["iat"]) || !isTime(claims["exp"])) return "iat or exp is missing";
  if (claims["exp"] <= claims["iat"]) return "exp is not after iat";
  const jti = claims["jti"];
  if (typeof jti !== "string" || !JTI.test(jti))
    return "jti is missing or not 128 random bits in hex";
  return undefined;
}
