import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  CLI,
  errorCode,
  makeQuickstartHome,
  type CliResult,
  type TempHome,
} from "./helpers/cli.js";

/**
 * Forged, tampered and no-longer-valid tokens, each refused by `auth verify-token` with exit
 * status 3 and its own error code, and never echoed back.
 */

type Json = Record<string, unknown>;

function segments(token: string): [string, string, string] {
  const [header = "", payload = "", signature = ""] = token.split(".");
  return [header, payload, signature];
}

function decodeSegment(segment: string): Json {
  return JSON.parse(Buffer.from(segment, "base64url").toString("utf8")) as Json;
}

function encodeSegment(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

function headerOf(token: string): Json {
  return decodeSegment(segments(token)[0]);
}

function claimsOf(token: string): Json {
  return decodeSegment(segments(token)[1]);
}

/** The original header and signature around an edited payload. */
function withClaims(token: string, edit: Json): string {
  const [header, payload, signature] = segments(token);
  return `${header}.${encodeSegment({ ...decodeSegment(payload), ...edit })}.${signature}`;
}

/** An edited header over the original payload and signature. */
function withHeader(token: string, header: Json): string {
  const [, payload, signature] = segments(token);
  return `${encodeSegment(header)}.${payload}.${signature}`;
}

/** A correctly computed HS256 JWT over the original claims, keyed with `secret`. */
function hs256(token: string, kid: string, secret: Buffer | string): string {
  const signingInput = `${encodeSegment({ alg: "HS256", typ: "JWT", kid })}.${segments(token)[1]}`;
  const mac = createHmac("sha256", secret).update(signingInput).digest("base64url");
  return `${signingInput}.${mac}`;
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

/** Canonical JSON and the content hash a policy version stores (as the README describes). */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function policyHash(doc: Json): string {
  const { sha256: _ignored, ...rest } = doc;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

const home = makeQuickstartHome();
const other = makeQuickstartHome();
after(() => {
  home.cleanup();
  other.cleanup();
});

/** Issued first, so that most of its wait to expire passes while the other cases run. */
const shortLived = home
  .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support", "--ttl", "1s")
  .trim();
const shortLivedAtFirst = home.run("auth", "verify-token", shortLived);
/** When that verification had certainly finished (its clock read was no later than this). */
const shortLivedCheckedBy = Date.now();

const good = home.token;
const sibling = home
  .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
  .trim();
const kid = String(headerOf(good)["kid"]);
const keyFile = JSON.parse(readFileSync(join(home.home, "keys", `${kid}.json`), "utf8")) as {
  public_jwk: { x: string };
};
const publicKeyBytes = Buffer.from(keyFile.public_jwk.x, "base64url");
const policyFile = join(home.home, "policies", "support", "v0001.json");

/** Every token text a test handled, to prove none was written to the home or echoed. */
const tokensSeen = new Set<string>([good, sibling, shortLived, other.token]);

function issue(t: TempHome): string {
  const token = t
    .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
    .trim();
  tokensSeen.add(token);
  return token;
}

function verify(t: TempHome, token: string): CliResult {
  tokensSeen.add(token);
  return t.run("auth", "verify-token", token);
}

/** The parts of a token's text that must never be echoed (short ones prove nothing). */
function secretParts(token: string): string[] {
  const [, payload, signature] = segments(token);
  return [token, payload, signature].filter((part) => part.length >= 16);
}

function assertAccepted(r: CliResult): void {
  assert.equal(r.status, 0, `expected acceptance, got: ${r.stderr}`);
  assert.equal(r.stderr, "");
  assert.match(r.stdout, /^ok: jti [0-9a-f]{32}, agent support-bot, policy support v1, expires /);
}

function assertRefused(r: CliResult, token: string, code: string, status = 3): void {
  assert.equal(r.status, status, `exit status (stderr: ${r.stderr})`);
  assert.equal(errorCode(r.stderr), code, `one-line error with ${code}, got: ${r.stderr}`);
  assert.equal(r.stdout, "", "nothing on stdout");
  for (const part of secretParts(token)) {
    assert.ok(!r.stderr.includes(part), "the refusal must not echo the token's text");
  }
}

interface Inspection {
  header: Json | null;
  claims: Json | null;
  checks: { check: string; ok: boolean | null; detail: string }[];
  accepted: boolean;
}

function inspect(t: TempHome, token: string): Inspection {
  tokensSeen.add(token);
  const r = t.run("auth", "inspect-token", "--json", token);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
  for (const part of secretParts(token)) assert.ok(!r.stdout.includes(part));
  return JSON.parse(r.stdout) as Inspection;
}

function verdictOf(inspection: Inspection, check: string): boolean | null | undefined {
  return inspection.checks.find((c) => c.check === check)?.ok;
}

test("the genuine tokens are accepted (the baseline every forgery is measured against)", () => {
  assertAccepted(verify(home, good));
  assertAccepted(verify(home, sibling));
  // Deterministic even on a stalled machine: judged only if it ran before exp + skew for sure.
  if (shortLivedCheckedBy < (Number(claimsOf(shortLived)["exp"]) + 2) * 1000) {
    assertAccepted(shortLivedAtFirst);
  }
  assertAccepted(verify(other, other.token));
});

const [goodHeader, goodPayload, goodSignature] = segments(good);

const forgeries: { name: string; token: string; code: string; status?: number }[] = [
  // Edited claims under the original signature.
  {
    name: "payload edited: policy_version 1 -> 2",
    token: withClaims(good, { policy_version: 2 }),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "payload edited: agent_id and sub changed",
    token: withClaims(good, { agent_id: "admin-bot", sub: "admin-bot" }),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "payload edited: agent_id changed alone",
    token: withClaims(good, { agent_id: "admin-bot" }),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "payload edited: exp pushed a year out",
    token: withClaims(good, { exp: Number(claimsOf(good)["exp"]) + 365 * 86_400 }),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "payload re-encoded byte-for-byte differently (whitespace), same claims",
    token: `${goodHeader}.${Buffer.from(JSON.stringify(claimsOf(good), null, 1)).toString("base64url")}.${goodSignature}`,
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "header edited (typ) under the original signature",
    token: withHeader(good, { ...headerOf(good), typ: "at+jwt" }),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "signature transplanted from another token of the same key",
    token: `${goodHeader}.${goodPayload}.${segments(sibling)[2]}`,
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "signature truncated by 4 characters",
    token: good.slice(0, -4),
    code: "ERR_TOKEN_SIGNATURE",
  },
  {
    name: "signature removed (trailing dot kept)",
    token: `${goodHeader}.${goodPayload}.`,
    code: "ERR_TOKEN_SIGNATURE",
  },
  // Algorithm confusion.
  {
    name: 'alg "none" with the real kid and an empty signature',
    token: `${encodeSegment({ alg: "none", typ: "JWT", kid })}.${goodPayload}.`,
    code: "ERR_TOKEN_ALGORITHM",
  },
  {
    name: 'alg "none" with the real kid and the original signature',
    token: `${encodeSegment({ alg: "none", kid })}.${goodPayload}.${goodSignature}`,
    code: "ERR_TOKEN_ALGORITHM",
  },
  {
    name: "HS256 keyed with the raw 32-byte Ed25519 public key",
    token: hs256(good, kid, publicKeyBytes),
    code: "ERR_TOKEN_ALGORITHM",
  },
  {
    name: "HS256 keyed with the public JWK's JSON text",
    token: hs256(good, kid, JSON.stringify(keyFile.public_jwk)),
    code: "ERR_TOKEN_ALGORITHM",
  },
  {
    name: "HS256 keyed with the public key's base64url text (x)",
    token: hs256(good, kid, keyFile.public_jwk.x),
    code: "ERR_TOKEN_ALGORITHM",
  },
  {
    name: "header with a crit extension",
    token: withHeader(good, { ...headerOf(good), crit: ["exp"] }),
    code: "ERR_TOKEN_ALGORITHM",
  },
  // Keys this authority does not have.
  {
    name: "unknown kid",
    token: withHeader(good, { alg: "EdDSA", typ: "JWT", kid: "2020-01-01-000000000000" }),
    code: "ERR_TOKEN_UNKNOWN_KEY",
  },
  {
    name: "kid that walks out of keys/ (../keys/active)",
    token: withHeader(good, { alg: "EdDSA", typ: "JWT", kid: "../keys/active" }),
    code: "ERR_TOKEN_UNKNOWN_KEY",
  },
  {
    name: "no kid at all",
    token: withHeader(good, { alg: "EdDSA", typ: "JWT" }),
    code: "ERR_TOKEN_UNKNOWN_KEY",
  },
  {
    name: "a token from another VALLIGNUS_HOME with the same agent and policy ids",
    token: other.token,
    code: "ERR_TOKEN_UNKNOWN_KEY",
  },
  // Not a token at all.
  {
    name: "truncated inside the payload",
    token: good.slice(0, goodHeader.length + 30),
    code: "ERR_TOKEN_MALFORMED",
  },
  {
    name: "header and half a payload, then a dot",
    token: `${goodHeader}.${goodPayload.slice(0, 21)}.`,
    code: "ERR_TOKEN_MALFORMED",
  },
  { name: "header only", token: goodHeader, code: "ERR_TOKEN_MALFORMED" },
  { name: "garbage string", token: "not-a-token", code: "ERR_TOKEN_MALFORMED" },
  { name: "three garbage segments", token: "aaaa.bbbb.cccc", code: "ERR_TOKEN_MALFORMED" },
  { name: "characters outside base64url", token: `${good}!`, code: "ERR_TOKEN_MALFORMED" },
  { name: "four segments", token: `${good}.${goodSignature}`, code: "ERR_TOKEN_MALFORMED" },
  { name: "empty string", token: "", code: "ERR_TOKEN_MALFORMED" },
  { name: "whitespace only", token: "   ", code: "ERR_TOKEN_MALFORMED" },
  { name: "two dots", token: "..", code: "ERR_TOKEN_MALFORMED" },
  {
    name: "payload that is JSON but not an object",
    token: `${goodHeader}.${encodeSegment([1, 2, 3])}.${goodSignature}`,
    code: "ERR_TOKEN_MALFORMED",
  },
];

for (const forgery of forgeries) {
  test(`refused: ${forgery.name}`, () => {
    assertRefused(verify(home, forgery.token), forgery.token, forgery.code, forgery.status);
  });
}

test("refused with exit 3: a token longer than the length limit", () => {
  const long = `${goodHeader}.${"A".repeat(9000)}.${goodSignature}`;
  assertRefused(verify(home, long), long, "ERR_TOKEN_MALFORMED");
});

test("inspect-token --json exits 0 on forgeries and names the failing check", () => {
  const edited = inspect(home, withClaims(good, { policy_version: 2 }));
  assert.equal(edited.accepted, false);
  assert.equal(verdictOf(edited, "format"), true);
  assert.equal(verdictOf(edited, "algorithm"), true);
  assert.equal(verdictOf(edited, "kid"), true);
  assert.equal(verdictOf(edited, "signature"), false);
  assert.equal(edited.claims?.["policy_version"], 2, "the claims are shown as decoded, untrusted");

  const none = inspect(home, `${encodeSegment({ alg: "none", kid })}.${goodPayload}.`);
  assert.equal(none.accepted, false);
  assert.equal(verdictOf(none, "algorithm"), false);
  assert.equal(none.header?.["alg"], "none");

  const hmac = inspect(home, hs256(good, kid, publicKeyBytes));
  assert.equal(hmac.accepted, false);
  assert.equal(verdictOf(hmac, "algorithm"), false);
  assert.notEqual(verdictOf(hmac, "signature"), true, "an HMAC is never a valid signature");

  const foreign = inspect(home, other.token);
  assert.equal(foreign.accepted, false);
  assert.equal(verdictOf(foreign, "kid"), false);
  assert.notEqual(verdictOf(foreign, "signature"), true);

  const garbage = inspect(home, "not-a-token");
  assert.equal(garbage.accepted, false);
  assert.equal(verdictOf(garbage, "format"), false);

  const genuine = inspect(home, good);
  assert.equal(genuine.accepted, true);
  assert.ok(genuine.checks.length >= 8);
  assert.ok(genuine.checks.every((c) => c.ok === true));
});

test("a token read from stdin ('-') is judged the same way", () => {
  const viaStdin = (token: string): CliResult => {
    const r = spawnSync(process.execPath, [CLI, "auth", "verify-token", "-"], {
      env: home.env,
      input: `${token}\n`,
      encoding: "utf8",
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  assertAccepted(viaStdin(good));
  const forged = withClaims(good, { exp: Number(claimsOf(good)["exp"]) + 86_400 });
  tokensSeen.add(forged);
  assertRefused(viaStdin(forged), forged, "ERR_TOKEN_SIGNATURE");
});

test("revoked by --jti: refused with ERR_TOKEN_REVOKED; other tokens unaffected", () => {
  const token = issue(home);
  assertAccepted(verify(home, token));
  const jti = String(claimsOf(token)["jti"]);
  const out = home.ok("auth", "revoke-token", "--jti", jti, "--reason", "test");
  assert.match(out, new RegExp(`revoked jti ${jti}`));
  assertRefused(verify(home, token), token, "ERR_TOKEN_REVOKED");
  assertAccepted(verify(home, good));
  const again = home.ok("auth", "revoke-token", "--jti", jti);
  assert.match(again, /already revoked/);
  const seen = inspect(home, token);
  assert.equal(verdictOf(seen, "revocation"), false);
  assert.equal(verdictOf(seen, "signature"), true);
});

test("revoked by --token: refused with ERR_TOKEN_REVOKED", () => {
  const token = issue(home);
  const r = home.run("auth", "revoke-token", "--token", token);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!r.stdout.includes(token));
  assert.match(r.stdout, new RegExp(`revoked jti ${String(claimsOf(token)["jti"])}`));
  assertRefused(verify(home, token), token, "ERR_TOKEN_REVOKED");
});

test("agent disabled: refused with ERR_TOKEN_AGENT_DISABLED; enable-agent restores it", () => {
  home.ok("auth", "disable-agent", "--agent-id", "support-bot");
  assertRefused(verify(home, good), good, "ERR_TOKEN_AGENT_DISABLED");
  home.ok("auth", "enable-agent", "--agent-id", "support-bot");
  assertAccepted(verify(home, good));
});

test("policy version edited on disk: refused with ERR_TOKEN_POLICY_MISMATCH", () => {
  const original = readFileSync(policyFile);
  try {
    const doc = JSON.parse(original.toString("utf8")) as Json;
    assert.equal(doc["max_spend_usd"], "5");
    writeFileSync(policyFile, `${JSON.stringify({ ...doc, max_spend_usd: "5000" }, null, 2)}\n`);
    assertRefused(verify(home, good), good, "ERR_TOKEN_POLICY_MISMATCH");

    // Re-sealed with a correct hash for the new content: still not the version the token names.
    const resealed: Json = { ...doc, max_spend_usd: "5000" };
    resealed["sha256"] = policyHash(resealed);
    writeFileSync(policyFile, `${JSON.stringify(resealed, null, 2)}\n`);
    assertRefused(verify(home, good), good, "ERR_TOKEN_POLICY_MISMATCH");

    writeFileSync(policyFile, original.subarray(0, original.length - 10));
    assertRefused(verify(home, good), good, "ERR_TOKEN_POLICY_MISMATCH");
  } finally {
    writeFileSync(policyFile, original);
  }
  assertAccepted(verify(home, good));
});

test("expired (--ttl 1s, past the documented 2 s skew): refused with ERR_TOKEN_EXPIRED", async () => {
  const exp = Number(claimsOf(shortLived)["exp"]);
  assert.equal(exp - Number(claimsOf(shortLived)["iat"]), 1);
  const waitMs = (exp + 2) * 1000 + 250 - Date.now();
  if (waitMs > 0) await sleep(waitMs);
  assertRefused(verify(home, shortLived), shortLived, "ERR_TOKEN_EXPIRED");
  const seen = inspect(home, shortLived);
  assert.equal(verdictOf(seen, "expiry"), false);
  assert.equal(verdictOf(seen, "signature"), true);
});

test("rotate-key keeps old tokens valid; --revoke-previous refuses them with ERR_TOKEN_KEY_REVOKED", () => {
  const rotated = JSON.parse(home.ok("auth", "rotate-key", "--json")) as {
    kid: string;
    previous: string;
    revoked: string[];
  };
  assert.notEqual(rotated.kid, kid);
  assert.equal(rotated.previous, kid);
  assert.deepEqual(rotated.revoked, []);
  assertAccepted(verify(home, good));
  const second = issue(home);
  assert.equal(headerOf(second)["kid"], rotated.kid, "new tokens carry the new kid");
  assertAccepted(verify(home, second));

  const revoking = JSON.parse(home.ok("auth", "rotate-key", "--revoke-previous", "--json")) as {
    kid: string;
    revoked: string[];
  };
  assert.deepEqual([...revoking.revoked].sort(), [kid, rotated.kid].sort());
  assertRefused(verify(home, good), good, "ERR_TOKEN_KEY_REVOKED");
  assertRefused(verify(home, second), second, "ERR_TOKEN_KEY_REVOKED");
  const third = issue(home);
  assert.equal(headerOf(third)["kid"], revoking.kid);
  assertAccepted(verify(home, third));
  assert.equal(verdictOf(inspect(home, good), "key_not_revoked"), false);
  // A revoked key's token with edited claims is still refused (no path around the key check).
  const forged = withClaims(good, { policy_version: 2 });
  assertRefused(verify(home, forged), forged, "ERR_TOKEN_KEY_REVOKED");
});

test("usage errors do not echo a token given twice", () => {
  const r = home.run("auth", "verify-token", good, good);
  assertRefused(r, good, "ERR_CLI_USAGE", 2);
});

test("revoke-token --jti given a token's text does not echo it", () => {
  const r = home.run("auth", "revoke-token", "--jti", good);
  assertRefused(r, good, "ERR_ID_INVALID", 2);
});

test("no token text is written anywhere under VALLIGNUS_HOME", () => {
  for (const f of forgeries) tokensSeen.add(f.token);
  const needles = [...tokensSeen].flatMap(secretParts);
  assert.ok(needles.length > 20);
  assert.ok(readdirSync(join(home.home, "revoked")).length >= 2, "revocations were written");
  for (const t of [home, other]) {
    const files = filesUnder(t.home);
    for (const file of files) {
      const text = readFileSync(file, "latin1");
      for (const needle of needles) {
        assert.ok(!text.includes(needle), `${file} contains a token's text`);
      }
    }
  }
});
