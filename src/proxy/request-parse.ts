import type { IncomingMessage } from "node:http";

import { hostText, parseAuthority } from "./address.js";
import { connectionNamesProtected, headerValues } from "./headers.js";
import type { RequestFacts } from "./judgement.js";

/** A refused request may still have been read far enough to say what it asked for (the audit). */
export type Parsed =
  { ok: true; facts: RequestFacts } | { ok: false; why: string; facts?: RequestFacts };

/** A request body larger than this is refused as malformed: agents don't upload gigabytes. */
const MAX_BODY_BYTES = 1024 ** 3;

/** Reads an absolute-form `http://` request target; the Host header must agree with it. */
export function parseHttpRequest(req: IncomingMessage, kind: "http" | "upgrade"): Parsed {
  const url = req.url ?? "";
  const method = req.method ?? "";
  const match = /^http:\/\/([^/?#]*)([^#]*)/i.exec(url);
  if (match === null) return { ok: false, why: "not an absolute http:// URL" };
  const authority = parseAuthority(match[1] ?? "", 80);
  if ("invalid" in authority) return { ok: false, why: authority.invalid };
  if (authority.host.kind === "invalid") return { ok: false, why: authority.host.why };
  const path = match[2] === "" || match[2] === undefined ? "/" : match[2];
  if (!path.startsWith("/") && !path.startsWith("?")) return { ok: false, why: "bad path" };
  const hosts = headerValues(req.rawHeaders, "host");
  if (hosts.length > 1) return { ok: false, why: "more than one Host header" };
  if (hosts.length === 1) {
    const declared = parseAuthority(hosts[0] ?? "", 80);
    if (
      "invalid" in declared ||
      declared.port !== authority.port ||
      hostText(declared.host) !== hostText(authority.host) ||
      hostText(declared.host) === ""
    ) {
      return { ok: false, why: "Host header disagrees with the request target" };
    }
  }
  const facts: RequestFacts = {
    kind,
    method,
    scheme: "http",
    host: authority.host,
    port: authority.port,
    path: path.startsWith("?") ? `/${path}` : path,
  };
  const named = connectionNamesProtected(req.rawHeaders);
  if (named !== undefined) return { ok: false, why: `Connection names ${named}`, facts };
  const length = headerValues(req.rawHeaders, "content-length");
  if (length.length > 1) return { ok: false, why: "more than one Content-Length", facts };
  if (length.length === 1 && Number(length[0]) > MAX_BODY_BYTES)
    return { ok: false, why: "body too large", facts };
  return { ok: true, facts };
}

/** Reads a CONNECT's `host:port` target. */
export function parseConnect(req: IncomingMessage): Parsed {
  const authority = parseAuthority(req.url ?? "", undefined);
  if ("invalid" in authority) return { ok: false, why: authority.invalid };
  if (authority.host.kind === "invalid") return { ok: false, why: authority.host.why };
  return {
    ok: true,
    facts: {
      kind: "connect",
      method: "CONNECT",
      scheme: "https",
      host: authority.host,
      port: authority.port,
      path: "",
    },
  };
}

/**
 * The path of a request inside an intercepted tunnel, in origin-form, or why it has none. An
 * absolute-form target (`https://host/…`) is accepted only when it names the tunnel's own host
 * and port: the provider would otherwise be asked for another authority than the one judged.
 * `path` is also given with a refusal, for the audit line (never the URL with its host).
 */
export function innerTarget(
  url: string,
  tunnel: { readonly host: string; readonly port: number },
): { path: string; why?: string } {
  if (url.startsWith("/")) return { path: url };
  const match = /^(https?):\/\/([^/?#]*)([^#]*)$/i.exec(url);
  if (match === null) return { path: "", why: "request target is not origin-form" };
  const rest = match[3] ?? "";
  const path = rest === "" ? "/" : rest.startsWith("?") ? `/${rest}` : rest;
  if (match[1]?.toLowerCase() !== "https")
    return { path, why: "an http:// target in a TLS tunnel" };
  const authority = parseAuthority(match[2] ?? "", 443);
  if (
    "invalid" in authority ||
    hostText(authority.host) !== tunnel.host ||
    authority.port !== tunnel.port
  ) {
    return { path, why: "absolute-form target names another authority than the tunnel's" };
  }
  return { path };
}
