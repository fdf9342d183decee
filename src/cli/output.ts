/** Printing helpers: tidy tables for people, JSON for scripts, colour only on a TTY. */

export interface Printer {
  line(text?: string): void;
  json(value: unknown): void;
  table(headers: readonly string[], rows: readonly (readonly string[])[]): void;
  bold(text: string): string;
  green(text: string): string;
  red(text: string): string;
  dim(text: string): string;
}

function useColour(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY && env["NO_COLOR"] === undefined && env["TERM"] !== "dumb";
}

export function createPrinter(
  stream: NodeJS.WriteStream = process.stdout,
  env = process.env,
): Printer {
  const colour = useColour(stream, env);
  const paint = (code: string) => (text: string) => (colour ? `\x1b[${code}m${text}\x1b[0m` : text);
  const bold = paint("1");
  return {
    line: (text = "") => stream.write(`${text}\n`),
    json: (value) => stream.write(`${JSON.stringify(value, null, 2)}\n`),
    table: (headers, rows) => {
      const widths = headers.map((h, i) =>
        Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)),
      );
      const format = (cells: readonly string[]) =>
        cells
          .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
          .join("  ")
          .trimEnd();
      stream.write(`${bold(format(headers))}\n`);
      for (const row of rows) stream.write(`${format(row)}\n`);
    },
    bold,
    green: paint("32"),
    red: paint("31"),
    dim: paint("2"),
  };
}
