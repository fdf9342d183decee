import { readFileSync } from "node:fs";

import {
  initHome,
  inspectTokenIn,
  issueTokenFrom,
  requireValidTokenIn,
  type AuthorityStore,
} from "../authority/index.js";
import { usageError, VallignusError } from "../errors.js";
import { formatDuration, parseDurationSeconds, type PolicyVersion } from "../policy/index.js";
import { MAX_TOKEN_LENGTH } from "../tokens/index.js";
import { authorityStore, type CommandContext } from "./command-context.js";
import { AUTH } from "./declarations.js";
import { runGroup, type GroupHandlers } from "./dispatch.js";
import type { Printer } from "./output.js";
import { policyChangesFromFlags, policyRulesFromFlags } from "./policy-flags.js";
import { SECRET_HANDLERS } from "./secret-commands.js";

function parseVersion(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(text))
    throw usageError("ERR_CLI_USAGE", `--version: ${JSON.stringify(text)} is not a version number`);
  return Number(text);
}

/**
 * A token is read from the argument, or from stdin when the argument is "-" (so it need not
 * appear in the process list). Its text never goes into a message.
 */
function readTokenArgument(command: string, operands: readonly string[]): string {
  const arg = operands[0];
  if (arg === undefined)
    throw usageError(
      "ERR_CLI_USAGE",
      `${command}: give the token as an argument, or "-" to read it from stdin`,
    );
  const token = arg === "-" ? readFileSync(0, "utf8").trim() : arg.trim();
  if (token.length > MAX_TOKEN_LENGTH)
    throw new VallignusError("ERR_TOKEN_MALFORMED", `${command}: the token is too long`);
  return token;
}

function describePolicy(out: Printer, p: PolicyVersion): void {
  const rows: [string, string][] = [
    ["policy", `${p.policy_id} v${p.version}`],
    ["created", p.created_at],
    ["max spend (USD)", p.max_spend_usd],
    ["allowed domains", p.allowed_domains.join(", ") || "(none)"],
    ["denied domains", p.denied_domains.join(", ") || "(none)"],
    [
      "allowed models",
      p.allowed_models === null ? "any priced model" : p.allowed_models.join(", ") || "(none)",
    ],
    ["max requests", p.max_requests === null ? "no limit" : String(p.max_requests)],
    [
      "max runtime",
      p.max_runtime_seconds === null ? "no limit" : formatDuration(p.max_runtime_seconds),
    ],
    ["private networks", p.allow_private_networks ? "allowed" : "denied"],
    [
      "prices (USD/Mtok)",
      Object.entries(p.prices)
        .map(([m, pr]) => `${m}=${pr.input_usd_per_mtok}/${pr.output_usd_per_mtok}`)
        .join(", ") || "(table only)",
    ],
    ["secrets", p.secrets.join(", ") || "(none)"],
    ["inspect hosts", p.inspect_hosts.join(", ") || "(none)"],
    ["allow requests", p.allow_requests.join(", ") || "(none)"],
    ["deny requests", p.deny_requests.join(", ") || "(none)"],
    ["sha256", p.sha256],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out.line(`${out.bold(k.padEnd(width))}  ${v}`);
}

function printInspection(
  out: Printer,
  inspection: Awaited<ReturnType<typeof inspectTokenIn>>,
  accepted: boolean,
): void {
  out.line(out.bold("header"));
  out.line(JSON.stringify(inspection.header ?? null, null, 2));
  out.line(out.bold("claims"));
  out.line(JSON.stringify(inspection.claims ?? null, null, 2));
  out.line();
  out.table(
    ["CHECK", "VERDICT", "DETAIL"],
    inspection.checks.map((c) => [
      c.check,
      c.ok === true ? out.green("ok") : c.ok === false ? out.red("FAIL") : out.dim("n/a"),
      c.detail,
    ]),
  );
  out.line();
  out.line(
    accepted
      ? out.green("accepted: run would take this token")
      : out.red("refused: run would not take this token"),
  );
}

/** A policy may name only secrets the authority holds (a run checks again at its start). */
function assertSecretsExist(store: AuthorityStore, names: readonly string[]): void {
  const missing = names.filter((name) => store.findSecret(name) === undefined);
  if (missing.length > 0) {
    throw new VallignusError(
      "ERR_SECRET_NOT_FOUND",
      `no secret ${missing.join(", ")}: store it first with auth set-secret`,
    );
  }
}

const handlers: GroupHandlers<typeof AUTH.commands> = {
  ...SECRET_HANDLERS,
  init: async (ctx, { flags }) => {
    const result = await initHome(ctx.home, ctx.now(), flags.force ?? false);
    if (result.created.length === 0) {
      ctx.out.line(
        `already initialized: ${ctx.home.root} (nothing replaced; use --force to replace the key and CA)`,
      );
    } else {
      ctx.out.line(`initialized ${ctx.home.root}: ${result.created.join(", ")}`);
    }
    return 0;
  },
  "create-agent": (ctx, { flags }) => {
    const agent = authorityStore(ctx).createAgent(flags["agent-id"], flags.owner, ctx.now());
    if (flags.json === true) ctx.out.json(agent);
    else ctx.out.line(`created agent ${agent.agent_id} (owner ${agent.owner})`);
    return 0;
  },
  "list-agents": (ctx, { flags }) => {
    const agents = authorityStore(ctx).listAgents();
    if (flags.json === true) ctx.out.json(agents);
    else
      ctx.out.table(
        ["AGENT", "OWNER", "STATUS", "CREATED", "UPDATED"],
        agents.map((a) => [
          a.agent_id,
          a.owner,
          a.disabled ? ctx.out.red("disabled") : ctx.out.green("enabled"),
          a.created_at,
          a.updated_at,
        ]),
      );
    return 0;
  },
  "disable-agent": (ctx, { flags }) => {
    const agent = authorityStore(ctx).setAgentDisabled(flags["agent-id"], true, ctx.now());
    ctx.out.line(`disabled agent ${agent.agent_id}`);
    return 0;
  },
  "enable-agent": (ctx, { flags }) => {
    const agent = authorityStore(ctx).setAgentDisabled(flags["agent-id"], false, ctx.now());
    ctx.out.line(`enabled agent ${agent.agent_id}`);
    return 0;
  },
  "create-policy": (ctx, { flags }) => {
    const rules = policyRulesFromFlags(flags);
    const store = authorityStore(ctx);
    assertSecretsExist(store, rules.secrets);
    const doc = store.createPolicy(flags["policy-id"], rules, ctx.now());
    if (flags.json === true) ctx.out.json(doc);
    else ctx.out.line(`created policy ${doc.policy_id} v${doc.version} (sha256 ${doc.sha256})`);
    return 0;
  },
  "update-policy": (ctx, { flags }) => {
    const changes = policyChangesFromFlags(flags);
    const store = authorityStore(ctx);
    assertSecretsExist(store, changes.secrets ?? []);
    const doc = store.updatePolicy(flags["policy-id"], changes, ctx.now());
    if (flags.json === true) ctx.out.json(doc);
    else ctx.out.line(`updated policy ${doc.policy_id} to v${doc.version} (sha256 ${doc.sha256})`);
    return 0;
  },
  "show-policy": (ctx, { flags }) => {
    const doc = authorityStore(ctx).getPolicyVersion(
      flags["policy-id"],
      parseVersion(flags.version),
    );
    if (flags.json === true) ctx.out.json(doc);
    else describePolicy(ctx.out, doc);
    return 0;
  },
  "list-policies": (ctx, { flags }) => {
    const store = authorityStore(ctx);
    const latest = store.listPolicyIds().map((id) => ({
      doc: store.getPolicyVersion(id),
      versions: store.listPolicyVersions(id).length,
    }));
    if (flags.json === true) {
      ctx.out.json(latest.map(({ doc, versions }) => ({ ...doc, versions })));
    } else {
      ctx.out.table(
        ["POLICY", "VERSION", "MAX USD", "ALLOWED DOMAINS", "MODELS", "CREATED"],
        latest.map(({ doc }) => [
          doc.policy_id,
          String(doc.version),
          doc.max_spend_usd,
          doc.allowed_domains.join(",") || "-",
          doc.allowed_models === null ? "any" : doc.allowed_models.join(",") || "-",
          doc.created_at,
        ]),
      );
    }
    return 0;
  },
  "issue-token": async (ctx, { flags }) => {
    const ttlText = flags.ttl ?? "24h";
    const ttl = parseDurationSeconds(ttlText);
    if (ttl === undefined)
      throw usageError(
        "ERR_TOKEN_TTL",
        `--ttl: ${JSON.stringify(ttlText)} is not a duration such as 1h, 24h, 7d`,
      );
    const { token } = await issueTokenFrom(
      authorityStore(ctx),
      flags["agent-id"],
      flags["policy-id"],
      parseVersion(flags.version),
      ttl,
      ctx.now(),
    );
    ctx.out.line(token);
    return 0;
  },
  "inspect-token": async (ctx, { name, flags, operands }) => {
    const token = readTokenArgument(name, operands);
    const inspection = await inspectTokenIn(authorityStore(ctx), token, ctx.now());
    const accepted = inspection.checks.every((c) => c.ok === true);
    if (flags.json === true) {
      ctx.out.json({ ...inspection, accepted });
      return 0;
    }
    printInspection(ctx.out, inspection, accepted);
    return 0;
  },
  "verify-token": async (ctx, { name, flags, operands }) => {
    const token = readTokenArgument(name, operands);
    const claims = await requireValidTokenIn(authorityStore(ctx), token, ctx.now());
    if (flags.json === true) ctx.out.json({ accepted: true, claims });
    else
      ctx.out.line(
        `ok: jti ${claims.jti}, agent ${claims.agent_id}, policy ${claims.policy_id} v${claims.policy_version}, expires ${new Date(claims.exp * 1000).toISOString()}`,
      );
    return 0;
  },
  "revoke-token": async (ctx, { name, flags }) => {
    const store = authorityStore(ctx);
    let jti = flags.jti;
    const tokenText = flags.token;
    if ((jti === undefined) === (tokenText === undefined))
      throw usageError("ERR_CLI_USAGE", `${name}: give exactly one of --jti or --token`);
    if (tokenText !== undefined) {
      const inspection = await inspectTokenIn(
        store,
        tokenText === "-" ? readFileSync(0, "utf8").trim() : tokenText,
        ctx.now(),
      );
      const claimed = inspection.claims?.["jti"];
      if (typeof claimed !== "string")
        throw new VallignusError("ERR_TOKEN_MALFORMED", `${name}: the token has no jti`);
      jti = claimed;
    }
    const { revocation, already } = store.revokeJti(jti ?? "", flags.reason ?? "", ctx.now());
    ctx.out.line(
      already
        ? `jti ${revocation.jti} was already revoked at ${revocation.revoked_at}`
        : `revoked jti ${revocation.jti}`,
    );
    return 0;
  },
  "rotate-key": (ctx, { flags }) => {
    const result = authorityStore(ctx).rotateSigningKey(
      ctx.now(),
      flags["revoke-previous"] ?? false,
    );
    if (flags.json === true) ctx.out.json(result);
    else {
      ctx.out.line(`active key is now ${result.kid}`);
      if (result.revoked.length > 0) ctx.out.line(`revoked keys: ${result.revoked.join(", ")}`);
    }
    return 0;
  },
  "list-keys": (ctx, { flags }) => {
    const keys = authorityStore(ctx)
      .listSigningKeys()
      .map((k) => ({
        kid: k.kid,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
      }));
    if (flags.json === true) ctx.out.json(keys);
    else
      ctx.out.table(
        ["KID", "CREATED", "REVOKED"],
        keys.map((k) => [k.kid, k.created_at, k.revoked_at ?? "-"]),
      );
    return 0;
  },
};

/** `vallignus auth <command>`. */
export async function runAuthCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  return runGroup(ctx, "auth", AUTH, handlers, args);
}
