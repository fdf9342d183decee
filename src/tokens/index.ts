export { CLOCK_SKEW_SECONDS, ISSUER, MAX_TOKEN_LENGTH, describeClaimsProblem } from "./claims.js";
export type { TokenClaims } from "./claims.js";
export { newJti, signToken } from "./sign.js";
export type { TokenSubject } from "./sign.js";
export { REFUSAL_CODES, inspectToken, verifyToken } from "./verify.js";
export type {
  CheckName,
  CheckVerdict,
  TokenAuthorityView,
  TokenInspection,
  TokenRefusal,
  TokenVerdict,
} from "./verify.js";
