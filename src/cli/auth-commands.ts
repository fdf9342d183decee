import { readFileSync } from "node:fs";

import {
  createAgent,
  createPolicy,
  getPolicyVersion,
  Home,
  initHome,
  inspectTokenInHome,
  issueToken,
  listAgents,
  listPolicyIds,
  listPolicyVersions,
  listSigningKeys,
  requireValidToken,
  revokeJti,
  rotateSigningKey,
  setAgentDisabled,
  updatePolicy,
} from "../authority/index.js";
import { usageError, VallignusError } from "../errors.js";
import { formatDuration, parseDurationSeconds, type PolicyVersion } from "../policy/index.js";
import { MAX_TOKEN_LENGTH } from "../tokens/index.js";
import {
  booleanFlag,
  parseCommandArgs,
  requiredFlag,
  stringFlag,
  type ParsedArgs,
} from "./args.js";
import { createPrinter, type Printer } from "./output.js";
import {
  POLICY_FIELD_OPTIONS,
  policyChangesFromFlags,
  policyRulesFromFlags,
} from "./policy-flags.js";

export interface CommandContext {
  readonly home: Home;
  readonly now: () => Date;
  readonly out: Printer;
}

type Command = (ctx: CommandContext, args: readonly string[]) => Promise<number> | number;

const JSON_OPTION = { json: { type: "boolean" } } as const;

function initialized(ctx: CommandContext): Home {
  ctx.home.requireInitialized();
  return ctx.home;
}

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
function readTokenArgument(command: string, parsed: ParsedArgs): string {
  const arg = parsed.positionals[0];
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
    ["sha256", p.sha256],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out.line(`${out.bold(k.padEnd(width))}  ${v}`);
}

const commands: Record<string, { run: Command; summary: string }> = {
  init: {
    summary: "create $VALLIGNUS_HOME, the first signing key and the local CA",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("auth init", args, { force: { type: "boolean" } });
      const result = await initHome(ctx.home, ctx.now(), booleanFlag(parsed, "force") ?? false);
      if (result.created.length === 0) {
        ctx.out.line(
          `already initialized: ${ctx.home.root} (nothing replaced; use --force to replace the key and CA)`,
        );
      } else {
        ctx.out.line(`initialized ${ctx.home.root}: ${result.created.join(", ")}`);
      }
      return 0;
    },
  },
  "create-agent": {
    summary: "register an agent identity",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth create-agent", args, {
        "agent-id": { type: "string" },
        owner: { type: "string" },
        ...JSON_OPTION,
      });
      const agent = createAgent(
        initialized(ctx),
        requiredFlag("create-agent", parsed, "agent-id"),
        requiredFlag("create-agent", parsed, "owner"),
        ctx.now(),
      );
      if (booleanFlag(parsed, "json") === true) ctx.out.json(agent);
      else ctx.out.line(`created agent ${agent.agent_id} (owner ${agent.owner})`);
      return 0;
    },
  },
  "list-agents": {
    summary: "list agents",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth list-agents", args, JSON_OPTION);
      const agents = listAgents(initialized(ctx));
      if (booleanFlag(parsed, "json") === true) ctx.out.json(agents);
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
  },
  "disable-agent": {
    summary: "disable an agent: its tokens stop working, live",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth disable-agent", args, {
        "agent-id": { type: "string" },
      });
      const agent = setAgentDisabled(
        initialized(ctx),
        requiredFlag("disable-agent", parsed, "agent-id"),
        true,
        ctx.now(),
      );
      ctx.out.line(`disabled agent ${agent.agent_id}`);
      return 0;
    },
  },
  "enable-agent": {
    summary: "enable a disabled agent again",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth enable-agent", args, {
        "agent-id": { type: "string" },
      });
      const agent = setAgentDisabled(
        initialized(ctx),
        requiredFlag("enable-agent", parsed, "agent-id"),
        false,
        ctx.now(),
      );
      ctx.out.line(`enabled agent ${agent.agent_id}`);
      return 0;
    },
  },
  "create-policy": {
    summary: "create version 1 of a policy",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth create-policy", args, {
        ...POLICY_FIELD_OPTIONS,
        ...JSON_OPTION,
      });
      const policyId = requiredFlag("create-policy", parsed, "policy-id");
      const rules = policyRulesFromFlags(parsed);
      const doc = createPolicy(initialized(ctx), policyId, rules, ctx.now());
      if (booleanFlag(parsed, "json") === true) ctx.out.json(doc);
      else ctx.out.line(`created policy ${doc.policy_id} v${doc.version} (sha256 ${doc.sha256})`);
      return 0;
    },
  },
  "update-policy": {
    summary: "write version n+1 of a policy",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth update-policy", args, {
        ...POLICY_FIELD_OPTIONS,
        "add-domains": { type: "string" },
        "remove-domains": { type: "string" },
        ...JSON_OPTION,
      });
      const policyId = requiredFlag("update-policy", parsed, "policy-id");
      const changes = policyChangesFromFlags(parsed);
      const doc = updatePolicy(initialized(ctx), policyId, changes, ctx.now());
      if (booleanFlag(parsed, "json") === true) ctx.out.json(doc);
      else
        ctx.out.line(`updated policy ${doc.policy_id} to v${doc.version} (sha256 ${doc.sha256})`);
      return 0;
    },
  },
  "show-policy": {
    summary: "show a policy version (the latest unless --version)",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth show-policy", args, {
        "policy-id": { type: "string" },
        version: { type: "string" },
        ...JSON_OPTION,
      });
      const doc = getPolicyVersion(
        initialized(ctx),
        requiredFlag("show-policy", parsed, "policy-id"),
        parseVersion(stringFlag(parsed, "version")),
      );
      if (booleanFlag(parsed, "json") === true) ctx.out.json(doc);
      else describePolicy(ctx.out, doc);
      return 0;
    },
  },
  "list-policies": {
    summary: "list policies with their latest version",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth list-policies", args, JSON_OPTION);
      const home = initialized(ctx);
      const latest = listPolicyIds(home).map((id) => ({
        doc: getPolicyVersion(home, id),
        versions: listPolicyVersions(home, id).length,
      }));
      if (booleanFlag(parsed, "json") === true) {
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
  },
  "issue-token": {
    summary: "sign a token for an agent and a policy version; prints only the token",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("auth issue-token", args, {
        "agent-id": { type: "string" },
        "policy-id": { type: "string" },
        version: { type: "string" },
        ttl: { type: "string" },
      });
      const ttlText = stringFlag(parsed, "ttl") ?? "24h";
      const ttl = parseDurationSeconds(ttlText);
      if (ttl === undefined)
        throw usageError(
          "ERR_TOKEN_TTL",
          `--ttl: ${JSON.stringify(ttlText)} is not a duration such as 1h, 24h, 7d`,
        );
      const { token } = await issueToken(
        initialized(ctx),
        requiredFlag("issue-token", parsed, "agent-id"),
        requiredFlag("issue-token", parsed, "policy-id"),
        parseVersion(stringFlag(parsed, "version")),
        ttl,
        ctx.now(),
      );
      ctx.out.line(token);
      return 0;
    },
  },
  "inspect-token": {
    summary: "decode a token without trusting it and show a verdict for each check",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("auth inspect-token", args, JSON_OPTION, 1);
      const token = readTokenArgument("inspect-token", parsed);
      const inspection = await inspectTokenInHome(initialized(ctx), token, ctx.now());
      const accepted = inspection.checks.every((c) => c.ok === true);
      if (booleanFlag(parsed, "json") === true) {
        ctx.out.json({ ...inspection, accepted });
        return 0;
      }
      ctx.out.line(ctx.out.bold("header"));
      ctx.out.line(JSON.stringify(inspection.header ?? null, null, 2));
      ctx.out.line(ctx.out.bold("claims"));
      ctx.out.line(JSON.stringify(inspection.claims ?? null, null, 2));
      ctx.out.line();
      ctx.out.table(
        ["CHECK", "VERDICT", "DETAIL"],
        inspection.checks.map((c) => [
          c.check,
          c.ok === true
            ? ctx.out.green("ok")
            : c.ok === false
              ? ctx.out.red("FAIL")
              : ctx.out.dim("n/a"),
          c.detail,
        ]),
      );
      ctx.out.line();
      ctx.out.line(
        accepted
          ? ctx.out.green("accepted: run would take this token")
          : ctx.out.red("refused: run would not take this token"),
      );
      return 0;
    },
  },
  "verify-token": {
    summary: "exit 0 if run would accept the token, else 3 and the reason",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("auth verify-token", args, JSON_OPTION, 1);
      const token = readTokenArgument("verify-token", parsed);
      const claims = await requireValidToken(initialized(ctx), token, ctx.now());
      if (booleanFlag(parsed, "json") === true) ctx.out.json({ accepted: true, claims });
      else
        ctx.out.line(
          `ok: jti ${claims.jti}, agent ${claims.agent_id}, policy ${claims.policy_id} v${claims.policy_version}, expires ${new Date(claims.exp * 1000).toISOString()}`,
        );
      return 0;
    },
  },
  "revoke-token": {
    summary: "revoke a token by jti (or --token); a run using it stops within 1 s",
    run: async (ctx, args) => {
      const parsed = parseCommandArgs("auth revoke-token", args, {
        jti: { type: "string" },
        token: { type: "string" },
        reason: { type: "string" },
      });
      const home = initialized(ctx);
      let jti = stringFlag(parsed, "jti");
      const tokenText = stringFlag(parsed, "token");
      if ((jti === undefined) === (tokenText === undefined))
        throw usageError("ERR_CLI_USAGE", "revoke-token: give exactly one of --jti or --token");
      if (tokenText !== undefined) {
        const inspection = await inspectTokenInHome(
          home,
          tokenText === "-" ? readFileSync(0, "utf8").trim() : tokenText,
          ctx.now(),
        );
        const claimed = inspection.claims?.["jti"];
        if (typeof claimed !== "string")
          throw new VallignusError("ERR_TOKEN_MALFORMED", "revoke-token: the token has no jti");
        jti = claimed;
      }
      const { revocation, already } = revokeJti(
        home,
        jti ?? "",
        stringFlag(parsed, "reason") ?? "",
        ctx.now(),
      );
      ctx.out.line(
        already
          ? `jti ${revocation.jti} was already revoked at ${revocation.revoked_at}`
          : `revoked jti ${revocation.jti}`,
      );
      return 0;
    },
  },
  "rotate-key": {
    summary: "make a new active signing key; --revoke-previous revokes the older ones",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth rotate-key", args, {
        "revoke-previous": { type: "boolean" },
        ...JSON_OPTION,
      });
      const result = rotateSigningKey(
        initialized(ctx),
        ctx.now(),
        booleanFlag(parsed, "revoke-previous") ?? false,
      );
      if (booleanFlag(parsed, "json") === true) ctx.out.json(result);
      else {
        ctx.out.line(`active key is now ${result.kid}`);
        if (result.revoked.length > 0) ctx.out.line(`revoked keys: ${result.revoked.join(", ")}`);
      }
      return 0;
    },
  },
  "list-keys": {
    summary: "list signing keys",
    run: (ctx, args) => {
      const parsed = parseCommandArgs("auth list-keys", args, JSON_OPTION);
      const keys = listSigningKeys(initialized(ctx)).map((k) => ({
        kid: k.kid,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
      }));
      if (booleanFlag(parsed, "json") === true) ctx.out.json(keys);
      else
        ctx.out.table(
          ["KID", "CREATED", "REVOKED"],
          keys.map((k) => [k.kid, k.created_at, k.revoked_at ?? "-"]),
        );
      return 0;
    },
  },
};

export function authUsage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return Object.entries(commands)
    .map(([name, c]) => `  vallignus auth ${name.padEnd(width)}  ${c.summary}`)
    .join("\n");
}

export async function runAuthCommand(
  ctx: CommandContext,
  args: readonly string[],
): Promise<number> {
  const [name, ...rest] = args;
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) {
    throw usageError(
      "ERR_CLI_UNKNOWN_COMMAND",
      name === undefined
        ? "auth: missing command (see vallignus --help)"
        : `auth: unknown command ${JSON.stringify(name)}`,
    );
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    ctx.out.line(`vallignus auth ${name ?? ""}: ${command.summary}`);
    return 0;
  }
  return command.run(ctx, rest);
}

export { createPrinter };
