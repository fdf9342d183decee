export { Home, resolveHomeDir, HOME_SUBDIRS } from "./home.js";
export { createAgent, getAgent, listAgents, setAgentDisabled, assertValidId } from "./agents.js";
export type { Agent } from "./agents.js";
export {
  applyPolicyChanges,
  createPolicy,
  getPolicyVersion,
  listPolicyIds,
  listPolicyVersions,
  updatePolicy,
} from "./policies.js";
export type { PolicyChanges } from "./policies.js";
export { activeKid, listSigningKeys, rotateSigningKey } from "./keys.js";
export { findRevocation, listRevocations, revokeJti } from "./revocations.js";
export { caPaths, leafCertificateFor, loadLocalCa } from "./local-ca.js";
export type { LeafCertificate, LocalCa } from "./local-ca.js";
export { fileAuthorityStore } from "./authority-store.js";
export type { AuthorityStore } from "./authority-store.js";
export type { Revocation } from "./revocations.js";
export type { SigningKey } from "./keys.js";
export { findSecret, listSecrets, secretReader } from "./secrets.js";
export type { SecretReader, SecretSpec } from "./secrets.js";
export {
  assertSecretName,
  assertSecretValue,
  describePlacement,
  placementsFromFlags,
  secretFingerprint,
  stripOneLineBreak,
  MAX_SECRET_LENGTH,
  MIN_SECRET_LENGTH,
} from "./secret-spec.js";
export type { PlacementFlags } from "./secret-spec.js";
export {
  authorityView,
  authorityViewOf,
  issueTokenFrom,
  initHome,
  inspectTokenIn,
  MAX_TTL_SECONDS,
  requireValidTokenIn,
} from "./authority.js";
