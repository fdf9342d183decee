import { VallignusError } from "../errors.js";
import {
  inspectToken,
  REFUSAL_CODES,
  signToken,
  verifyToken,
  type TokenAuthorityView,
  type TokenClaims,
  type TokenInspection,
} from "../tokens/index.js";
import { fileAuthorityStore, type AuthorityStore } from "./authority-store.js";
import { hasLocalCa, createLocalCa, loadLocalCa } from "./local-ca.js";
import { type Home } from "./home.js";

/** The longest a token may live: tokens are meant to be short-lived. */
export const MAX_TTL_SECONDS = 30 * 86_400;

/** Lookups into this home for token verification. Errors reading state propagate (fail closed). */
export function authorityView(home: Home): TokenAuthorityView {
  return authorityViewOf(fileAuthorityStore(home));
}

/** Lookups into a store for token verification. Errors reading state propagate (fail closed). */
export function authorityViewOf(store: AuthorityStore): TokenAuthorityView {
  return {
    findKey: (kid) => {
      const key = store.findSigningKey(kid);
      return key === undefined
        ? undefined
        : { publicKey: key.publicKey, revoked: key.revoked_at !== null };
    },
    isRevoked: (jti) => store.findRevocation(jti) !== undefined,
    findAgent: (agentId) => store.findAgent(agentId),
    findPolicyHash: (policyId, version) => {
      try {
        const found = store.findPolicyVersion(policyId, version);
        return found === undefined ? undefined : { sha256: found.sha256 };
      } catch (err) {
        if (
          err instanceof VallignusError &&
          (err.code === "ERR_POLICY_TAMPERED" ||
            err.code === "ERR_POLICY_CORRUPT" ||
            err.code === "ERR_HOME_CORRUPT")
        ) {
          return { tampered: true };
        }
        throw err;
      }
    },
  };
}

export interface InitResult {
  readonly created: string[];
}

/** `auth init`: idempotent; `force` replaces the signing key (old ones revoked) and the CA. */
export async function initHome(home: Home, now: Date, force: boolean): Promise<InitResult> {
  const created: string[] = [];
  const store = fileAuthorityStore(home);
  const wasInitialized = home.isInitialized();
  home.ensureLayout();
  if (wasInitialized) {
    // Refuse (before changing anything) a home whose secrets others can read.
    store.activeKid();
    store.listSigningKeys();
    if (hasLocalCa(home)) loadLocalCa(home);
  }
  if (!wasInitialized || force) {
    const { kid } = store.rotateSigningKey(now, force);
    created.push(`signing key ${kid}`);
  }
  if (!hasLocalCa(home) || force) {
    await createLocalCa(home, now);
    created.push("local CA");
  }
  return { created };
}

/** Signs a token for an enabled agent and an existing policy version. */
export async function issueTokenFrom(
  store: AuthorityStore,
  agentId: string,
  policyId: string,
  version: number | undefined,
  ttlSeconds: number,
  now: Date,
): Promise<{ token: string; claims: TokenClaims }> {
  const agent = store.getAgent(agentId);
  if (agent.disabled) {
    throw new VallignusError("ERR_AGENT_DISABLED", `agent ${JSON.stringify(agentId)} is disabled`);
  }
  const policy = store.getPolicyVersion(policyId, version);
  if (ttlSeconds > MAX_TTL_SECONDS) {
    throw new VallignusError("ERR_TOKEN_TTL", `--ttl may be at most 30d`);
  }
  const key = store.activeSigningKey();
  if (key.privateKey === undefined || key.revoked_at !== null) {
    throw new VallignusError("ERR_HOME_CORRUPT", "the active signing key cannot sign");
  }
  return signToken(
    {
      agentId: agent.agent_id,
      owner: agent.owner,
      policyId: policy.policy_id,
      policyVersion: policy.version,
      policySha256: policy.sha256,
    },
    { kid: key.kid, privateKey: key.privateKey },
    now,
    ttlSeconds,
  );
}

/**
 * The verification `run` and `verify-token` use, against any store. Throws a refusal (exit 3)
 * unless every check passes.
 */
export async function requireValidTokenIn(
  store: AuthorityStore,
  token: string,
  now: Date,
): Promise<TokenClaims> {
  const verdict = await verifyToken(token, authorityViewOf(store), now);
  if (!verdict.ok) {
    throw new VallignusError(REFUSAL_CODES[verdict.reason], `token refused: ${verdict.message}`);
  }
  return verdict.claims;
}

export function inspectTokenIn(
  store: AuthorityStore,
  token: string,
  now: Date,
): Promise<TokenInspection> {
  return inspectToken(token, authorityViewOf(store), now);
}
