#!/usr/bin/env node
import { errorLine, EXIT, usageError, VallignusError } from "../errors.js";
import { createPrinter } from "./output.js";

// Command groups load on demand: `run` should not pay for the audit viewer, nor `auth` for the
// proxy and the price table. The authority too, so that --version and --help load almost nothing.
const loadAuthority = () => import("../authority/index.js");
const loadAuth = () => import("./auth-commands.js");
const loadAudit = () => import("./audit-commands.js");
const loadSpend = () => import("./spend-command.js");
const loadRun = () => import("./run-command.js");

async function usage(): Promise<string> {
  const [{ authUsage }, { auditUsage }, { spendUsage }] = await Promise.all([
    loadAuth(),
    loadAudit(),
    loadSpend(),
  ]);
  return `usage: vallignus <command> [options]

Local authority:
${authUsage()}

Firewall:
  vallignus run [--token T] [--isolate] [--on-budget stop|deny] [--max-runtime D] [--max-requests N] [--max-output-lines N]
                [--port P] [--no-session] [--resolve HOST:PORT:ADDR] [--upstream-ca FILE] -- CMD [ARGS…]

Audit and sessions:
${auditUsage()}

Spend:
${spendUsage()}

Every listing and inspect command takes --json. State lives in $VALLIGNUS_HOME (default ~/.vallignus).
Exit status: 0 ok, 1 failure, 2 usage, 3 token refused, 4 stopped by policy.`;
}

async function main(argv: readonly string[]): Promise<number> {
  const out = createPrinter();
  const [group, ...rest] = argv;
  if (group === undefined || group === "--help" || group === "-h" || group === "help") {
    out.line(await usage());
    return group === undefined ? EXIT.usage : EXIT.ok;
  }
  if (group === "--version") {
    out.line("0.1.0");
    return EXIT.ok;
  }
  const { Home, resolveHomeDir } = await loadAuthority();
  const ctx = { home: new Home(resolveHomeDir()), now: () => new Date(), out };
  switch (group) {
    case "auth":
      return (await loadAuth()).runAuthCommand(ctx, rest);
    case "run":
      return (await loadRun()).runRunCommand(ctx, rest);
    case "audit":
      return (await loadAudit()).runAuditCommand(ctx, rest);
    case "sessions":
      return (await loadAudit()).runSessionsCommand(ctx, rest);
    case "replay":
      return (await loadAudit()).runReplayCommand(ctx, rest);
    case "spend":
      return (await loadSpend()).runSpendCommand(ctx, rest);
    default:
      throw usageError(
        "ERR_CLI_UNKNOWN_COMMAND",
        `unknown command ${JSON.stringify(group)} (see vallignus --help)`,
      );
  }
}

function report(err: unknown): number {
  if (err instanceof VallignusError) {
    process.stderr.write(errorLine(err.code, err.message));
    return err.exitStatus;
  }
  const detail = err instanceof Error ? err.message : String(err);
  process.stderr.write(errorLine("ERR_INTERNAL", `internal error: ${detail}`));
  return EXIT.failure;
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
