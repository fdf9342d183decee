import { createRequire } from "node:module";
import { isIPv4, isIPv6 } from "node:net";
import { domainToASCII } from "node:url";

/** A validated, normalized domain rule: `host`, `*.suffix`, either with an optional `:port`. */
export interface DomainPattern {
  /** Canonical text as stored in the policy: lower case, punycode, no trailing dot. */
  readonly text: string;
  /** The host, or for a wildcard the suffix after `*.`. IPv6 literals keep their brackets. */
  readonly host: string;
  readonly wildcard: boolean;
  /** undefined means the default web ports, 80 and 443. */
  readonly port: number | undefined;
  readonly ipLiteral: boolean;
}

export type PatternResult = { ok: true; pattern: DomainPattern } | { ok: false; why: string };

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function parsePort(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,4}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65_535 ? port : undefined;
}

function splitPort(raw: string): { host: string; port: string | undefined } {
  if (raw.startsWith("[")) {
    const end = raw.indexOf("]");
    if (end === -1) return { host: raw, port: undefined };
    const rest = raw.slice(end + 1);
    return {
      host: raw.slice(0, end + 1),
      // Text after "]" must be ":port"; anything else is kept so the port check refuses it.
      port: rest.startsWith(":") ? rest.slice(1) : rest === "" ? undefined : `!${rest}`,
    };
  }
  const colon = raw.lastIndexOf(":");
  if (colon === -1) return { host: raw, port: undefined };
  return { host: raw.slice(0, colon), port: raw.slice(colon + 1) };
}

/** Normalizes a host name to lower-case punycode; undefined when it is not a valid DNS name. */
export function normalizeHostName(raw: string): string | undefined {
  let host = raw.toLowerCase();
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host === "" || host.length > 253) return undefined;
  const ascii = /^[\x21-\x7e]*$/.test(host) ? host : domainToASCII(host);
  if (ascii === "" || ascii.length > 253) return undefined;
  const labels = ascii.split(".");
  for (const label of labels) {
    if (!LABEL.test(label)) return undefined;
    // A punycode label must decode: domainToASCII returns "" for broken ones.
    if (label.startsWith("xn--") && domainToASCII(label) === "") return undefined;
  }
  return ascii;
}

/**
 * The public suffix list (tldts) costs ~5 MB of heap: loaded on first use, which is when a policy
 * is written. `run` and the readers take stored patterns, already checked, and never load it.
 */
let publicSuffixes: typeof import("tldts") | undefined;

function isListedPublicSuffix(host: string): boolean {
  publicSuffixes ??= createRequire(import.meta.url)("tldts") as typeof import("tldts");
  const info = publicSuffixes.parse(host, { allowPrivateDomains: true });
  return info.publicSuffix === host && (info.isIcann === true || info.isPrivate === true);
}

/**
 * Validates one pattern of `--allowed-domains` / `--denied-domains`. Refuses what matches too
 * much (`*`, `*.com`, `*.co.uk`, a bare public suffix, a wildcard over a single label), and
 * anything that is not a clean host name, IP literal or port. `storedPattern`: the text comes from
 * a stored policy version, so the public-suffix check (done when it was written) is skipped.
 */
export function parseDomainPattern(
  input: string,
  { storedPattern = false }: { storedPattern?: boolean } = {},
): PatternResult {
  const raw = input.trim();
  if (raw === "") return { ok: false, why: "empty pattern" };
  const { host: hostPart, port: portText } = splitPort(raw);
  let port: number | undefined;
  if (portText !== undefined) {
    port = parsePort(portText);
    if (port === undefined) return { ok: false, why: `"${input}": port must be 1-65535` };
  }
  return (
    parseIpPattern(input, hostPart, port) ?? parseNamePattern(input, hostPart, port, storedPattern)
  );
}

/** An IP literal pattern (IPv6 in brackets, dotted IPv4); undefined when it is not one. */
function parseIpPattern(
  input: string,
  hostPart: string,
  port: number | undefined,
): PatternResult | undefined {
  const portSuffix = port === undefined ? "" : `:${port}`;

  if (hostPart.startsWith("[")) {
    const inner = hostPart.slice(1, -1);
    if (!hostPart.endsWith("]") || !isIPv6(inner) || inner.includes("%")) {
      return { ok: false, why: `"${input}": not a valid bracketed IPv6 address` };
    }
    const canonical = new URL(`http://[${inner}]/`).hostname;
    return {
      ok: true,
      pattern: {
        text: `${canonical}${portSuffix}`,
        host: canonical,
        wildcard: false,
        port,
        ipLiteral: true,
      },
    };
  }
  // Every IPv6 address has a colon. Testing for one first spares `run`, whose stored patterns are
  // names, the first isIPv6 call: it compiles a large regex (~4 ms).
  if (hostPart.includes(":") && isIPv6(hostPart)) {
    return { ok: false, why: `"${input}": write an IPv6 address in brackets, e.g. [${hostPart}]` };
  }
  if (/^[0-9.]+$/.test(hostPart) || isIPv4(hostPart)) {
    if (!isIPv4(hostPart) || new URL(`http://${hostPart}/`).hostname !== hostPart) {
      return { ok: false, why: `"${input}": an IPv4 address must be in dotted decimal form` };
    }
    return {
      ok: true,
      pattern: {
        text: `${hostPart}${portSuffix}`,
        host: hostPart,
        wildcard: false,
        port,
        ipLiteral: true,
      },
    };
  }

  return undefined;
}

/** A host name pattern, `*.` allowed as its whole first label. */
function parseNamePattern(
  input: string,
  hostPart: string,
  port: number | undefined,
  storedPattern: boolean,
): PatternResult {
  const portSuffix = port === undefined ? "" : `:${port}`;
  // The URL standard reads a name ending in a number (or 0x…) as an IPv4 address: 0x7f.1 is
  // 127.0.0.1 to every client, so as a name it would match nothing and deny nothing.
  const lastLabel = hostPart.replace(/\.$/, "").split(".").at(-1) ?? "";
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/i.test(lastLabel)) {
    return {
      ok: false,
      why: `"${input}": an IPv4 address must be in dotted decimal form, and a name cannot end in a number`,
    };
  }
  if (hostPart === "*" || hostPart === "*.")
    return { ok: false, why: `"${input}": "*" matches every host` };
  const wildcard = hostPart.startsWith("*.");
  const name = wildcard ? hostPart.slice(2) : hostPart;
  if (name.includes("*")) {
    return {
      ok: false,
      why: `"${input}": "*" is allowed only as the whole first label ("*.example.com")`,
    };
  }
  const host = normalizeHostName(name);
  if (host === undefined) {
    return {
      ok: false,
      why: `"${input}": not a valid host name (empty label, bad character or bad punycode)`,
    };
  }
  // A stored pattern passed this check when its policy version was written, and the version's
  // hash (bound into every token) pins it since.
  if (!storedPattern && isListedPublicSuffix(host)) {
    return {
      ok: false,
      why: wildcard
        ? `"${input}": ${host} is a public suffix, so this matches every domain under it`
        : `"${input}": ${host} is a public suffix, not a host`,
    };
  }
  if (wildcard && !host.includes(".")) {
    return {
      ok: false,
      why: `"${input}": a wildcard over a single label (${host}) matches too much`,
    };
  }
  const text = `${wildcard ? "*." : ""}${host}${portSuffix}`;
  return { ok: true, pattern: { text, host, wildcard, port, ipLiteral: false } };
}
