import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { after, test } from "node:test";

import { errorCode, makeQuickstartHome, type CliResult } from "./helpers/cli.js";

/**
 * Several CLI processes writing the same state at once: no lost update, no duplicate, no
 * leftover temp or lock file.
 */

const home = makeQuickstartHome();
after(() => {
  home.cleanup();
});

/** Every path under `dir`, relative, recursively (directories too). */
function pathsUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    const rel = relative(home.home, path);
    return entry.isDirectory() ? [rel, ...pathsUnder(path)] : [rel];
  });
}

function assertNoLeftovers(): void {
  const leftovers = pathsUnder(home.home).filter((path) => {
    const name = path.split("/").at(-1) ?? "";
    return (name.startsWith(".") && name.endsWith(".tmp")) || name.endsWith(".lock");
  });
  assert.deepEqual(leftovers, [], "no temp or lock file is left behind");
}

function all(count: number, args: (i: number) => string[]): Promise<CliResult[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => home.runAsync(args(i))));
}

function assertOk(r: CliResult): void {
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
}

test("ten concurrent update-policy runs write versions 2..11, one each, none lost", async () => {
  const limits = Array.from({ length: 10 }, (_, i) => 101 + i);
  const results = await all(10, (i) => [
    "auth",
    "update-policy",
    "--policy-id",
    "support",
    "--max-requests",
    String(limits[i]),
  ]);

  const reported = new Map<number, number>();
  results.forEach((r, i) => {
    assertOk(r);
    const version = Number(/^updated policy support to v(\d+) /.exec(r.stdout)?.[1]);
    assert.ok(Number.isInteger(version), r.stdout);
    reported.set(version, limits[i] ?? -1);
  });
  assert.deepEqual(
    [...reported.keys()].sort((a, b) => a - b),
    [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
  );

  const dir = join(home.home, "policies", "support");
  const expectedFiles = Array.from(
    { length: 11 },
    (_, i) => `v${String(i + 1).padStart(4, "0")}.json`,
  );
  assert.deepEqual(readdirSync(dir).sort(), expectedFiles, "exactly v0001..v0011, nothing else");
  assertNoLeftovers();

  const seen: number[] = [];
  for (let version = 1; version <= 11; version++) {
    const doc = JSON.parse(readFileSync(join(dir, expectedFiles[version - 1] ?? ""), "utf8")) as {
      policy_id: string;
      version: number;
      max_requests: number | null;
      max_spend_usd: string;
      allowed_domains: string[];
      sha256: string;
    };
    assert.equal(doc.policy_id, "support");
    assert.equal(doc.version, version);
    assert.equal(doc.max_spend_usd, "5", "the other fields carry over from the version before");
    assert.deepEqual(doc.allowed_domains, ["api.openai.com"]);
    assert.match(doc.sha256, /^[0-9a-f]{64}$/);
    if (version === 1) {
      assert.equal(doc.max_requests, null);
    } else {
      assert.equal(doc.max_requests, reported.get(version), `v${version} holds its writer's limit`);
      seen.push(doc.max_requests);
    }
  }
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    limits,
    "each limit appears exactly once",
  );

  // Every version is intact: a token bound to it verifies (signature, hash, everything).
  const issued = await all(11, (i) => [
    "auth",
    "issue-token",
    "--agent-id",
    "support-bot",
    "--policy-id",
    "support",
    "--version",
    String(i + 1),
  ]);
  issued.forEach(assertOk);
  const verified = await all(11, (i) => ["auth", "verify-token", issued[i]?.stdout.trim() ?? ""]);
  verified.forEach((r, i) => {
    assertOk(r);
    assert.match(r.stdout, new RegExp(`policy support v${i + 1},`));
  });
  const latest = JSON.parse(home.ok("auth", "show-policy", "--policy-id", "support", "--json")) as {
    version: number;
  };
  assert.equal(latest.version, 11);
});

test("ten concurrent create-agent with the same id: one succeeds, nine get ERR_AGENT_EXISTS", async () => {
  const results = await all(10, (i) => [
    "auth",
    "create-agent",
    "--agent-id",
    "racer",
    "--owner",
    `owner-${i}@example.com`,
  ]);
  const winners = results.flatMap((r, i) => (r.status === 0 ? [i] : []));
  assert.equal(winners.length, 1, "exactly one process creates the agent");
  const winner = winners[0] ?? -1;
  assert.match(results[winner]?.stdout ?? "", /^created agent racer /);
  for (const [i, r] of results.entries()) {
    if (i === winner) continue;
    assert.equal(r.status, 1, r.stderr);
    assert.equal(errorCode(r.stderr), "ERR_AGENT_EXISTS", r.stderr);
    assert.equal(r.stdout, "");
  }
  const stored = JSON.parse(readFileSync(join(home.home, "agents", "racer.json"), "utf8")) as {
    owner: string;
  };
  assert.equal(stored.owner, `owner-${winner}@example.com`, "the winner's record, intact");
  assertNoLeftovers();
});

test("ten concurrent create-policy with the same id: one succeeds, nine get ERR_POLICY_EXISTS", async () => {
  const results = await all(10, (i) => [
    "auth",
    "create-policy",
    "--policy-id",
    "race-policy",
    "--max-spend-usd",
    String(i + 1),
    "--allowed-domains",
    "example.com",
  ]);
  const winners = results.flatMap((r, i) => (r.status === 0 ? [i] : []));
  assert.equal(winners.length, 1, "exactly one process creates the policy");
  for (const [i, r] of results.entries()) {
    if (i === winners[0]) continue;
    assert.equal(r.status, 1, r.stderr);
    assert.equal(errorCode(r.stderr), "ERR_POLICY_EXISTS", r.stderr);
  }
  const dir = join(home.home, "policies", "race-policy");
  assert.deepEqual(readdirSync(dir), ["v0001.json"]);
  const doc = JSON.parse(readFileSync(join(dir, "v0001.json"), "utf8")) as {
    max_spend_usd: string;
  };
  assert.equal(doc.max_spend_usd, String((winners[0] ?? -1) + 1));
  assertNoLeftovers();
});

test("ten concurrent revocations of one jti: one records it, nine report it already revoked", async () => {
  const token = home
    .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
    .trim();
  const claims = Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8");
  const { jti } = JSON.parse(claims) as { jti: string };
  const results = await all(10, () => ["auth", "revoke-token", "--jti", jti]);
  results.forEach(assertOk);
  assert.equal(results.filter((r) => r.stdout.startsWith(`revoked jti ${jti}`)).length, 1);
  assert.equal(results.filter((r) => r.stdout.includes("already revoked")).length, 9);
  assert.deepEqual(
    readdirSync(join(home.home, "revoked")).filter((n) => n.startsWith(jti)),
    [`${jti}.json`],
  );
  const r = home.run("auth", "verify-token", token);
  assert.equal(r.status, 3);
  assert.equal(errorCode(r.stderr), "ERR_TOKEN_REVOKED", r.stderr);
  assertNoLeftovers();
});

test("five concurrent rotate-key runs: five new keys, one active, old tokens still verify", async () => {
  const before = readFileSync(join(home.home, "keys", "active"), "utf8").trim();
  const results = await all(5, () => ["auth", "rotate-key", "--json"]);
  results.forEach(assertOk);
  const kids = results.map((r) => (JSON.parse(r.stdout) as { kid: string }).kid);
  assert.equal(new Set(kids).size, 5, "five distinct new kids");
  const keyFiles = readdirSync(join(home.home, "keys"))
    .filter((n) => n.endsWith(".json"))
    .map((n) => n.slice(0, -".json".length))
    .sort();
  assert.deepEqual(keyFiles, [before, ...kids].sort());
  const active = readFileSync(join(home.home, "keys", "active"), "utf8").trim();
  assert.ok(kids.includes(active), "keys/active names one of the new keys");
  assertNoLeftovers();
  assertOk(home.run("auth", "verify-token", home.token));
  const fresh = home
    .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
    .trim();
  assertOk(home.run("auth", "verify-token", fresh));
});
