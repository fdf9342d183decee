import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import type { PolicyRules, PolicyVersion } from "../policy/index.js";
import { verifyToken } from "../tokens/index.js";
import type { Agent } from "./agents.js";
import { authorityViewOf, issueTokenFrom } from "./authority.js";
import { fileAuthorityStore, type AuthorityStore } from "./authority-store.js";
import { Home } from "./home.js";
import { NO_RULES } from "../../test/helpers/policy-rules.js";
import type { SigningKey } from "./keys.js";
import type { Revocation } from "./revocations.js";

const root = mkdtempSync(join(tmpdir(), "vallignus-store-"));
after(() => rmSync(root, { recursive: true, force: true }));

const now = new Date("2026-12-02T12:00:00.000Z");
const RULES: PolicyRules = { ...NO_RULES, allowed_domains: ["api.example.com"] };

test("the file store keeps the home's layout: one file per agent, version, key, revocation", () => {
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  const store = fileAuthorityStore(home);
  const { kid } = store.rotateSigningKey(now, false);
  store.createAgent("bot", "you@example.com", now);
  store.createPolicy("p", RULES, now);
  store.updatePolicy("p", { max_spend_usd: "2" }, now);
  store.revokeJti("a".repeat(32), "test", now);
  for (const path of [
    ["agents", "bot.json"],
    ["policies", "p", "v0001.json"],
    ["policies", "p", "v0002.json"],
    ["keys", `${kid}.json`],
    ["keys", "active"],
    ["revoked", `${"a".repeat(32)}.json`],
  ] as const) {
    assert.ok(existsSync(join(home.root, ...path)), path.join("/"));
  }
  assert.deepEqual(store.listPolicyVersions("p"), [1, 2]);
  assert.equal(store.getPolicyVersion("p", 1).max_spend_usd, "1", "version 1 is unchanged");
  assert.equal(store.revokeJti("a".repeat(32), "again", now).already, true);
  assert.deepEqual(
    store.listAgents().map((a) => a.agent_id),
    ["bot"],
  );
});

/** A second backend in a few lines: what the token code needs is the interface, not the files. */
function memoryStore(seed: { agent: Agent; policy: PolicyVersion }): AuthorityStore {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const key: SigningKey = { kid: "mem-key", created_at: "", revoked_at: null, publicKey };
  const revoked = new Map<string, Revocation>();
  const unused = () => {
    throw new Error("not used by this test");
  };
  return {
    findAgent: (id) => (id === seed.agent.agent_id ? seed.agent : undefined),
    getAgent: (id) => (id === seed.agent.agent_id ? seed.agent : unused()),
    listAgents: () => [seed.agent],
    createAgent: unused,
    setAgentDisabled: unused,
    listPolicyIds: () => [seed.policy.policy_id],
    listPolicyVersions: () => [seed.policy.version],
    findPolicyVersion: (id, v) =>
      id === seed.policy.policy_id && v === seed.policy.version ? seed.policy : undefined,
    getPolicyVersion: () => seed.policy,
    createPolicy: unused,
    updatePolicy: unused,
    activeKid: () => key.kid,
    activeSigningKey: () => ({ ...key, privateKey }),
    findSigningKey: (kid) => (kid === key.kid ? key : undefined),
    listSigningKeys: () => [key],
    rotateSigningKey: unused,
    findRevocation: (jti) => revoked.get(jti),
    revokeJti: (jti, reason, at) => {
      const revocation = { jti, reason, revoked_at: at.toISOString() };
      revoked.set(jti, revocation);
      return { revocation, already: false };
    },
    listRevocations: () => [...revoked.values()],
    setSecret: unused,
    rotateSecret: unused,
    removeSecret: unused,
    listSecrets: () => [],
    findSecret: () => undefined,
    secretReader: unused,
  };
}

test("tokens are issued and verified through any AuthorityStore", async () => {
  const home = new Home(join(root, "seed"));
  home.ensureLayout();
  const files = fileAuthorityStore(home);
  const agent = files.createAgent("bot", "you@example.com", now);
  const policy = files.createPolicy("p", RULES, now);
  const store = memoryStore({ agent, policy });
  const { token, claims } = await issueTokenFrom(store, "bot", "p", undefined, 3600, now);
  const accepted = await verifyToken(token, authorityViewOf(store), now);
  assert.equal(accepted.ok, true);
  store.revokeJti(claims.jti, "test", now);
  const refused = await verifyToken(token, authorityViewOf(store), now);
  assert.equal(refused.ok ? "accepted" : refused.reason, "token_revoked");
});
