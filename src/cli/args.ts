import { parseArgs } from "node:util";

import { usageError } from "../errors.js";

export type OptionSpec = Record<
  string,
  { type: "string" | "boolean"; multiple?: boolean; short?: string }
>;

export interface ParsedArgs {
  readonly values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  readonly positionals: string[];
}

/** Strict flag parsing: an unknown flag or a missing value is a usage error (exit 2). */
export function parseCommandArgs(
  command: string,
  args: readonly string[],
  options: OptionSpec,
  maxPositionals = 0,
): ParsedArgs {
  // "--max-spend-usd -1" would read "-1" as a flag; join it so the value check can explain.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const next = args[i + 1];
    const spec = arg.startsWith("--") ? options[arg.slice(2)] : undefined;
    if (spec?.type === "string" && next !== undefined && /^-[0-9.]/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({
      args: joined,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    });
  } catch (err) {
    const message = err instanceof Error ? (err.message.split("\n")[0] ?? "") : String(err);
    throw usageError("ERR_CLI_USAGE", `${command}: ${message.replace(/^[A-Z_]+: /, "")}`);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw usageError(
      "ERR_CLI_USAGE",
      // The value is not quoted: it may be a token.
      `${command}: unexpected extra argument (position ${maxPositionals + 1})`,
    );
  }
  return parsed;
}

export function stringFlag(parsed: ParsedArgs, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : undefined;
}

export function requiredFlag(command: string, parsed: ParsedArgs, name: string): string {
  const value = stringFlag(parsed, name);
  if (value === undefined) throw usageError("ERR_CLI_USAGE", `${command}: --${name} is required`);
  return value;
}

export function booleanFlag(parsed: ParsedArgs, name: string): boolean | undefined {
  const value = parsed.values[name];
  return typeof value === "boolean" ? value : undefined;
}

export function listFlag(parsed: ParsedArgs, name: string): string[] {
  const value = parsed.values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}
