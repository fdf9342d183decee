export { parseDomainPattern, normalizeHostName } from "./domain-pattern.js";
export type { DomainPattern, PatternResult } from "./domain-pattern.js";
export { parseDurationSeconds, formatDuration } from "./duration.js";
export { parseUsdToNano, formatNanoUsd, NANO_PER_USD, MAX_USD } from "./money.js";
export { describePolicyVersionProblem, isValidId, isValidModelName } from "./policy-version.js";
export type { ModelPrice, PolicyRules, PolicyVersion } from "./policy-version.js";
export {
  ALLOW,
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
  ResolvedAddress,
  TargetFacts,
} from "./decide.js";
