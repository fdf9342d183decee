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
import { booleanFlag, parseCommandArgs, stringFlag, type ParsedArgs } from "./args.js";
import type { CommandContext } from "./auth-commands.js";
import type { Printer } from "./output.js";

type Command = (ctx: CommandContext, args: readonly string[]) => Promise<number> | number;

const JSON_OPTION = { json: { type: "boolean" } } as const;
const DEFAULT_TAIL_LINES = 20;
const FOLLOW_POLL_MS = 200;

function initialized(ctx: CommandContext): Home {
  ctx.home.requireInitialized();
  return ctx.home;
}

function wantsJson(parsed: ParsedArgs): boolean {
  return booleanFlag(parsed, "json") === true;
}

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

function idFlag(parsed: ParsedArgs, flag: string, kind: string): string | undefined {
  const value = stringFlag(parsed, flag);
  if (value !== undefined) assertValidId(kind, value);
  return value;
}

function countDecisions(records: readonly AuditRecord[]): { allow: number; deny: number } {
  const counts = { allow: 0, deny: 0 };
  for (const r of records) if (isDecisionRecord(r)) counts[r.decision]++;
  return counts;
}

const auditCommands: Record<string, { run: Command; summary: string; usage: string }> = {
  verify: {
    usage: "verify [--json]",
    summary: "check the audit log's hash chain from the first line to the last",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("audit verify", args, JSON_OPTION);
      const result = verifyAuditLog(initialized(ctx));
      if (wantsJson(parsed)) ctx.out.json(result);
      if (!result.ok)
        throw new VallignusError(
          "ERR_AUDIT_CHAIN_BROKEN",
          `audit log broken at line ${result.line}: ${result.why}`,
        );
      if (!wantsJson(parsed)) ctx.out.line(`ok: ${result.records} records, chain intact`);
      return 0;
    },
  },
  tail: {
    usage: "tail [-n N] [-f] [--json]",
    summary: "show the last records (20 unless -n); -f keeps printing new ones until Ctrl-C",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("audit tail", args, {
        lines: { type: "string", short: "n" },
        follow: { type: "boolean", short: "f" },
        ...JSON_OPTION,
      });
      const home = initialized(ctx);
      const last = parseCount("-n", stringFlag(parsed, "lines"), DEFAULT_TAIL_LINES);
      const json = wantsJson(parsed);
      if (booleanFlag(parsed, "follow") !== true) {
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
  },
  query: {
    usage:
      "query [--session ID] [--agent ID] [--policy ID] [--decision allow|deny] [--host H] [--reason R] [--since ISO] [--json]",
    summary: "records matching every filter given, oldest first",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("audit query", args, {
        session: { type: "string" },
        agent: { type: "string" },
        policy: { type: "string" },
        decision: { type: "string" },
        host: { type: "string" },
        reason: { type: "string" },
        since: { type: "string" },
        ...JSON_OPTION,
      });
      const session = idFlag(parsed, "session", "session");
      const agent = idFlag(parsed, "agent", "agent");
      const policy = idFlag(parsed, "policy", "policy");
      const decision = parseDecision(stringFlag(parsed, "decision"));
      const host = stringFlag(parsed, "host");
      const reason = stringFlag(parsed, "reason");
      const since = parseSince(stringFlag(parsed, "since"));
      const records = readAuditRecords(initialized(ctx), {
        ...(session === undefined ? {} : { session_id: session }),
        ...(agent === undefined ? {} : { agent_id: agent }),
        ...(policy === undefined ? {} : { policy_id: policy }),
        ...(decision === undefined ? {} : { decision }),
        ...(host === undefined ? {} : { host }),
        ...(reason === undefined ? {} : { reason }),
        ...(since === undefined ? {} : { since }),
      });
      if (wantsJson(parsed)) ctx.out.json(records);
      else for (const r of records) ctx.out.line(formatRecordLine(ctx.out, r));
      return 0;
    },
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

function sessionIdArgument(command: string, parsed: ParsedArgs): string {
  const id = parsed.positionals[0];
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

const sessionCommands: Record<string, { run: Command; summary: string; usage: string }> = {
  list: {
    usage: "list [--json]",
    summary: "every recorded run, oldest first, with its allow and deny counts",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("sessions list", args, JSON_OPTION);
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
      if (wantsJson(parsed)) {
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
  },
  show: {
    usage: "show ID [--json]",
    summary: "one run: its session record, counts and every record",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("sessions show", args, JSON_OPTION, 1);
      const id = sessionIdArgument("sessions show", parsed);
      const { session, records } = findSession(initialized(ctx), id);
      const decisions = countDecisions(records);
      if (wantsJson(parsed)) {
        ctx.out.json({ session: session ?? null, decisions, records });
        return 0;
      }
      describeSession(ctx.out, id, session, decisions);
      if (records.length > 0) ctx.out.line();
      for (const r of records) ctx.out.line(formatRecordLine(ctx.out, r));
      return 0;
    },
  },
};

function formatOffset(ms: number): string {
  return `${ms < 0 ? "-" : "+"}${(Math.abs(ms) / 1000).toFixed(3)}s`;
}

/** Usage lines for the lead's `--help`, in the style of `authUsage()`. */
export function auditUsage(): string {
  const lines = [
    ...Object.values(auditCommands).map((c) => [`audit ${c.usage}`, c.summary]),
    ...Object.values(sessionCommands).map((c) => [`sessions ${c.usage}`, c.summary]),
    ["replay ID [--json]", "a run's records as a timeline from its start"],
  ];
  const width = Math.max(...lines.map(([u]) => (u ?? "").length));
  return lines.map(([u, s]) => `  vallignus ${(u ?? "").padEnd(width)}  ${s ?? ""}`).join("\n");
}

async function dispatch(
  group: string,
  commands: Record<string, { run: Command; summary: string; usage: string }>,
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  const [name, ...rest] = args;
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) {
    throw usageError(
      "ERR_CLI_UNKNOWN_COMMAND",
      name === undefined
        ? `${group}: missing command (one of: ${Object.keys(commands).join(", ")})`
        : `${group}: unknown command ${JSON.stringify(name)}`,
    );
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    ctx.out.line(`usage: vallignus ${group} ${command.usage}\n  ${command.summary}`);
    return 0;
  }
  return command.run(ctx, rest);
}

/** `vallignus audit verify|tail|query`. */
export async function runAuditCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return dispatch("audit", auditCommands, ctx, args);
}

/** `vallignus sessions list|show`. */
export async function runSessionsCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return dispatch("sessions", sessionCommands, ctx, args);
}

const replay: Command = (ctx, args) => {
  if (args.includes("--help") || args.includes("-h")) {
    ctx.out.line(
      "usage: vallignus replay ID [--json]\n  a run's records as a timeline from its start",
    );
    return 0;
  }
  const parsed = parseCommandArgs("replay", args, JSON_OPTION, 1);
  const id = sessionIdArgument("replay", parsed);
  const { session, records } = findSession(initialized(ctx), id);
  const start = records.find((r) => !isDecisionRecord(r) && r.event === "run_start");
  const origin = Date.parse(start?.ts ?? session?.started_at ?? records[0]?.ts ?? "");
  const offsetOf = (r: AuditRecord) => {
    const ms = Date.parse(r.ts) - origin;
    return Number.isFinite(ms) ? ms : null;
  };
  if (wantsJson(parsed)) {
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
  return replay(ctx, args);
}
