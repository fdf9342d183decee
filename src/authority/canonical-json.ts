import { hash } from "node:crypto";

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, as JSON.stringify writes
 * strings and numbers. Enough for our documents (strings, safe integers, booleans, null,
 * arrays, objects); a hash over it is stable however the file was formatted.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function sha256Hex(text: string): string {
  // One-shot: half the cost of createHash().update().digest() on audit-line-sized input.
  return hash("sha256", text, "hex");
}

/** The hash a policy version stores: over every field but `sha256` itself. */
export function policyContentHash(doc: Record<string, unknown>): string {
  const { sha256: _ignored, ...rest } = doc;
  return sha256Hex(canonicalJson(rest));
}
