import { hash } from "node:crypto";

/*
 * A ledger line: one JSON object, its last member `ck` a checksum of everything before it, so a
 * line damaged on disk is told from a line that was written.
 */

export const FORMAT_VERSION = 1;
const CHECKSUM_HEX_CHARS = 16;
/** `s`: JSON.stringify leaves U+2028/U+2029 raw, and `.` would not match them without it. */
const CHECKED_LINE = /^(\{.*),"ck":"([0-9a-f]{16})"\}$/s;

function checksum(body: string): string {
  return hash("sha256", body, "hex").slice(0, CHECKSUM_HEX_CHARS);
}

export function encodeLine(fields: Readonly<Record<string, unknown>>): string {
  const body = JSON.stringify(fields);
  return `${body.slice(0, -1)},"ck":"${checksum(body)}"}\n`;
}

export function decodeLine(text: string): Record<string, unknown> | undefined {
  const match = CHECKED_LINE.exec(text);
  if (match === null) return undefined;
  const body = `${match[1] ?? ""}}`;
  if (checksum(body) !== match[2]) return undefined;
  try {
    const value: unknown = JSON.parse(body);
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // Reported below as corruption.
  }
  return undefined;
}
