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

/**
 * Headers a Connection listing may not name: the authority the request was judged by, and the
 * body's framing. No client needs it; a proxy that obeyed `Connection: Upgrade, Host` would send
 * the request on without the Host we judged (the origin then sees the address we dialled, or
 * whatever default its client library picks). Such a request is refused as malformed.
 */
const NOT_NAMEABLE: ReadonlySet<string> = new Set(["host", "content-length", "transfer-encoding"]);

/** The first header in NOT_NAMEABLE that a Connection header names, or undefined. */
export function connectionNamesProtected(raw: readonly string[]): string | undefined {
  for (const value of headerValues(raw, "connection")) {
    for (const token of value.split(",")) {
      const name = token.trim().toLowerCase();
      if (NOT_NAMEABLE.has(name)) return name;
    }
  }
  return undefined;
}

/**
 * Copies raw headers, dropping hop-by-hop ones, any named by Connection, and `alsoDrop`. Host
 * and Content-Length stay even when Connection names them (requests that do are refused before
 * this; a response that does keeps them too).
 */
export function forwardHeaders(
  raw: readonly string[],
  keepUpgrade: boolean,
  alsoDrop?: ReadonlySet<string>,
): string[] {
  const named = new Set<string>();
  for (const value of headerValues(raw, "connection")) {
    for (const token of value.split(",")) named.add(token.trim().toLowerCase());
  }
  named.delete("host");
  named.delete("content-length");
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
