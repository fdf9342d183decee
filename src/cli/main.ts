#!/usr/bin/env node
import { errorLine, EXIT, usageError, VallignusError } from "../errors.js";
import type { CommandContext } from "./command-context.js";
import { SECTIONS } from "./declarations.js";
import { requestedHelp, topHelp, type Entry } from "./help.js";
import { createPrinter } from "./output.js";
import { VERSION } from "./version.js";

type Runner = (ctx: CommandContext, args: readonly string[]) => Promise<number>;

// Commands load on demand: `run` should not pay for the audit viewer, nor `auth` for the proxy
// and the price table. The authority too, so that --version and --help load almost nothing:
// help comes from the declarations alone.
const loadAuthority = () => import("../authority/index.js");
const RUNNERS: Readonly<Record<string, () => Promise<Runner>>> = {
  auth: async () => (await import("./auth-commands.js")).runAuthCommand,
  run: async () => (await import("./run-command.js")).runRunCommand,
  audit: async () => (await import("./audit-commands.js")).runAuditCommand,
  sessions: async () => (await import("./audit-commands.js")).runSessionsCommand,
  replay: async () => (await import("./audit-commands.js")).runReplayCommand,
  spend: async () => (await import("./spend-command.js")).runSpendCommand,
};

const ENTRIES: Readonly<Record<string, Entry>> = Object.assign(
  {},
  ...SECTIONS.map((section) => section.entries),
) as Record<string, Entry>;

async function main(argv: readonly string[]): Promise<number> {
  const out = createPrinter();
  // `vallignus help run` is `vallignus run --help`.
  const args = argv[0] === "help" && argv.length > 1 ? [...argv.slice(1), "--help"] : argv;
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    out.line(topHelp(SECTIONS));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version" || name === "-V") {
    out.line(VERSION);
    return EXIT.ok;
  }
  const entry = Object.hasOwn(ENTRIES, name) ? ENTRIES[name] : undefined;
  const load = Object.hasOwn(RUNNERS, name) ? RUNNERS[name] : undefined;
  if (entry === undefined || load === undefined) {
    throw usageError(
      "ERR_CLI_UNKNOWN_COMMAND",
      `unknown command ${JSON.stringify(name)} (see vallignus --help)`,
    );
  }
  const help = requestedHelp(name, entry, rest);
  if (help !== undefined) {
    out.line(help);
    return EXIT.ok;
  }
  const [{ Home, resolveHomeDir }, runner] = await Promise.all([loadAuthority(), load()]);
  return runner({ home: new Home(resolveHomeDir()), now: () => new Date(), out }, rest);
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

// SIGUSR1 would make Node open an inspector on 127.0.0.1:9229 for the rest of the process: a
// debugger into the supervisor, with its keys and its ledger, for any process that may signal
// it. A listener of our own replaces that behaviour (Node 20 has no --disable-sigusr1).
process.on("SIGUSR1", () => undefined);

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
