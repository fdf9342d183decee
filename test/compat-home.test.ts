import assert from "node:assert/strict";
import { chmodSync, cpSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, test } from "node:test";

import { Home } from "../src/authority/index.js";
import { openLedger } from "../src/metering/index.js";
import { makeTempHome } from "./helpers/cli.js";

/*
 * A home written by the build of commit 65a1307 (before the storage layer), made by
 * test/fixtures/make-home-65a1307.ts: two agents (one disabled), a policy in two versions, a
 * rotated key, a revocation, and one run with an allowed, a denied and a metered request.
 */
const FIXTURE = resolve(import.meta.dirname, "fixtures", "home-65a1307");
const OLD_JTI = "6bd695135cfbc3ace64cb44238f3b21c";
const OLD_SESSION = "20261202t130540z-0050231c";

const t = makeTempHome("vallignus-compat-");
after(() => {
  t.cleanup();
});
cpSync(FIXTURE, t.home, { recursive: true });
// Git keeps no modes; the home refuses files that group or others could read.
(function tighten(dir: string): void {
  chmodSync(dir, 0o700);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) tighten(path);
    else chmodSync(path, 0o600);
  }
})(t.home);

const json = (...args: string[]) => JSON.parse(t.ok(...args, "--json")) as unknown;

test("the old home's audit log verifies, its spend and session read as they were written", () => {
  assert.deepEqual(json("audit", "verify"), { ok: true, records: 6 });
  const spend = json("spend") as Record<string, unknown>[];
  assert.deepEqual(
    spend.map((s) => [s["jti"], s["spent_usd"], s["reserved_usd"], s["budget_usd"], s["calls"]]),
    [[OLD_JTI, "0.000072", "0", "3", 1]],
  );
  const sessions = json("sessions", "list") as Record<string, unknown>[];
  assert.deepEqual(
    sessions.map((s) => [s["session_id"], s["allowed"], s["denied"], s["end_reason"]]),
    [[OLD_SESSION, 3, 1, "exited"]],
  );
  const agents = json("auth", "list-agents") as Record<string, unknown>[];
  assert.deepEqual(
    agents.map((a) => [a["agent_id"], a["disabled"]]),
    [
      ["bot", false],
      ["idle", true],
    ],
  );
});

test("a token issued from the old home verifies, and its run extends the old chain", async () => {
  const token = t.ok("auth", "issue-token", "--agent-id", "bot", "--policy-id", "compat").trim();
  const verified = t.run("auth", "verify-token", token);
  assert.equal(verified.status, 0, verified.stderr);
  assert.match(verified.stdout, /policy compat v2/);
  const run = await new Promise<{ status: number | null; stdout: string }>((done) => {
    void t
      .runAsync([
        "run",
        "--token",
        token,
        "--",
        process.execPath,
        "-e",
        "fetch('http://denied.test/').then((r) => console.log(r.status))",
      ])
      .then(done);
  });
  assert.equal(run.status, 0);
  assert.equal(run.stdout.trim(), "403");
  const verify = json("audit", "verify") as { ok: boolean; records: number };
  assert.equal(verify.ok, true);
  assert.equal(verify.records, 9, "run_start, the deny and run_end after the old six");
  const lines = readFileSync(join(t.home, "audit", "audit.jsonl"), "utf8")
    .trim()
    .split("\n");
  const seventh = JSON.parse(lines[6] ?? "{}") as Record<string, unknown>;
  const sixth = JSON.parse(lines[5] ?? "{}") as Record<string, unknown>;
  assert.equal(seventh["prev_hash"], sixth["hash"]);
  assert.ok(!lines.join("\n").includes(token), "no token text in the log");
});

test("the old token's ledger goes on from where the old build left it", () => {
  const ledger = openLedger(new Home(t.home), {
    jti: OLD_JTI,
    agentId: "bot",
    policyId: "compat",
    policyVersion: 2,
    budgetNano: 3_000_000_000,
    owner: { sessionId: "compat-test", pid: process.pid },
  });
  assert.equal(ledger.state().spentNano, 72_000);
  const reserved = ledger.reserve(1_000, { provider: "openai", model: "fake-gpt" });
  assert.ok(reserved.ok);
  assert.equal(reserved.id, "r3", "numbered after the old journal's lines");
  ledger.settle(reserved.id, 500);
  ledger.close();
  const [entry] = json("spend", "--jti", OLD_JTI) as Record<string, unknown>[];
  assert.ok(entry !== undefined);
  assert.equal(entry["spent_nano"], 72_500);
  assert.equal(entry["calls"], 2);
});
