import type { CommandSpec, FlagSpec, GroupSpec } from "./command.js";

/** Help is read in terminals and pasted into issues: no line is wider than this. */
export const HELP_WIDTH = 100;

const HELP_FLAG = { type: "boolean", short: "h", description: "print this help" } as const;

/** True when the arguments ask for help: `--help` or `-h` anywhere before a `--`. */
export function asksForHelp(args: readonly string[]): boolean {
  const dash = args.indexOf("--");
  return (dash === -1 ? args : args.slice(0, dash)).some((a) => a === "--help" || a === "-h");
}

/** Words of `text` in lines of at most `width` columns (a longer word keeps its own line). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

type Row = readonly [name: string, text: string];

function nameWidth(rows: readonly Row[]): number {
  return Math.max(...rows.map(([name]) => name.length));
}

/** Two columns: names padded to one width, texts wrapped under their own column. */
function columns(rows: readonly Row[], width = nameWidth(rows)): string[] {
  const indent = "  ";
  const textWidth = HELP_WIDTH - indent.length - width - 2;
  return rows.flatMap(([name, text]) =>
    wrap(text, textWidth).map((part, i) =>
      `${indent}${(i === 0 ? name : "").padEnd(width)}  ${part}`.trimEnd(),
    ),
  );
}

/** Wrapped to the help's width; later lines start with `indent`. */
function paragraph(text: string, indent = ""): string {
  return wrap(text, HELP_WIDTH - indent.length).join(`\n${indent}`);
}

function flagLabel(name: string, flag: FlagSpec): string {
  const spelt =
    flag.negation === "only"
      ? `--no-${name}`
      : flag.negation === "also"
        ? `--[no-]${name}`
        : `--${name}`;
  const short = flag.short === undefined ? "" : `-${flag.short}, `;
  return `${short}${spelt}${flag.value === undefined ? "" : ` ${flag.value}`}`;
}

function flagText(flag: FlagSpec): string {
  const notes = [
    flag.required === true ? "required" : "",
    flag.multiple === true ? "repeatable" : "",
  ]
    .filter((note) => note !== "")
    .join(", ");
  return notes === "" ? flag.description : `${flag.description} (${notes})`;
}

/** The usage line: required flags spelt out, the others as [options], then the operands. */
export function usageLine(name: string, spec: CommandSpec): string {
  const required = Object.entries(spec.flags)
    .filter(([, flag]) => flag.required === true)
    .map(([flagName, flag]) => flagLabel(flagName, flag));
  const optional = Object.values(spec.flags).some((flag) => flag.required !== true);
  const parts = [
    `vallignus ${name}`,
    ...required,
    optional ? "[options]" : "",
    spec.operands ?? "",
  ];
  return paragraph(`usage: ${parts.filter((p) => p !== "").join(" ")}`, "       ");
}

export function commandHelp(name: string, spec: CommandSpec): string {
  const flags = { ...spec.flags, help: HELP_FLAG };
  return [
    usageLine(name, spec),
    "",
    paragraph(spec.summary),
    "",
    "options:",
    ...columns(
      Object.entries(flags).map(([flagName, flag]) => [flagLabel(flagName, flag), flagText(flag)]),
    ),
    ...(spec.notes ?? []).flatMap((note) => ["", paragraph(note)]),
  ].join("\n");
}

export function groupHelp(name: string, group: GroupSpec): string {
  return [
    `usage: vallignus ${name} <command> [options]`,
    "",
    paragraph(group.summary),
    "",
    "commands:",
    ...columns(Object.entries(group.commands).map(([command, spec]) => [command, spec.summary])),
    "",
    paragraph(`Run "vallignus ${name} <command> --help" for a command's flags.`),
  ].join("\n");
}

/** A top-level entry: a group of commands (`auth`) or a command of its own (`run`). */
export type Entry = CommandSpec | GroupSpec;

export function isGroup(entry: Entry): entry is GroupSpec {
  return "commands" in entry;
}

export interface Section {
  readonly heading: string;
  readonly entries: Readonly<Record<string, Entry>>;
}

/** `vallignus --help`: every command under its section's heading, in one set of columns. */
export function topHelp(sections: readonly Section[]): string {
  const listed = sections.map(({ heading, entries }) => ({
    heading,
    rows: Object.entries(entries).flatMap(([name, entry]): Row[] =>
      isGroup(entry)
        ? Object.entries(entry.commands).map(([command, spec]) => [
            `${name} ${command}`,
            spec.summary,
          ])
        : [[name, entry.summary]],
    ),
  }));
  // One width for every section, so that the columns line up down the whole page.
  const width = nameWidth(listed.flatMap(({ rows }) => rows));
  const body = listed.flatMap(({ heading, rows }) => ["", `${heading}:`, ...columns(rows, width)]);
  return [
    "usage: vallignus <command> [options]",
    ...body,
    "",
    paragraph(
      'Run "vallignus <command> --help" for a command\'s flags. Every listing and inspect command ' +
        "takes --json. State lives in $VALLIGNUS_HOME (default ~/.vallignus).",
    ),
    "Exit status: 0 ok, 1 failure, 2 usage, 3 token refused, 4 stopped by policy.",
  ].join("\n");
}

/**
 * The help that `args` ask for under the entry `name` (`auth --help`, `auth init -h`,
 * `run --help`), or undefined when they ask for none. Needs only the declarations.
 */
export function requestedHelp(
  name: string,
  entry: Entry,
  args: readonly string[],
): string | undefined {
  if (!isGroup(entry)) return asksForHelp(args) ? commandHelp(name, entry) : undefined;
  const [command, ...rest] = args;
  if (command === "--help" || command === "-h") return groupHelp(name, entry);
  const spec =
    command === undefined || !Object.hasOwn(entry.commands, command)
      ? undefined
      : entry.commands[command];
  return spec !== undefined && asksForHelp(rest)
    ? commandHelp(`${name} ${command}`, spec)
    : undefined;
}
