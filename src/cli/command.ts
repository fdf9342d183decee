import { parseArgs } from "node:util";

import { usageError } from "../errors.js";

/**
 * One flag, declared once: `parseArgs` reads its `type`, `multiple` and `short`; help prints its
 * `description` and `value`. The declaration also gives the parsed value its type.
 */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** One line for `--help`. */
  readonly description: string;
  /** The value's name in help (`--agent-id ID`); string flags only. */
  readonly value?: string;
  /** A missing required flag is a usage error, and its value is typed as present. */
  readonly required?: true;
  /**
   * `--no-NAME` sets the flag to false: "also" beside `--NAME`, "only" where `--NAME` itself
   * would mean nothing (`run --no-session`). Without it, `--no-NAME` is an unknown option.
   */
  readonly negation?: "also" | "only";
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

export interface CommandSpec<F extends FlagSpecs = FlagSpecs> {
  /** One line for the command lists and `--help`. */
  readonly summary: string;
  readonly flags: F;
  /** What follows the flags in the usage line: `TOKEN`, `ID`, `-- CMD [ARGS…]`. */
  readonly operands?: string;
  /** How many positional arguments it takes (none unless given). */
  readonly positionals?: number;
  /** Everything after the first `--` is a command line to run, passed on untouched. */
  readonly passThrough?: true;
  /** Paragraphs printed after the options: what a user must know before relying on it. */
  readonly notes?: readonly string[];
}

/** A group's commands by name (`auth` → `init`, `create-agent`, …). */
export type CommandTable = Readonly<Record<string, CommandSpec>>;

export interface GroupSpec<C extends CommandTable = CommandTable> {
  readonly summary: string;
  readonly commands: C;
}

type ParseConfig<F extends FlagSpecs> = {
  options: F;
  strict: true;
  allowPositionals: true;
  allowNegative: true;
};

/** The values as `parseArgs` types them from the declaration: a misspelt name does not compile. */
type ParsedValues<F extends FlagSpecs> = ReturnType<typeof parseArgs<ParseConfig<F>>>["values"];

type RequiredNames<F extends FlagSpecs> = {
  [K in keyof F]: F[K]["required"] extends true ? K : never;
}[keyof F];

export type Flags<F extends FlagSpecs> = Omit<ParsedValues<F>, RequiredNames<F>> & {
  readonly [K in RequiredNames<F> & keyof ParsedValues<F>]: NonNullable<ParsedValues<F>[K]>;
};

export interface CommandInput<F extends FlagSpecs> {
  /** The command as typed after `vallignus` (`auth create-policy`), for messages. */
  readonly name: string;
  readonly flags: Flags<F>;
  /** The positional arguments; for a pass-through command, the command line after `--`. */
  readonly operands: readonly string[];
}

export type FlagsOf<S> = S extends CommandSpec<infer F> ? F : never;

/** Flags shared by several commands, declared once with their literal types. */
export function defineFlags<const F extends FlagSpecs>(flags: F): F {
  return flags;
}

export function defineCommand<const F extends FlagSpecs>(spec: CommandSpec<F>): CommandSpec<F> {
  return spec;
}

export function defineGroup<const C extends CommandTable>(group: GroupSpec<C>): GroupSpec<C> {
  return group;
}

/** `--max-spend-usd -1` would read `-1` as a flag; joined, the value check can explain. */
function joinNegativeValues(args: readonly string[], flags: FlagSpecs): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const next = args[i + 1];
    const spec = arg.startsWith("--") ? flags[arg.slice(2)] : undefined;
    if (spec?.type === "string" && next !== undefined && /^-[0-9.]/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

function parseStrictly(name: string, spec: CommandSpec, args: readonly string[]) {
  try {
    return parseArgs({
      args: joinNegativeValues(args, spec.flags),
      options: spec.flags,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
      tokens: true,
    });
  } catch (err) {
    const message = err instanceof Error ? (err.message.split("\n")[0] ?? "") : String(err);
    throw usageError("ERR_CLI_USAGE", `${name}: ${message.replace(/^[A-Z_]+: /, "")}`);
  }
}

/** Strict flag parsing: an unknown flag, a missing value or a missing required flag exits 2. */
export function parseCommandInput<F extends FlagSpecs>(
  name: string,
  spec: CommandSpec<F>,
  args: readonly string[],
): CommandInput<F> {
  const dash = spec.passThrough === true ? args.indexOf("--") : -1;
  const own = dash === -1 ? args : args.slice(0, dash);
  const { values, positionals, tokens } = parseStrictly(name, spec, own);
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    const negation = spec.flags[token.name]?.negation;
    const negated = token.rawName === `--no-${token.name}`;
    if (negated ? negation === undefined : negation === "only")
      throw usageError("ERR_CLI_USAGE", `${name}: unknown option '${token.rawName}'`);
  }
  const maxPositionals = spec.passThrough === true ? 0 : (spec.positionals ?? 0);
  if (positionals.length > maxPositionals) {
    throw usageError(
      "ERR_CLI_USAGE",
      // The value is not quoted: it may be a token.
      `${name}: unexpected extra argument (position ${maxPositionals + 1})`,
    );
  }
  for (const [flag, flagSpec] of Object.entries(spec.flags)) {
    if (flagSpec.required === true && values[flag] === undefined)
      throw usageError("ERR_CLI_USAGE", `${name}: --${flag} is required`);
  }
  return {
    name,
    // parseArgs typed the values from the same declaration; required flags were checked above.
    flags: values as Flags<F>,
    operands: spec.passThrough === true ? (dash === -1 ? [] : args.slice(dash + 1)) : positionals,
  };
}
