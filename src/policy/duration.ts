const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * Parses a duration such as "90s", "15m", "24h", "7d" or a bare number of seconds.
 * Returns whole seconds, or undefined when the text is not a positive duration.
 */
export function parseDurationSeconds(text: string): number | undefined {
  const match = /^([1-9][0-9]{0,9})([smhd]?)$/.exec(text.trim());
  if (match === null) return undefined;
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2] ?? ""] ?? 1);
  return Number.isSafeInteger(seconds) ? seconds : undefined;
}

/** 86400 -> "1d", "90" -> "90s": the largest unit that divides exactly. */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
  ] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
