import { isIP } from "node:net";

import { usageError, VallignusError } from "../errors.js";
import { normalizeHostName, parseDurationSeconds } from "../policy/index.js";
import type { ResolveOverride } from "../proxy/index.js";
import { runSupervised } from "../run/index.js";
import type { FlagsOf } from "./command.js";
import type { CommandContext } from "./command-context.js";
import { RUN } from "./declarations.js";
import { runCommand, type CommandHandler } from "./dispatch.js";

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9][0-9]{0,9}$/.test(text))
    throw usageError("ERR_CLI_USAGE", `run: --${flag} must be a positive whole number`);
  return Number(text);
}

/** `--resolve HOST:PORT:ADDR`, as curl spells it (an IPv6 ADDR may be in brackets). */
export function parseResolveOverride(spec: string): ResolveOverride {
  const first = spec.indexOf(":");
  const second = spec.indexOf(":", first + 1);
  const host = first > 0 ? normalizeHostName(spec.slice(0, first)) : undefined;
  const portText = second > first ? spec.slice(first + 1, second) : "";
  const address = spec.slice(second + 1).replace(/^\[(.*)\]$/, "$1");
  const port = Number(portText);
  if (
    host === undefined ||
    !/^[1-9][0-9]{0,4}$/.test(portText) ||
    port > 65_535 ||
    second === -1 ||
    isIP(address) === 0
  ) {
    throw usageError(
      "ERR_CLI_USAGE",
      `run: --resolve ${JSON.stringify(spec)} is not HOST:PORT:ADDR`,
    );
  }
  return { host, port, address };
}

function parseRuntime(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = parseDurationSeconds(text);
  if (seconds === undefined)
    throw usageError("ERR_CLI_USAGE", "run: --max-runtime must be a duration such as 30s, 5m, 1h");
  return seconds;
}

function parsePort(text: string | undefined): number | undefined {
  const port = parseCount("port", text);
  if (port !== undefined && port > 65_535)
    throw usageError("ERR_CLI_USAGE", "run: --port must be 1-65535");
  return port;
}

function parseOnBudget(text = "stop"): "stop" | "deny" {
  if (text !== "stop" && text !== "deny")
    throw usageError("ERR_CLI_USAGE", 'run: --on-budget must be "stop" or "deny"');
  return text;
}

const run: CommandHandler<FlagsOf<typeof RUN>> = (ctx, { flags, operands: command }) => {
  if (command.length === 0)
    throw usageError(
      "ERR_CLI_USAGE",
      "run: give the command after --, e.g. vallignus run -- curl https://example.com",
    );
  const token = flags.token ?? process.env["VALLIGNUS_TOKEN"];
  if (token === undefined || token.trim() === "") {
    throw new VallignusError(
      "ERR_TOKEN_MISSING",
      "run: no token; set VALLIGNUS_TOKEN or pass --token",
    );
  }
  if (flags.isolate === true && flags.port !== undefined)
    throw usageError(
      "ERR_CLI_USAGE",
      "run: --port has no use with --isolate (the isolated run's proxy has no TCP port, only the run's own socket)",
    );
  const options = {
    token: token.trim(),
    command,
    port: parsePort(flags.port),
    maxRuntimeSeconds: parseRuntime(flags["max-runtime"]),
    maxRequests: parseCount("max-requests", flags["max-requests"]),
    maxOutputLines: parseCount("max-output-lines", flags["max-output-lines"]),
    // Declared as `session` with only its `--no-` spelling: given, it is false.
    noSession: flags.session === false,
    resolve: (flags.resolve ?? []).map(parseResolveOverride),
    upstreamCa: flags["upstream-ca"],
    onBudget: parseOnBudget(flags["on-budget"]),
    isolate: flags.isolate ?? false,
  };
  ctx.home.requireInitialized();
  return runSupervised(ctx.home, options, ctx.now);
};

/** `vallignus run [options] -- CMD [ARGS…]`. */
export async function runRunCommand(ctx: CommandContext, args: readonly string[]): Promise<number> {
  return runCommand(ctx, "run", RUN, run, args);
}
