export { parseDomainPattern, normalizeHostName } from "./domain-pattern.js";
export type { DomainPattern, PatternResult } from "./domain-pattern.js";
export { parseDurationSeconds, formatDuration } from "./duration.js";
export { parseUsdToNano, formatNanoUsd, NANO_PER_USD, MAX_USD } from "./money.js";
export {
  describePolicyVersionProblem,
  isValidId,
  isValidModelName,
  isValidSecretName,
  LATER_POLICY_FIELDS,
  withLaterFields,
} from "./policy-version.js";
export { compileRequestRules, normalizeRulePath, parseRequestRule } from "./request-rule.js";
export type {
  CompiledRequestRules,
  NormalizedPath,
  RequestRule,
  RuleRequest,
  RuleResult,
} from "./request-rule.js";
export type { ModelPrice, PolicyRules, PolicyVersion } from "./policy-version.js";
export {
  ALLOW,
  compileHostSet,
  compilePolicy,
  decideAddresses,
  decideModel,
  decideRequestCount,
  decideTarget,
  deny,
} from "./decide.js";
export type {
  CompiledPolicy,
  Decision,
  DenyReason,
  HostSet,
  ResolvedAddress,
  TargetFacts,
} from "./decide.js";
