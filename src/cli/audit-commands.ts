import { assertValidId, type Home } from "../authority/index.js";
import {
  followAuditLog,
  isDecisionRecord,
  listSessionRecords,
  readAuditRecords,
  readSessionRecord,
  verifyAuditLog,
  type AuditRecord,
  type SessionRecord,
} from "../audit/index.js";
import { usageError, VallignusError } from "../errors.js";
import { initialized, type CommandContext } from "./command-context.js";
import { AUDIT, REPLAY, SESSIONS } from "./declarations.js";
import { runCommand, runGroup, type CommandHandler, type GroupHandlers } from "./dispatch.js";
import type { FlagsOf } from "./command.js";
import { validId } from "./id-flag.js";
import type { Printer } from "./output.js";

const DEFAULT_TAIL_LINES = 20;
const FOLLOW_POLL_MS = 200;

/**
 * Hosts, paths and owners come from agents and from files anyone with access may edit: control
 * characters are shown escaped so a record cannot drive the terminal.
 */
function printable(text: string): string {
  return text.replace(
    /[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** One record for people, without its timestamp; every text from the record is made printable. */
function describeRecord(out: Printer, r: AuditRecord): string {
  const p = printable;
  if (isDecisionRecord(r)) {
    const target =
      r.scheme === null || r.host === null
        ? "(unparsed request)"
        : `${r.scheme}://${r.host}${r.port === null ? "" : `:${r.port}`}${r.path ?? ""}`;
    const decision = r.decision === "allow" ? out.green("allow") : out.red("deny ");
    const reason = r.decision === "deny" ? ` (${r.deny_reason})` : "";
    const cost = r.cost_usd === undefined ? "" : ` $${r.cost_usd}`;
    const metered = r.model === undefined ? "" : ` ${r.model}${cost}`;
    const error = r.error === undefined ? "" : ` ${out.dim(p(r.error))}`;
    return `${decision} ${p(`${r.method} ${target} -> ${r.status}${reason}${metered}`)}${error}`;
  }
  const session = `session ${r.session_id}`;
  let detail: string;
  if (r.event === "run_start") {
    detail = `${session} agent ${r.agent_id} policy ${r.policy_id} v${r.policy_version} jti ${r.jti}`;
  } else if (r.event === "run_end") {
    detail = `${session} exit ${r.exit_status} (${r.reason})`;
  } else {
    const reason = r["reason"];
    detail = typeof reason === "string" ? `${session} (${reason})` : session;
  }
  return `${out.bold(r.event)} ${p(detail)}`;
}

function formatRecordLine(out: Printer, r: AuditRecord): string {
  return `${out.dim(printable(r.ts))} ${describeRecord(out, r)}`;
}

function parseCount(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]{1,7}$/.test(text))
    throw usageError("ERR_CLI_USAGE", `${flag}: ${JSON.stringify(text)} is not a count`);
  return Number(text);
}

function parseSince(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.test(text)
    ? Date.parse(text)
    : NaN;
  if (Number.isNaN(ms))
    throw usageError(
      "ERR_CLI_USAGE",
      `--since: ${JSON.stringify(text)} is not an ISO date such as 2026-11-26 or 2026-11-26T18:15:00Z`,
    );
  return new Date(ms);
}

function parseDecision(text: string | undefined): "allow" | "deny" | undefined {
  if (text === undefined || text === "allow" || text === "deny") return text;
  throw usageError("ERR_CLI_USAGE", `--decision: ${JSON.stringify(text)} is not allow or deny`);
}

function countDecisions(records: readonly AuditRecord[]): { allow: number; deny: number } {
  const counts = { allow: 0, deny: 0 };
  for (const r of records) if (isDecisionRecord(r)) counts[r.decision]++;
  return counts;
}

const auditHandlers: GroupHandlers<typeof AUDIT.commands> = {
  verify: (ctx, { flags }) => {
    const result = verifyAuditLog(initialized(ctx));
    if (flags.json === true) ctx.out.json(result);
    if (!result.ok)
      throw new VallignusError(
        "ERR_AUDIT_CHAIN_BROKEN",
        `audit log broken at line ${result.line}: ${result.why}`,
      );
    if (flags.json !== true) ctx.out.line(`ok: ${result.records} records, chain intact`);
    return 0;
  },
  tail: async (ctx, { flags }) => {
    const home = initialized(ctx);
    const last = parseCount("-n", flags.lines, DEFAULT_TAIL_LINES);
    const json = flags.json === true;
    if (flags.follow !== true) {
      const records = last === 0 ? [] : readAuditRecords(home).slice(-last);
      if (json) ctx.out.json(records);
      else for (const r of records) ctx.out.line(formatRecordLine(ctx.out, r));
      return 0;
    }
    // A stream cannot be one JSON array: following with --json prints one record per line.
    const print = (r: AuditRecord) => {
      ctx.out.line(json ? JSON.stringify(r) : formatRecordLine(ctx.out, r));
    };
    const controller = new AbortController();
    const stop = () => {
      controller.abort();
    };
    process.once("SIGINT", stop);
    try {
      await followAuditLog(
        home,
        { last, signal: controller.signal, intervalMs: FOLLOW_POLL_MS },
        print,
      );
    } finally {
      process.off("SIGINT", stop);
    }
    return 0;
  },
  query: (ctx, { flags }) => {
    const session = validId("session", flags.session);
    const agent = validId("agent", flags.agent);
    const policy = validId("policy", flags.policy);
    const decision = parseDecision(flags.decision);
    const { host, reason } = flags;
    const since = parseSince(flags.since);
    const records = readAuditRecords(initialized(ctx), {
      ...(session === undefined ? {} : { session_id: session }),
      ...(agent === undefined ? {} : { agent_id: agent }),
      ...(policy === undefined ? {} : { policy_id: policy }),
      ...(decision === undefined ? {} : { decision }),
      ...(host === undefined ? {} : { host }),
      ...(reason === undefined ? {} : { reason }),
      ...(since === undefined ? {} : { since }),
    });
    if (flags.json === true) ctx.out.json(records);
    else for (const r of records) ctx.out.line(formatRecordLine(ctx.out, r));
    return 0;
  },
};

/** A session is known by its session.json or, for a run with --no-session, by its records. */
function findSession(
  home: Home,
  id: string,
): { session: SessionRecord | undefined; records: AuditRecord[] } {
  const session = readSessionRecord(home, id);
  const records = readAuditRecords(home, { session_id: id });
  if (session === undefined && records.length === 0)
    throw new VallignusError("ERR_SESSION_NOT_FOUND", `no session ${JSON.stringify(id)}`);
  return { session, records };
}

function sessionIdArgument(command: string, operands: readonly string[]): string {
  const id = operands[0];
  if (id === undefined) throw usageError("ERR_CLI_USAGE", `${command}: give a session id`);
  assertValidId("session", id);
  return id;
}

function exitText(s: SessionRecord): string {
  if (s.exit_status === null) return "-";
  return s.end_reason === null || s.end_reason === "exited"
    ? String(s.exit_status)
    : `${s.exit_status} (${s.end_reason})`;
}

function describeSession(
  out: Printer,
  id: string,
  s: SessionRecord | undefined,
  counts: { allow: number; deny: number },
): void {
  const rows: [string, string][] =
    s === undefined
      ? [
          ["session", id],
          ["record", "none (run with --no-session); what follows is from the audit log"],
        ]
      : [
          ["session", s.session_id],
          ["started", s.started_at],
          ["ended", s.ended_at ?? "- (still running, or stopped before it could record its end)"],
          ["agent", `${s.agent_id} (owner ${s.owner})`],
          ["policy", `${s.policy_id} v${s.policy_version}`],
          ["token jti", s.jti],
          [
            "command",
            `${s.command.join(" ") || "-"}${s.arg_count === undefined ? "" : ` (${s.arg_count} args, not recorded)`}`,
          ],
          ["isolated", s.isolated ? "yes" : "no"],
          ["exit", exitText(s)],
        ];
  rows.push(["decisions", `${counts.allow} allowed, ${counts.deny} denied`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out.line(`${out.bold(k.padEnd(width))}  ${printable(v)}`);
}

const sessionHandlers: GroupHandlers<typeof SESSIONS.commands> = {
  list: (ctx, { flags }) => {
    const home = initialized(ctx);
    const counts = new Map<string, { allow: number; deny: number }>();
    for (const r of readAuditRecords(home)) {
      if (!isDecisionRecord(r)) continue;
      const c = counts.get(r.session_id) ?? { allow: 0, deny: 0 };
      c[r.decision]++;
      counts.set(r.session_id, c);
    }
    const sessions = listSessionRecords(home).map((s) => ({
      ...s,
      decisions: counts.get(s.session_id) ?? { allow: 0, deny: 0 },
    }));
    if (flags.json === true) {
      ctx.out.json(sessions);
      return 0;
    }
    ctx.out.table(
      ["SESSION", "STARTED", "ENDED", "AGENT", "POLICY", "ALLOW", "DENY", "EXIT"],
      sessions.map((s) =>
        [
          s.session_id,
          s.started_at,
          s.ended_at ?? "-",
          s.agent_id,
          `${s.policy_id} v${s.policy_version}`,
          String(s.decisions.allow),
          String(s.decisions.deny),
          exitText(s),
        ].map(printable),
      ),
    );
    return 0;
  },
  show: (ctx, { name, flags, operands }) => {
    const id = sessionIdArgument(name, operands);
    const { session, records } = findSession(initialized(ctx), id);
    const decisions = countDecisions(records);
    if (flags.json === true) {
      ctx.out.json({ session: session ?? null, decisions, records });
      return 0;
    }
    describeSession(ctx.out, id, session, decisions);
    if (records.length > 0) ctx.out.line();
    for (const r of records) ctx.out.line(formatRecordLine(ctx.out, r));
    return 0;
  },
};

function formatOffset(ms: number): string {
  return `${ms < 0 ? "-" : "+"}${(Math.abs(ms) / 1000).toFixed(3)}s`;
}

/** `vallignus audit verify|tail|query`. */
export async function runAuditCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return runGroup(ctx, "audit", AUDIT, auditHandlers, args);
}

/** `vallignus sessions list|show`. */
export async function runSessionsCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return runGroup(ctx, "sessions", SESSIONS, sessionHandlers, args);
}

const replay: CommandHandler<FlagsOf<typeof REPLAY>> = (ctx, { name, flags, operands }) => {
  const id = sessionIdArgument(name, operands);
  const { session, records } = findSession(initialized(ctx), id);
  const start = records.find((r) => !isDecisionRecord(r) && r.event === "run_start");
  const origin = Date.parse(start?.ts ?? session?.started_at ?? records[0]?.ts ?? "");
  const offsetOf = (r: AuditRecord) => {
    const ms = Date.parse(r.ts) - origin;
    return Number.isFinite(ms) ? ms : null;
  };
  if (flags.json === true) {
    ctx.out.json(records.map((r) => ({ offset_ms: offsetOf(r), ...r })));
    return 0;
  }
  if (records.length === 0) ctx.out.line(`session ${id} has no audit records`);
  const offsets = records.map((r) => {
    const ms = offsetOf(r);
    return ms === null ? "?" : formatOffset(ms);
  });
  const width = Math.max(0, ...offsets.map((o) => o.length));
  records.forEach((r, i) => {
    ctx.out.line(
      `${ctx.out.dim((offsets[i] ?? "").padStart(width))}  ${describeRecord(ctx.out, r)}`,
    );
  });
  return 0;
};

/**
 * `vallignus replay ID`: the run's records in order, each at its offset from the run's start
 * (its run_start record; else its session's start; else its first record).
 */
export async function runReplayCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return runCommand(ctx, "replay", REPLAY, replay, args);
}
