import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { test } from "node:test";

import { base64url, SignJWT } from "jose";

import { CLOCK_SKEW_SECONDS, ISSUER, MAX_TOKEN_LENGTH, type TokenClaims } from "./claims.js";
import { signToken, type TokenSubject } from "./sign.js";
import {
  inspectToken,
  REFUSAL_CODES,
  verifyToken,
  type CheckName,
  type TokenAuthorityView,
  type TokenRefusal,
} from "./verify.js";

const KID = "2030-01-01-aaaaaaaaaaaa";
const OTHER_KID = "2030-01-01-bbbbbbbbbbbb";
const POLICY_SHA = "a".repeat(64);
const JTI = "0123456789abcdef0123456789abcdef";
const ISSUED = new Date("2030-01-01T00:00:00.000Z");
const TTL = 3600;
const ISSUED_S = ISSUED.getTime() / 1000;

const realKey = generateKeyPairSync("ed25519");
const otherKey = generateKeyPairSync("ed25519");

const subject: TokenSubject = {
  agentId: "support-bot",
  owner: "you@example.com",
  policyId: "support",
  policyVersion: 1,
  policySha256: POLICY_SHA,
};

/** The authority's state, held in memory; each test gets a fresh one and changes what it needs. */
interface World {
  keys: Map<string, { publicKey: KeyObject; revoked: boolean }>;
  revokedJtis: Set<string>;
  agents: Map<string, { owner: string; disabled: boolean }>;
  policies: Map<string, { sha256: string } | { tampered: true }>;
}

function newWorld(): World {
  return {
    keys: new Map([[KID, { publicKey: realKey.publicKey, revoked: false }]]),
    revokedJtis: new Set(),
    agents: new Map([["support-bot", { owner: "you@example.com", disabled: false }]]),
    policies: new Map([["support@1", { sha256: POLICY_SHA }]]),
  };
}

function viewOf(world: World): TokenAuthorityView {
  return {
    findKey: (kid) => world.keys.get(kid),
    isRevoked: (jti) => world.revokedJtis.has(jti),
    findAgent: (agentId) => world.agents.get(agentId),
    findPolicyHash: (policyId, version) => world.policies.get(`${policyId}@${version}`),
  };
}

async function goodToken(privateKey: KeyObject = realKey.privateKey, kid = KID): Promise<string> {
  return (await signToken(subject, { kid, privateKey }, ISSUED, TTL, JTI)).token;
}

const goodClaims: TokenClaims = {
  iss: ISSUER,
  sub: "support-bot",
  agent_id: "support-bot",
  owner: "you@example.com",
  policy_id: "support",
  policy_version: 1,
  policy_sha256: POLICY_SHA,
  iat: ISSUED_S,
  exp: ISSUED_S + TTL,
  jti: JTI,
};

/** Signs arbitrary claims with the real key, so that only the claims can be wrong. */
async function signClaims(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid: KID, ...header })
    .sign(realKey.privateKey);
}

function encodePart(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

/** A moment `seconds` after issue. */
function at(seconds: number): Date {
  return new Date((ISSUED_S + seconds) * 1000);
}

const during = at(60);

async function refusalOf(token: string, world = newWorld(), now = during): Promise<TokenRefusal> {
  const verdict = await verifyToken(token, viewOf(world), now);
  if (verdict.ok) assert.fail(`accepted: jti ${verdict.claims.jti}`);
  return verdict.reason;
}

test("verifyToken accepts a good token and returns its claims and kid", async () => {
  const verdict = await verifyToken(await goodToken(), viewOf(newWorld()), during);
  assert.ok(verdict.ok);
  assert.deepEqual(verdict.claims, goodClaims);
  assert.equal(verdict.kid, KID);
});

test("verifyToken accepts a token at the moment it is issued", async () => {
  const verdict = await verifyToken(await goodToken(), viewOf(newWorld()), ISSUED);
  assert.equal(verdict.ok, true);
});

test("verifyToken accepts a token one second before exp + CLOCK_SKEW_SECONDS", async () => {
  const verdict = await verifyToken(
    await goodToken(),
    viewOf(newWorld()),
    at(TTL + CLOCK_SKEW_SECONDS - 1),
  );
  assert.equal(verdict.ok, true);
});

test("verifyToken refuses a token as expired exactly at exp + CLOCK_SKEW_SECONDS", async () => {
  const token = await goodToken();
  assert.equal(await refusalOf(token, newWorld(), at(TTL + CLOCK_SKEW_SECONDS)), "token_expired");
});

test("verifyToken refuses a token long after it expired", async () => {
  assert.equal(await refusalOf(await goodToken(), newWorld(), at(TTL + 86_400)), "token_expired");
});

test("verifyToken accepts a token issued up to CLOCK_SKEW_SECONDS in the future", async () => {
  const verdict = await verifyToken(await goodToken(), viewOf(newWorld()), at(-CLOCK_SKEW_SECONDS));
  assert.equal(verdict.ok, true);
});

test("verifyToken refuses a token issued further in the future than the skew", async () => {
  const token = await goodToken();
  assert.equal(await refusalOf(token, newWorld(), at(-CLOCK_SKEW_SECONDS - 1)), "token_bad_claims");
});

test("verifyToken refuses a revoked jti", async () => {
  const world = newWorld();
  world.revokedJtis.add(JTI);
  assert.equal(await refusalOf(await goodToken(), world), "token_revoked");
});

test("verifyToken refuses a token whose agent does not exist", async () => {
  const world = newWorld();
  world.agents.clear();
  assert.equal(await refusalOf(await goodToken(), world), "agent_unknown");
});

test("verifyToken refuses a token whose agent is disabled", async () => {
  const world = newWorld();
  world.agents.set("support-bot", { owner: "you@example.com", disabled: true });
  assert.equal(await refusalOf(await goodToken(), world), "agent_disabled");
});

test("verifyToken refuses a token whose owner is not the agent's owner", async () => {
  const world = newWorld();
  world.agents.set("support-bot", { owner: "someone-else@example.com", disabled: false });
  assert.equal(await refusalOf(await goodToken(), world), "token_bad_claims");
});

test("verifyToken refuses a token naming a policy version that does not exist", async () => {
  const world = newWorld();
  world.policies.clear();
  world.policies.set("support@2", { sha256: POLICY_SHA });
  assert.equal(await refusalOf(await goodToken(), world), "policy_unknown");
});

test("verifyToken refuses a token whose policy hash differs from the stored one", async () => {
  const world = newWorld();
  world.policies.set("support@1", { sha256: "b".repeat(64) });
  assert.equal(await refusalOf(await goodToken(), world), "policy_mismatch");
});

test("verifyToken refuses a token whose policy version was changed on disk", async () => {
  const world = newWorld();
  world.policies.set("support@1", { tampered: true });
  assert.equal(await refusalOf(await goodToken(), world), "policy_mismatch");
});

test("verifyToken refuses a kid this authority never had", async () => {
  const world = newWorld();
  world.keys.clear();
  world.keys.set(OTHER_KID, { publicKey: otherKey.publicKey, revoked: false });
  assert.equal(await refusalOf(await goodToken(), world), "token_unknown_key");
});

test("verifyToken refuses a header without a kid", async () => {
  const token = await new SignJWT({ ...goodClaims })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .sign(realKey.privateKey);
  assert.equal(await refusalOf(token), "token_unknown_key");
});

test("verifyToken refuses a token signed by a revoked key", async () => {
  const world = newWorld();
  world.keys.set(KID, { publicKey: realKey.publicKey, revoked: true });
  assert.equal(await refusalOf(await goodToken(), world), "token_key_revoked");
});

test("verifyToken refuses a token signed by another key under the same kid", async () => {
  assert.equal(await refusalOf(await goodToken(otherKey.privateKey, KID)), "token_bad_signature");
});

test("verifyToken refuses a token whose payload was changed after signing", async () => {
  const [header, , signature] = (await goodToken()).split(".");
  const forged = `${header ?? ""}.${encodePart({ ...goodClaims, exp: goodClaims.exp + 86_400 })}.${signature ?? ""}`;
  assert.equal(await refusalOf(forged), "token_bad_signature");
});

test("verifyToken refuses a token whose signature was cut off", async () => {
  const [header, payload] = (await goodToken()).split(".");
  assert.equal(await refusalOf(`${header ?? ""}.${payload ?? ""}.`), "token_bad_signature");
});

test('verifyToken refuses alg "none"', async () => {
  const token = `${encodePart({ alg: "none", typ: "JWT", kid: KID })}.${encodePart(goodClaims)}.`;
  assert.equal(await refusalOf(token), "token_bad_algorithm");
});

test("verifyToken refuses HS256, even keyed with the public key's bytes", async () => {
  const secret = realKey.publicKey.export({ format: "der", type: "spki" });
  const token = await new SignJWT({ ...goodClaims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: KID })
    .sign(new Uint8Array(secret));
  assert.equal(await refusalOf(token), "token_bad_algorithm");
});

test("verifyToken refuses a header with crit", async () => {
  const token = `${encodePart({ alg: "EdDSA", kid: KID, crit: ["exp"] })}.${encodePart(goodClaims)}.`;
  assert.equal(await refusalOf(token), "token_bad_algorithm");
});

const validPayload = encodePart(goodClaims);
const validHeader = encodePart({ alg: "EdDSA", typ: "JWT", kid: KID });

/** [why, input]: each is refused as token_malformed before any key is looked up. */
const malformed: [string, string][] = [
  ["empty", ""],
  ["one part", "abc"],
  ["two parts", "abc.def"],
  ["four parts", "a.b.c.d"],
  ["a space", `${validHeader} .${validPayload}.sig`],
  ["base64 padding", `${validHeader}=.${validPayload}.sig`],
  ["standard base64 characters", `${validHeader}+/.${validPayload}.sig`],
  ["a JWS JSON serialization", JSON.stringify({ payload: validPayload, signature: "x" })],
  ["a header that is not base64url JSON", `eyJ.${validPayload}.sig`],
  ["a header that is JSON but not an object", `${encodePart([1])}.${validPayload}.sig`],
  ["a payload that is not JSON", `${validHeader}.${base64url.encode("not json")}.sig`],
  ["a payload that is a JSON string", `${validHeader}.${encodePart("claims")}.sig`],
  ["an empty header", `.${validPayload}.sig`],
  ["an empty payload", `${validHeader}..sig`],
];

for (const [why, input] of malformed) {
  test(`verifyToken refuses a malformed token: ${why}`, async () => {
    const world = newWorld();
    let lookedUp = false;
    const view = viewOf(world);
    const verdict = await verifyToken(
      input,
      {
        ...view,
        findKey: (kid) => {
          lookedUp = true;
          return view.findKey(kid);
        },
      },
      during,
    );
    assert.equal(verdict.ok ? "accepted" : verdict.reason, "token_malformed");
    assert.equal(lookedUp, false);
  });
}

/**
 * A correctly signed token whose length is exactly `length`, made so by an extra claim and an
 * extra header parameter (base64url cannot make every length from the payload alone).
 */
async function tokenOfLength(length: number): Promise<string | undefined> {
  const base = (await signClaims({ ...goodClaims, pad: "" }, { pad: "" })).length;
  // Each 3 bytes of payload add 4 characters of base64url.
  const guess = Math.floor(((length - base) * 3) / 4);
  for (let headerPad = 0; headerPad < 3; headerPad++) {
    for (let pad = Math.max(0, guess - 4); pad <= guess + 4; pad++) {
      const token = await signClaims(
        { ...goodClaims, pad: "x".repeat(pad) },
        { pad: "y".repeat(headerPad) },
      );
      if (token.length === length) return token;
    }
  }
  return undefined;
}

test("verifyToken refuses a token longer than MAX_TOKEN_LENGTH, even well signed", async () => {
  const token = await tokenOfLength(MAX_TOKEN_LENGTH + 1);
  assert.ok(token !== undefined);
  assert.equal(await refusalOf(token), "token_malformed");
});

test("verifyToken does not refuse a token of exactly MAX_TOKEN_LENGTH for its length", async () => {
  const token = await tokenOfLength(MAX_TOKEN_LENGTH);
  assert.ok(token !== undefined);
  const verdict = await verifyToken(token, viewOf(newWorld()), during);
  assert.equal(verdict.ok, true);
});

/** [why, claims, a fragment of the message]: signed with the real key, so only a claim is wrong. */
const badClaims: [string, Record<string, unknown>, string][] = [
  ["another issuer", { ...goodClaims, iss: "someone-else" }, "issuer"],
  ["no issuer", { ...goodClaims, iss: undefined }, "issuer"],
  ["no jti", { ...goodClaims, jti: undefined }, "jti"],
  ["a short jti", { ...goodClaims, jti: "0123456789abcdef" }, "jti"],
  ["an upper-case jti", { ...goodClaims, jti: JTI.toUpperCase() }, "jti"],
  ["exp equal to iat", { ...goodClaims, exp: goodClaims.iat }, "exp is not after iat"],
  ["exp before iat", { ...goodClaims, exp: goodClaims.iat - 1 }, "exp is not after iat"],
  ["no exp", { ...goodClaims, exp: undefined }, "iat or exp"],
  ["a fractional exp", { ...goodClaims, exp: goodClaims.exp + 0.5 }, "iat or exp"],
  ["an exp given as text", { ...goodClaims, exp: String(goodClaims.exp) }, "iat or exp"],
  ["sub not equal to agent_id", { ...goodClaims, sub: "other-bot" }, "sub"],
  ["an invalid agent_id", { ...goodClaims, agent_id: "../x", sub: "../x" }, "agent_id"],
  ["no owner", { ...goodClaims, owner: undefined }, "owner"],
  ["an invalid policy_id", { ...goodClaims, policy_id: "Support" }, "policy_id"],
  ["policy_version 0", { ...goodClaims, policy_version: 0 }, "policy_version"],
  ["policy_version as text", { ...goodClaims, policy_version: "1" }, "policy_version"],
  ["a short policy_sha256", { ...goodClaims, policy_sha256: "abc" }, "policy_sha256"],
];

for (const [why, claims, fragment] of badClaims) {
  test(`verifyToken refuses well-signed claims with ${why}`, async () => {
    const token = await signClaims(JSON.parse(JSON.stringify(claims)) as Record<string, unknown>);
    const verdict = await verifyToken(token, viewOf(newWorld()), during);
    assert.equal(verdict.ok ? "accepted" : verdict.reason, "token_bad_claims");
    if (!verdict.ok) assert.ok(verdict.message.includes(fragment), verdict.message);
  });
}

test("verifyToken: a refusal message never contains the token's text", async () => {
  const world = newWorld();
  world.revokedJtis.add(JTI);
  const token = await goodToken();
  const verdict = await verifyToken(token, viewOf(world), during);
  assert.ok(!verdict.ok);
  for (const part of token.split(".")) assert.ok(!verdict.message.includes(part));
});

test("REFUSAL_CODES gives every refusal a distinct ERR_TOKEN_ code", () => {
  const codes = Object.values(REFUSAL_CODES);
  assert.equal(new Set(codes).size, codes.length);
  for (const code of codes) assert.match(code, /^ERR_TOKEN_[A-Z_]+$/);
});

const ALL_CHECKS: readonly CheckName[] = [
  "format",
  "algorithm",
  "kid",
  "key_not_revoked",
  "signature",
  "claims",
  "expiry",
  "revocation",
  "agent",
  "policy",
];

async function verdicts(
  token: string,
  world = newWorld(),
  now = during,
): Promise<Record<string, boolean | null>> {
  const inspection = await inspectToken(token, viewOf(world), now);
  assert.deepEqual(
    inspection.checks.map((c) => c.check),
    ALL_CHECKS,
    "every check, once, in order",
  );
  return Object.fromEntries(inspection.checks.map((c) => [c.check, c.ok]));
}

test("inspectToken: a good token passes every check, with header and claims decoded", async () => {
  const token = await goodToken();
  const inspection = await inspectToken(token, viewOf(newWorld()), during);
  assert.equal(inspection.header?.kid, KID);
  assert.deepEqual(inspection.claims, goodClaims);
  assert.deepEqual(
    Object.fromEntries(inspection.checks.map((c) => [c.check, c.ok])),
    Object.fromEntries(ALL_CHECKS.map((c) => [c, true])),
  );
});

test("inspectToken: a bad signature still shows the agent and policy verdicts", async () => {
  const world = newWorld();
  world.agents.set("support-bot", { owner: "you@example.com", disabled: true });
  const v = await verdicts(await goodToken(otherKey.privateKey), world);
  assert.equal(v["signature"], false);
  assert.equal(v["claims"], true);
  assert.equal(v["expiry"], true);
  assert.equal(v["revocation"], true);
  assert.equal(v["agent"], false);
  assert.equal(v["policy"], true);
});

test("inspectToken: an unknown kid leaves key and signature unchecked (null), the rest judged", async () => {
  const world = newWorld();
  world.keys.clear();
  world.policies.clear();
  const v = await verdicts(await goodToken(), world);
  assert.equal(v["kid"], false);
  assert.equal(v["key_not_revoked"], null);
  assert.equal(v["signature"], null);
  assert.equal(v["agent"], true);
  assert.equal(v["policy"], false);
});

test("inspectToken: a revoked key is shown and the signature is still checked", async () => {
  const world = newWorld();
  world.keys.set(KID, { publicKey: realKey.publicKey, revoked: true });
  const v = await verdicts(await goodToken(), world);
  assert.equal(v["key_not_revoked"], false);
  assert.equal(v["signature"], true);
  assert.equal(v["policy"], true);
});

test("inspectToken: a bad algorithm is shown and the other checks still run", async () => {
  const token = `${encodePart({ alg: "none", kid: KID })}.${encodePart(goodClaims)}.`;
  const v = await verdicts(token);
  assert.equal(v["algorithm"], false);
  assert.equal(v["kid"], true);
  assert.equal(v["signature"], false);
  assert.equal(v["agent"], true);
  assert.equal(v["policy"], true);
});

test("inspectToken: an expired, revoked token shows both and the later checks", async () => {
  const world = newWorld();
  world.revokedJtis.add(JTI);
  world.policies.set("support@1", { tampered: true });
  const v = await verdicts(await goodToken(), world, at(TTL + 3600));
  assert.equal(v["expiry"], false);
  assert.equal(v["revocation"], false);
  assert.equal(v["agent"], true);
  assert.equal(v["policy"], false);
});

test("inspectToken: a malformed token reports the format check as failed", async () => {
  const inspection = await inspectToken("not-a-token", viewOf(newWorld()), during);
  assert.equal(inspection.header, undefined);
  const first = inspection.checks[0];
  assert.ok(first !== undefined);
  assert.equal(first.check, "format");
  assert.equal(first.ok, false);
});
