import type { PolicyRules, PolicyVersion } from "../policy/index.js";
import type { SecretMeta, StoredSecret } from "../secrets/index.js";
import { createAgent, findAgent, getAgent, listAgents, setAgentDisabled } from "./agents.js";
import type { Agent } from "./agents.js";
import type { Home } from "./home.js";
import {
  activeKid,
  activeSigningKey,
  findSigningKey,
  listSigningKeys,
  rotateSigningKey,
  type SigningKey,
} from "./keys.js";
import {
  createPolicy,
  findPolicyVersion,
  getPolicyVersion,
  listPolicyIds,
  listPolicyVersions,
  updatePolicy,
  type PolicyChanges,
} from "./policies.js";
import { findRevocation, listRevocations, revokeJti, type Revocation } from "./revocations.js";
import {
  findSecret,
  listSecrets,
  removeSecret,
  rotateSecret,
  secretReader,
  setSecret,
  type SecretReader,
  type SecretSpec,
} from "./secrets.js";

/**
 * The authority's state: agents, policy versions, signing keys, revocations, secrets. Everything that
 * issues or verifies a token reaches it through this interface, so that a second backend (a
 * shared database, for a fleet) can stand where the files under $VALLIGNUS_HOME stand now.
 *
 * What an implementation must keep: a policy version, once written, never changes (a new one is
 * the next number, and a clash is ERR_POLICY_CONFLICT, not an overwrite); creating an agent or a
 * revocation that exists is refused or reported, never replaced; reads check what they read and
 * throw (fail closed) rather than return something they could not check; ids are validated.
 * A secret's value leaves the store only through `findSecret` and `secretReader` (for a run's
 * proxy); it is in no error message, and nothing that lists secrets returns it.
 */
export interface AuthorityStore {
  findAgent(agentId: string): Agent | undefined;
  /** ERR_AGENT_NOT_FOUND when there is none. */
  getAgent(agentId: string): Agent;
  listAgents(): Agent[];
  /** ERR_AGENT_EXISTS when the id is taken. */
  createAgent(agentId: string, owner: string, now: Date): Agent;
  setAgentDisabled(agentId: string, disabled: boolean, now: Date): Agent;

  listPolicyIds(): string[];
  /** Ascending; empty when the policy does not exist. */
  listPolicyVersions(policyId: string): number[];
  /** Undefined when that version does not exist; throws when it exists but does not check. */
  findPolicyVersion(policyId: string, version: number): PolicyVersion | undefined;
  /** The given version, or the latest; throws when there is none. */
  getPolicyVersion(policyId: string, version?: number): PolicyVersion;
  createPolicy(policyId: string, rules: PolicyRules, now: Date): PolicyVersion;
  /** Writes the next version from the latest and the changes. */
  updatePolicy(policyId: string, changes: PolicyChanges, now: Date): PolicyVersion;

  activeKid(): string;
  /** The active key with its private half, for signing. */
  activeSigningKey(): SigningKey;
  /** A key by the kid a token names (public half only). */
  findSigningKey(kid: string): SigningKey | undefined;
  listSigningKeys(): SigningKey[];
  rotateSigningKey(
    now: Date,
    revokePrevious: boolean,
  ): { kid: string; previous: string | undefined; revoked: string[] };

  findRevocation(jti: string): Revocation | undefined;
  /** Revoking twice keeps the first record and reports it (`already`). */
  revokeJti(jti: string, reason: string, now: Date): { revocation: Revocation; already: boolean };
  listRevocations(): Revocation[];

  /** ERR_SECRET_EXISTS when the name is taken: a value changes only by rotation. */
  setSecret(spec: SecretSpec, value: string, now: Date): SecretMeta;
  /** A new value, same hosts and placements; ERR_SECRET_NOT_FOUND when there is none. */
  rotateSecret(name: string, value: string, now: Date): SecretMeta;
  /** ERR_SECRET_NOT_FOUND when there is none. */
  removeSecret(name: string): void;
  /** Without values, sorted by name. */
  listSecrets(): SecretMeta[];
  findSecret(name: string): StoredSecret | undefined;
  /** Fresh on every call (a rotation is seen by the next), for a process that serves requests. */
  secretReader(): SecretReader;
}

/** The default store: the files under $VALLIGNUS_HOME, in the format CONTRACT.md describes. */
export function fileAuthorityStore(home: Home): AuthorityStore {
  return {
    findAgent: (agentId) => findAgent(home, agentId),
    getAgent: (agentId) => getAgent(home, agentId),
    listAgents: () => listAgents(home),
    createAgent: (agentId, owner, now) => createAgent(home, agentId, owner, now),
    setAgentDisabled: (agentId, disabled, now) => setAgentDisabled(home, agentId, disabled, now),
    listPolicyIds: () => listPolicyIds(home),
    listPolicyVersions: (policyId) => listPolicyVersions(home, policyId),
    findPolicyVersion: (policyId, version) => findPolicyVersion(home, policyId, version),
    getPolicyVersion: (policyId, version) => getPolicyVersion(home, policyId, version),
    createPolicy: (policyId, rules, now) => createPolicy(home, policyId, rules, now),
    updatePolicy: (policyId, changes, now) => updatePolicy(home, policyId, changes, now),
    activeKid: () => activeKid(home),
    activeSigningKey: () => activeSigningKey(home),
    findSigningKey: (kid) => findSigningKey(home, kid),
    listSigningKeys: () => listSigningKeys(home),
    rotateSigningKey: (now, revokePrevious) => rotateSigningKey(home, now, revokePrevious),
    findRevocation: (jti) => findRevocation(home, jti),
    revokeJti: (jti, reason, now) => revokeJti(home, jti, reason, now),
    listRevocations: () => listRevocations(home),
    setSecret: (spec, value, now) => setSecret(home, spec, value, now),
    rotateSecret: (name, value, now) => rotateSecret(home, name, value, now),
    removeSecret: (name) => removeSecret(home, name),
    listSecrets: () => listSecrets(home),
    findSecret: (name) => findSecret(home, name),
    secretReader: () => secretReader(home),
  };
}
