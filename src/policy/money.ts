/** Money is integer nano-USD everywhere: 1 USD = 1e9 nano-USD. */
export const NANO_PER_USD = 1_000_000_000;

/** The largest amount a policy may name, so every sum stays a safe integer. */
export const MAX_USD = 1_000_000;

const DECIMAL = /^(0|[1-9][0-9]*)(?:\.([0-9]{1,9}))?$/;

/**
 * Parses a non-negative decimal USD amount exactly (no floats): "5", "0.25", "12.000000001".
 * Returns undefined when the text is not such a number or exceeds MAX_USD.
 */
export function parseUsdToNano(text: string): number | undefined {
  const match = DECIMAL.exec(text.trim());
  if (match === null) return undefined;
  const whole = Number(match[1]);
  if (whole > MAX_USD) return undefined;
  const fraction = (match[2] ?? "").padEnd(9, "0");
  const nano = whole * NANO_PER_USD + Number(fraction);
  return nano > MAX_USD * NANO_PER_USD ? undefined : nano;
}

/** The shortest exact decimal for a nano-USD amount: 5250000000 -> "5.25". */
export function formatNanoUsd(nano: number): string {
  const whole = Math.floor(nano / NANO_PER_USD);
  const fraction = (nano % NANO_PER_USD).toString().padStart(9, "0").replace(/0+$/, "");
  return fraction === "" ? `${whole}` : `${whole}.${fraction}`;
}
