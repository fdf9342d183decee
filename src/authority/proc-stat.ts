import { readFileSync } from "node:fs";

/**
 * The state letter and start time (clock ticks since boot) of `pid` from /proc (Linux), or null
 * when /proc cannot tell. The start time tells a process from a later one given the same pid.
 */
export function readProcStat(pid: number): { state: string; start: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may itself hold spaces and parentheses: count from the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const start = fields[19];
  if (state === undefined || start === undefined || !/^[0-9]+$/.test(start)) return null;
  return { state, start };
}
