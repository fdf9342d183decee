import type { HostSet } from "../policy/index.js";
import type { SecretPlacement } from "./types.js";

/** One secret a run may use: its stand-in, where the real value may go, and that value now. */
export interface RunSecret {
  readonly name: string;
  readonly standIn: string;
  readonly value: string;
  readonly hosts: HostSet;
  readonly placements: readonly SecretPlacement[];
}

/** What a request is checked against, read fresh for each request (a rotation applies at once). */
export interface SecretSnapshot {
  /** The policy's secrets: their stand-ins are swapped on their hosts. */
  readonly usable: readonly RunSecret[];
  /** Every value the authority holds, the policy's and the others', for exfiltration checks. */
  readonly values: readonly { readonly name: string; readonly value: string }[];
}

/** A request the proxy can see whole, before any byte of it goes upstream. */
export interface OutboundRequest {
  /** Lower-case punycode name or canonical IP, as the gatekeeper judged it. */
  readonly host: string;
  readonly port: number;
  /** The raw request target in origin-form, query included. */
  readonly path: string;
  /** Raw header name/value pairs, as they would be forwarded. */
  readonly headers: readonly string[];
  /** The whole body; empty when there is none. */
  readonly body: Buffer;
}

export type SecretRefusal = {
  readonly reason: "secret_wrong_host" | "secret_exfiltration";
  /** The secret's name (never its value or stand-in). */
  readonly secret: string;
  /** Where it was seen: "header x-foo", "path", "query", "body", "host". */
  readonly where: string;
};

export type Guarded =
  | {
      readonly ok: true;
      /** The path and headers to send: stand-ins swapped for values where they belong. */
      readonly path: string;
      readonly headers: string[];
      /** Names of the secrets swapped in, for the audit line. */
      readonly used: readonly string[];
    }
  | ({ readonly ok: false } & SecretRefusal);

/**
 * Percent-decoded forms of `text`, beyond the raw one: decoded again while that changes (a few
 * rounds), so `%2541` is seen as `A` too. Decoded to one char per byte: values and stand-ins
 * are visible ASCII, so nothing is lost.
 */
function decodedViews(text: string): string[] {
  const views = [text];
  let current = text;
  for (let round = 0; round < 3 && current.includes("%"); round++) {
    const next = percentDecode(current);
    if (next === current) break;
    views.push(next);
    current = next;
  }
  return views;
}

/** The decoded user:password of `Basic` credentials in a header value, if any. */
function basicCredentials(value: string): string | undefined {
  const match = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  return match?.[1] === undefined ? undefined : Buffer.from(match[1], "base64").toString("latin1");
}

/** Every way a header value is read: raw, percent-decoded, and `Basic` credentials decoded. */
function headerViews(value: string): string[] {
  const basic = basicCredentials(value);
  return basic === undefined ? decodedViews(value) : [...decodedViews(value), basic];
}

/** Raw bytes, and (only when they could differ) percent-decoded and JSON `\/` unescaped. */
function bodyViews(body: Buffer): Buffer[] {
  const views = [body];
  if (body.includes(0x25)) {
    for (const view of decodedViews(body.toString("latin1")).slice(1))
      views.push(Buffer.from(view, "latin1"));
  }
  if (body.includes("\\/"))
    views.push(Buffer.from(body.toString("latin1").replaceAll("\\/", "/"), "latin1"));
  return views;
}

/** A request read every way a secret could hide in it, computed once per request. */
interface RequestViews {
  readonly host: string;
  readonly path: readonly string[];
  readonly query: readonly string[];
  readonly headers: readonly { name: string; names: string[]; values: string[] }[];
  readonly body: readonly Buffer[];
}

function viewsOf(request: OutboundRequest, body: readonly Buffer[]): RequestViews {
  const query = request.path.indexOf("?");
  const headers: RequestViews["headers"][number][] = [];
  for (let i = 0; i + 1 < request.headers.length; i += 2) {
    const name = request.headers[i] ?? "";
    headers.push({
      name: name.toLowerCase(),
      names: decodedViews(name),
      values: headerViews(request.headers[i + 1] ?? ""),
    });
  }
  return {
    host: request.host.toLowerCase(),
    path: decodedViews(query === -1 ? request.path : request.path.slice(0, query)),
    query: query === -1 ? [] : decodedViews(request.path.slice(query)),
    headers,
    body,
  };
}

/** Where a needle first shows, or undefined. The host is compared case-insensitively. */
function findIn(views: RequestViews, needle: string): string | undefined {
  if (views.host.includes(needle.toLowerCase())) return "host";
  if (views.path.some((v) => v.includes(needle))) return "path";
  if (views.query.some((v) => v.includes(needle))) return "query";
  for (const header of views.headers) {
    if (header.names.some((v) => v.includes(needle))) return "header name";
    if (header.values.some((v) => v.includes(needle))) return `header ${header.name}`;
  }
  if (views.body.some((view) => view.includes(needle))) return "body";
  return undefined;
}

/** `text` with every `find` replaced by `by`, taken literally (no `$&` patterns). */
function replaceLiterally(text: string, find: string, by: string): string {
  return text.split(find).join(by);
}

/** The headers with stand-ins swapped where a header placement of theirs allows it. */
function swapHeaders(
  mine: readonly RunSecret[],
  headers: readonly string[],
  used: Set<string>,
): string[] {
  const out = [...headers];
  for (let i = 0; i + 1 < out.length; i += 2) {
    const name = (out[i] ?? "").toLowerCase();
    for (const secret of mine) {
      for (const placement of secret.placements) {
        const value = out[i + 1] ?? "";
        if (placement.kind !== "header" || placement.name !== name) continue;
        if (!value.includes(secret.standIn)) continue;
        out[i + 1] =
          placement.template === null
            ? replaceLiterally(value, secret.standIn, secret.value)
            : replaceLiterally(placement.template, "{secret}", secret.value);
        used.add(secret.name);
      }
    }
  }
  return out;
}

function percentDecode(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}

/** The path with each query parameter whose value is a stand-in, named by its placement, swapped. */
function swapQuery(mine: readonly RunSecret[], path: string, used: Set<string>): string {
  const query = path.indexOf("?");
  if (query === -1) return path;
  const params = path
    .slice(query + 1)
    .split("&")
    .map((param) => {
      const eq = param.indexOf("=");
      if (eq === -1) return param;
      const name = percentDecode(param.slice(0, eq));
      const value = percentDecode(param.slice(eq + 1));
      const secret = mine.find(
        (s) =>
          s.standIn === value && s.placements.some((p) => p.kind === "query" && p.name === name),
      );
      if (secret === undefined) return param;
      used.add(secret.name);
      return `${param.slice(0, eq + 1)}${encodeURIComponent(secret.value)}`;
    });
  return `${path.slice(0, query + 1)}${params.join("&")}`;
}

/**
 * Checks one request and swaps stand-ins. A real value anywhere is `secret_exfiltration`; a
 * stand-in anywhere but its own placements on its own hosts is `secret_wrong_host`; otherwise
 * each stand-in in its placement is replaced by its value.
 */
export function guardRequest(snapshot: SecretSnapshot, request: OutboundRequest): Guarded {
  const body = bodyViews(request.body);
  const views = viewsOf(request, body);
  // Values first: a request that carries a real value is refused as such, whatever else it has.
  for (const { name, value } of snapshot.values) {
    const where = findIn(views, value);
    if (where !== undefined)
      return { ok: false, reason: "secret_exfiltration", secret: name, where };
  }
  const used = new Set<string>();
  const mine = snapshot.usable.filter((s) => s.hosts.matches(request.host, request.port));
  const headers = swapHeaders(mine, request.headers, used);
  const path = swapQuery(mine, request.path, used);
  // After the swaps no stand-in may be left: one still there is outside its placements.
  const rest = used.size === 0 ? views : viewsOf({ ...request, path, headers }, body);
  for (const secret of snapshot.usable) {
    const where = findIn(rest, secret.standIn);
    if (where !== undefined)
      return { ok: false, reason: "secret_wrong_host", secret: secret.name, where };
  }
  return { ok: true, path, headers, used: [...used].sort() };
}

/** A host name (a CONNECT target) that carries a value or a stand-in, or undefined. */
export function guardHost(snapshot: SecretSnapshot, host: string): SecretRefusal | undefined {
  const name = host.toLowerCase();
  for (const { name: secret, value } of snapshot.values) {
    if (name.includes(value.toLowerCase()))
      return { reason: "secret_exfiltration", secret, where: "host" };
  }
  for (const { name: secret, standIn } of snapshot.usable) {
    if (name.includes(standIn.toLowerCase()))
      return { reason: "secret_wrong_host", secret, where: "host" };
  }
  return undefined;
}
