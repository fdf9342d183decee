import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

import { Home } from "../authority/index.js";
import { VallignusError } from "../errors.js";
import { openLedger, type OpenLedgerOptions } from "../metering/ledger.js";
import { captureContext, tempCommandHome } from "../../test/helpers/command-context.js";
import { runSpendCommand } from "./spend-command.js";

const context = captureContext;
const tempHome = (initialized = true) => tempCommandHome("vallignus-spend-cli-", initialized);

function ledgerOptions(overrides: Partial<OpenLedgerOptions>): OpenLedgerOptions {
  return {
    jti: "0123456789abcdef0123456789abcdef",
    agentId: "support-bot",
    policyId: "support",
    policyVersion: 1,
    budgetNano: 5_000_000_000,
    owner: { sessionId: "s-test", pid: process.pid },
    ...overrides,
  };
}

/** Two tokens: one with spend and an open reservation, one untouched. */
function homeWithTwoLedgers(): Home {
  const home = tempHome();
  const a = openLedger(home, ledgerOptions({ now: () => new Date("2026-11-26T10:00:00.000Z") }));
  const r = a.reserve(1_000_000_000, { provider: "openai", model: "gpt-4o-mini" });
  assert.ok(r.ok);
  a.settle(r.id, 123_456_789);
  assert.ok(a.reserve(250_000_000, { provider: "openai", model: "gpt-4o-mini" }).ok);
  a.close();
  openLedger(
    home,
    ledgerOptions({
      jti: "fedcba9876543210fedcba9876543210",
      agentId: "researcher",
      policyId: "research",
      policyVersion: 2,
      budgetNano: 10_000_000,
      now: () => new Date("2026-11-26T11:00:00.000Z"),
    }),
  ).close();
  return home;
}

async function rejectsWith(promise: Promise<unknown>, code: string, exit: number): Promise<void> {
  await assert.rejects(
    promise,
    (err: unknown) => err instanceof VallignusError && err.code === code && err.exitStatus === exit,
  );
}

test("spend prints one row per token with exact USD amounts", async () => {
  const ctx = context(homeWithTwoLedgers());
  assert.equal(await runSpendCommand(ctx, []), 0);
  const lines = ctx.text().trimEnd().split("\n");
  assert.equal(lines.length, 3);
  assert.match(lines[0] ?? "", /^JTI\s+AGENT\s+POLICY\s+BUDGET\s+SPENT\s+RESERVED\s+LEFT\s+CALLS$/);
  assert.deepEqual(lines[1]?.split(/\s+/), [
    "0123456789abcdef0123456789abcdef",
    "support-bot",
    "support",
    "v1",
    "$5",
    "$0.123456789",
    "$0.25",
    "$4.626543211",
    "1",
  ]);
  assert.deepEqual(lines[2]?.split(/\s+/), [
    "fedcba9876543210fedcba9876543210",
    "researcher",
    "research",
    "v2",
    "$0.01",
    "$0",
    "$0",
    "$0.01",
    "0",
  ]);
});

test("spend --json gives nano integers and USD strings; --agent and --jti filter", async () => {
  const home = homeWithTwoLedgers();
  const ctx = context(home);
  assert.equal(await runSpendCommand(ctx, ["--json", "--agent", "support-bot"]), 0);
  assert.deepEqual(JSON.parse(ctx.text()), [
    {
      jti: "0123456789abcdef0123456789abcdef",
      agent_id: "support-bot",
      policy_id: "support",
      policy_version: 1,
      created_at: "2026-11-26T10:00:00.000Z",
      budget_nano: 5_000_000_000,
      spent_nano: 123_456_789,
      reserved_nano: 250_000_000,
      left_nano: 4_626_543_211,
      budget_usd: "5",
      spent_usd: "0.123456789",
      reserved_usd: "0.25",
      left_usd: "4.626543211",
      calls: 1,
      open_reservations: 1,
    },
  ]);
  const byJti = context(home);
  await runSpendCommand(byJti, ["--jti", "fedcba9876543210fedcba9876543210", "--json"]);
  assert.deepEqual(
    (JSON.parse(byJti.text()) as { jti: string }[]).map((s) => s.jti),
    ["fedcba9876543210fedcba9876543210"],
  );
  const nobody = context(home);
  assert.equal(await runSpendCommand(nobody, ["--agent", "nobody"]), 0);
  assert.equal(nobody.text(), "no spend recorded for agent nobody\n");
  const nobodyJson = context(home);
  await runSpendCommand(nobodyJson, ["--agent", "nobody", "--json"]);
  assert.deepEqual(JSON.parse(nobodyJson.text()), []);
});

test("spend charges the reservations of a run that died before settling", async () => {
  const home = tempHome();
  const dead = spawnSync(process.execPath, ["-e", ""]).pid;
  assert.ok(dead > 0);
  const ledger = openLedger(home, ledgerOptions({ owner: { sessionId: "killed", pid: dead } }));
  assert.ok(ledger.reserve(700_000_000, { provider: "anthropic", model: "claude" }).ok);
  ledger.close();
  const ctx = context(home);
  await runSpendCommand(ctx, ["--json"]);
  const [row] = JSON.parse(ctx.text()) as Record<string, unknown>[];
  assert.equal(row?.["spent_usd"], "0.7");
  assert.equal(row["reserved_nano"], 0);
  assert.equal(row["calls"], 1);
});

test("spend errors: unknown jti, bad jti, uninitialized home, unknown flag", async () => {
  const home = homeWithTwoLedgers();
  await rejectsWith(
    runSpendCommand(context(home), ["--jti", "ffffffffffffffffffffffffffffffff"]),
    "ERR_LEDGER_NOT_FOUND",
    1,
  );
  await rejectsWith(runSpendCommand(context(home), ["--jti", "../x"]), "ERR_ID_INVALID", 2);
  await rejectsWith(runSpendCommand(context(home), ["--bogus"]), "ERR_CLI_USAGE", 2);
  await rejectsWith(runSpendCommand(context(tempHome(false)), []), "ERR_HOME_NOT_INITIALIZED", 1);
});

test("spend on a home with no ledgers says so; --help prints the usage", async () => {
  const ctx = context(tempHome());
  assert.equal(await runSpendCommand(ctx, []), 0);
  assert.equal(ctx.text(), "no spend recorded yet: a token's ledger is created by its first run\n");
  const help = context(tempHome());
  assert.equal(await runSpendCommand(help, ["--help"]), 0);
  assert.match(help.text(), /^usage: vallignus spend \[options\]\n/);
  for (const flag of ["--agent ID", "--jti ID", "--json", "-h, --help"])
    assert.ok(help.text().includes(`  ${flag}  `), `help lists ${flag}`);
});
