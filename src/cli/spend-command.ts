import { VallignusError } from "../errors.js";
import {
  listLedgers,
  readLedgerSummary,
  recoverDeadReservations,
  type LedgerSummary,
} from "../metering/ledger.js";
import { formatNanoUsd } from "../policy/money.js";
import type { FlagsOf } from "./command.js";
import type { CommandContext } from "./command-context.js";
import { SPEND } from "./declarations.js";
import { runCommand, type CommandHandler } from "./dispatch.js";
import { validId } from "./id-flag.js";

function usd(nano: number): string {
  return `$${formatNanoUsd(nano)}`;
}

/** Scripts get both the exact integers and the exact decimal strings. */
function toJson(s: LedgerSummary): Record<string, unknown> {
  return {
    jti: s.jti,
    agent_id: s.agent_id,
    policy_id: s.policy_id,
    policy_version: s.policy_version,
    created_at: s.created_at,
    budget_nano: s.budgetNano,
    spent_nano: s.spentNano,
    reserved_nano: s.reservedNano,
    left_nano: s.leftNano,
    budget_usd: formatNanoUsd(s.budgetNano),
    spent_usd: formatNanoUsd(s.spentNano),
    reserved_usd: formatNanoUsd(s.reservedNano),
    left_usd: formatNanoUsd(s.leftNano),
    calls: s.calls,
    open_reservations: s.openReservations,
  };
}

const spend: CommandHandler<FlagsOf<typeof SPEND>> = (ctx, { flags }) => {
  const agent = validId("agent", flags.agent);
  const jti = validId("jti", flags.jti);
  const home = ctx.home;
  home.requireInitialized();
  if (jti !== undefined && readLedgerSummary(home, jti) === undefined)
    throw new VallignusError(
      "ERR_LEDGER_NOT_FOUND",
      `no ledger for jti ${jti}: a token's ledger is created by its first run`,
    );
  // A run killed before it settled left reservations nobody will settle; charging them now (as
  // the next run's start would) makes what is shown final rather than "reserved" forever.
  recoverDeadReservations(home, jti, ctx.now);
  const ledgers = listLedgers(home).filter(
    (s) => (jti === undefined || s.jti === jti) && (agent === undefined || s.agent_id === agent),
  );
  if (flags.json === true) {
    ctx.out.json(ledgers.map(toJson));
    return 0;
  }
  if (ledgers.length === 0) {
    ctx.out.line(
      agent === undefined
        ? "no spend recorded yet: a token's ledger is created by its first run"
        : `no spend recorded for agent ${agent}`,
    );
    return 0;
  }
  ctx.out.table(
    ["JTI", "AGENT", "POLICY", "BUDGET", "SPENT", "RESERVED", "LEFT", "CALLS"],
    ledgers.map((s) => [
      s.jti,
      s.agent_id,
      `${s.policy_id} v${s.policy_version}`,
      usd(s.budgetNano),
      usd(s.spentNano),
      usd(s.reservedNano),
      usd(s.leftNano),
      String(s.calls),
    ]),
  );
  return 0;
};

/**
 * `vallignus spend [--agent ID] [--jti ID] [--json]`: one row per token. An unknown `--jti` is
 * ERR_LEDGER_NOT_FOUND; an agent without ledgers is an empty listing, not an error.
 */
export async function runSpendCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return runCommand(ctx, "spend", SPEND, spend, args);
}
