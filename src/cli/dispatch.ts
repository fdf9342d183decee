import { EXIT, usageError } from "../errors.js";
import {
  parseCommandInput,
  type CommandInput,
  type CommandSpec,
  type CommandTable,
  type FlagSpecs,
  type FlagsOf,
  type GroupSpec,
} from "./command.js";
import type { CommandContext } from "./command-context.js";
import { requestedHelp, type Entry } from "./help.js";

export type CommandHandler<F extends FlagSpecs> = (
  ctx: CommandContext,
  input: CommandInput<F>,
) => number | Promise<number>;

/** One handler per declared command: a command without one, or one too many, does not compile. */
export type GroupHandlers<C extends CommandTable> = {
  readonly [K in keyof C]: CommandHandler<FlagsOf<C[K]>>;
};

/** Prints the help that the arguments ask for, if they ask for any. */
function answeredHelp(
  ctx: CommandContext,
  name: string,
  entry: Entry,
  args: readonly string[],
): boolean {
  const help = requestedHelp(name, entry, args);
  if (help !== undefined) ctx.out.line(help);
  return help !== undefined;
}

/** `vallignus NAME [flags]`: its help if asked for, else the handler on the parsed input. */
export async function runCommand<F extends FlagSpecs>(
  ctx: CommandContext,
  name: string,
  spec: CommandSpec<F>,
  handler: CommandHandler<F>,
  args: readonly string[],
): Promise<number> {
  if (answeredHelp(ctx, name, spec, args)) return EXIT.ok;
  return handler(ctx, parseCommandInput(name, spec, args));
}

/** `vallignus GROUP COMMAND [flags]`, e.g. `vallignus auth init`. */
export async function runGroup<C extends CommandTable>(
  ctx: CommandContext,
  name: string,
  group: GroupSpec<C>,
  handlers: GroupHandlers<C>,
  args: readonly string[],
): Promise<number> {
  if (answeredHelp(ctx, name, group, args)) return EXIT.ok;
  const [command, ...rest] = args;
  if (command === undefined || !Object.hasOwn(group.commands, command)) {
    throw usageError(
      "ERR_CLI_UNKNOWN_COMMAND",
      command === undefined
        ? `${name}: missing command (see vallignus ${name} --help)`
        : `${name}: unknown command ${JSON.stringify(command)} (see vallignus ${name} --help)`,
    );
  }
  // The spec and the handler are the same key's: GroupHandlers pairs their types.
  const spec = group.commands[command] as CommandSpec;
  const handler = handlers[command] as CommandHandler<FlagSpecs>;
  return handler(ctx, parseCommandInput(`${name} ${command}`, spec, rest));
}
