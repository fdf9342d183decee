/** Header handling shared by the plain proxy and the metered exchange. */

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Copies raw headers, dropping hop-by-hop ones, any named by Connection, and `alsoDrop`. */
export function forwardHeaders(
  raw: readonly string[],
  keepUpgrade: boolean,
  alsoDrop?: ReadonlySet<string>,
): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] ?? "").toLowerCase() === "connection") {
      for (const token of (raw[i + 1] ?? "").split(",")) named.add(token.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const lower = name.toLowerCase();
    if (keepUpgrade && (lower === "upgrade" || lower === "connection")) {
      out.push(name, raw[i + 1] ?? "");
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower) || alsoDrop?.has(lower) === true) continue;
    out.push(name, raw[i + 1] ?? "");
  }
  return out;
}

export function headerValues(raw: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] ?? "").toLowerCase() === name) values.push(raw[i + 1] ?? "");
  }
  return values;
}

/** The header pairs without the named headers (names in lower case). */
export function dropHeaders(pairs: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i] ?? "";
    if (!names.includes(name.toLowerCase())) out.push(name, pairs[i + 1] ?? "");
  }
  return out;
}
