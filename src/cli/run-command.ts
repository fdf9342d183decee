import { isIP } from "node:net";

import { usageError, VallignusError } from "../errors.js";
import { normalizeHostName, parseDurationSeconds } from "../policy/index.js";
import type { ResolveOverride } from "../proxy/index.js";
import { runSupervised } from "../run/index.js";
import { booleanFlag, listFlag, parseCommandArgs, stringFlag } from "./args.js";
import type { CommandContext } from "./auth-commands.js";

const RUN_OPTIONS = {
  token: { type: "string" },
  port: { type: "string" },
  "max-runtime": { type: "string" },
  "max-requests": { type: "string" },
  "max-output-lines": { type: "string" },
  "no-session": { type: "boolean" },
  isolate: { type: "boolean" },
  resolve: { type: "string", multiple: true },
  "upstream-ca": { type: "string" },
  "on-budget": { type: "string" },
} as const;

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

export async function runRunCommand(ctx: CommandContext, args: readonly string[]): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const command = dash === -1 ? [] : args.slice(dash + 1);
  const parsed = parseCommandArgs("run", own, RUN_OPTIONS);
  if (command.length === 0)
    throw usageError(
      "ERR_CLI_USAGE",
      "run: give the command after --, e.g. vallignus run -- curl https://example.com",
    );
  const token = stringFlag(parsed, "token") ?? process.env["VALLIGNUS_TOKEN"];
  if (token === undefined || token.trim() === "") {
    throw new VallignusError(
      "ERR_TOKEN_MISSING",
      "run: no token; set VALLIGNUS_TOKEN or pass --token",
    );
  }
  const runtimeText = stringFlag(parsed, "max-runtime");
  const runtime = runtimeText === undefined ? undefined : parseDurationSeconds(runtimeText);
  if (runtimeText !== undefined && runtime === undefined)
    throw usageError("ERR_CLI_USAGE", "run: --max-runtime must be a duration such as 30s, 5m, 1h");
  const portText = stringFlag(parsed, "port");
  const port = parseCount("port", portText);
  if (port !== undefined && port > 65_535)
    throw usageError("ERR_CLI_USAGE", "run: --port must be 1-65535");
  const onBudgetText = stringFlag(parsed, "on-budget") ?? "stop";
  if (onBudgetText !== "stop" && onBudgetText !== "deny") {
    throw usageError("ERR_CLI_USAGE", 'run: --on-budget must be "stop" or "deny"');
  }
  const onBudget: "stop" | "deny" = onBudgetText;
  ctx.home.requireInitialized();
  return runSupervised(
    ctx.home,
    {
      token: token.trim(),
      command,
      port,
      maxRuntimeSeconds: runtime,
      maxRequests: parseCount("max-requests", stringFlag(parsed, "max-requests")),
      maxOutputLines: parseCount("max-output-lines", stringFlag(parsed, "max-output-lines")),
      noSession: booleanFlag(parsed, "no-session") ?? false,
      resolve: listFlag(parsed, "resolve").map(parseResolveOverride),
      upstreamCa: stringFlag(parsed, "upstream-ca"),
      onBudget,
      isolate: booleanFlag(parsed, "isolate") ?? false,
    },
    ctx.now,
  );
}
