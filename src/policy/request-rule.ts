import { parseDomainPattern, type DomainPattern } from "./domain-pattern.js";

/**
 * One request rule, `METHOD host/path-glob` (issue 13): `GET api.github.com/repos/acme/*`,
 * `POST api.openai.com/v1/chat/completions`, `* uploads.example.com/**`.
 */
export interface RequestRule {
  /** Canonical text, as stored in the policy: `METHOD host[:port]/glob`. */
  readonly text: string;
  /** An upper-case method token, or "*" for any method. */
  readonly method: string;
  /** The host part, parsed as a domain pattern (exact or `*.suffix`, optional port). */
  readonly host: DomainPattern;
  /** The path glob, starting with "/". */
  readonly glob: string;
}

export type RuleResult = { ok: true; rule: RequestRule } | { ok: false; why: string };

const METHOD = /^(?:\*|[A-Z]{1,20})$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
/** What RFC 3986 allows raw in a path segment besides "%": unreserved, sub-delims, ":", "@". */
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
const HEX2 = /^[0-9A-F]{2}$/;
const MAX_RULE_LENGTH = 2048;

type Checked<T> = { ok: true; value: T } | { ok: false; why: string };

/**
 * Parses and validates one rule's text; the canonical text is in `rule.text`. `storedRule`: the
 * text comes from a stored policy version, so the host's public-suffix check (done when it was
 * written) is skipped and the suffix list is not loaded.
 */
export function parseRequestRule(
  text: string,
  { storedRule = false }: { storedRule?: boolean } = {},
): RuleResult {
  const fail = (why: string): RuleResult => ({ ok: false, why: `rule "${text}": ${why}` });
  if (text.length > MAX_RULE_LENGTH)
    return { ok: false, why: `a rule is at most ${MAX_RULE_LENGTH} characters` };
  const parts = text.trim().split(/[ \t]+/);
  const [method, target, ...rest] = parts;
  if (method === undefined || target === undefined || rest.length > 0)
    return fail("write METHOD host/path-glob, e.g. GET api.github.com/repos/acme/*");
  if (!METHOD.test(method)) {
    return fail(
      /^[a-z]{1,20}$/i.test(method)
        ? `method "${method}" must be upper case (${method.toUpperCase()}); methods are compared exactly`
        : `method "${method}" must be "*" or an upper-case token such as GET`,
    );
  }
  const slash = target.indexOf("/");
  if (slash === -1) return fail("no path glob: write host/path-glob, e.g. api.example.com/**");
  if (slash === 0) return fail("no host before the path glob");
  const host = parseDomainPattern(target.slice(0, slash), { storedPattern: storedRule });
  if (!host.ok) return fail(host.why);
  const glob = canonicalGlob(target.slice(slash));
  if (!glob.ok) return fail(glob.why);
  const rule: RequestRule = {
    text: `${method} ${host.pattern.text}${glob.value}`,
    method,
    host: host.pattern,
    glob: glob.value,
  };
  return { ok: true, rule };
}

/** Why a raw character cannot stand in a glob, or undefined when it can. */
function globCharProblem(ch: string): string | undefined {
  if (ch === "/" || PCHAR.test(ch)) return undefined;
  if (ch === "?") return `"?" starts a query, which is never matched: write the path only`;
  if (ch === "#") return `"#" starts a fragment, which is never sent`;
  if (ch === "\\") return `"\\" is not allowed (requests with one are refused as malformed)`;
  if (ch === " " || ch === "\t") return "spaces are not allowed";
  return `character "${ch}" must be percent-encoded (%XX, UTF-8)`;
}

/**
 * The glob with upper-case hex and unreserved characters decoded, or why it is refused. Encoded
 * "/", "\" and NUL are refused: a request path holding one is malformed, so the rule could never
 * match and would only mislead.
 */
function canonicalGlob(glob: string): Checked<string> {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob.charAt(i);
    if (ch !== "%") {
      const problem = globCharProblem(ch);
      if (problem !== undefined) return { ok: false, why: problem };
      out += ch;
      continue;
    }
    const hex = glob.slice(i + 1, i + 3).toUpperCase();
    if (!HEX2.test(hex)) return { ok: false, why: `"%" must be followed by two hex digits` };
    if (hex === "2F" || hex === "5C" || hex === "00")
      return { ok: false, why: `%${hex} never matches: requests with it are refused as malformed` };
    const decoded = String.fromCharCode(parseInt(hex, 16));
    out += UNRESERVED.test(decoded) ? decoded : `%${hex}`;
    i += 2;
  }
  for (const segment of out.slice(1).split("/")) {
    if (segment.includes("**") && segment !== "**")
      return {
        ok: false,
        why: `"**" must be a whole segment ("/a/**/b"), not part of "${segment}"`,
      };
    if (segment === "." || segment === "..")
      return { ok: false, why: `a "${segment}" segment never matches: such requests are refused` };
  }
  return { ok: true, value: out };
}

export type NormalizedPath = { ok: true; path: string } | { ok: false; why: string };

/**
 * A request path as the rules see it: the query dropped, hex upper case, unreserved characters
 * decoded, other bytes that may not stand raw percent-encoded. Refused (the request is then
 * `malformed_request`): an encoded "/" or "\", a raw "\", NUL, "#", a space or control
 * character, a bad "%", or a "." or ".." segment, literal or encoded. Clients remove dot segments
 * before sending, so a request that still has one is crafted, and the origin may resolve it
 * differently from us. `rawPath` is the request target as Node gives it (one char per byte).
 */
export function normalizeRulePath(rawPath: string): NormalizedPath {
  const query = rawPath.indexOf("?");
  const path = query === -1 ? rawPath : rawPath.slice(0, query);
  if (!path.startsWith("/")) return { ok: false, why: "the path does not start with /" };
  let out = "";
  for (let i = 0; i < path.length; i++) {
    const ch = path.charAt(i);
    const code = path.charCodeAt(i);
    if (ch === "%") {
      const hex = path.slice(i + 1, i + 3).toUpperCase();
      if (!HEX2.test(hex)) return { ok: false, why: `"%" not followed by two hex digits` };
      if (hex === "2F" || hex === "5C") return { ok: false, why: "an encoded / or \\" };
      if (hex === "00") return { ok: false, why: "an encoded NUL" };
      const decoded = String.fromCharCode(parseInt(hex, 16));
      out += UNRESERVED.test(decoded) ? decoded : `%${hex}`;
      i += 2;
    } else if (ch === "/" || PCHAR.test(ch)) out += ch;
    else if (ch === "\\") return { ok: false, why: "a backslash" };
    else if (ch === "#") return { ok: false, why: "a fragment" };
    else if (code <= 0x20 || code === 0x7f) return { ok: false, why: "a space or control char" };
    else if (code > 0xff) return { ok: false, why: "a character that is not one byte" };
    else out += `%${code.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  for (const segment of out.split("/")) {
    if (segment === "." || segment === "..") return { ok: false, why: `a "${segment}" segment` };
  }
  return { ok: true, path: out };
}

/**
 * Text compared as bytes: every %XX decoded except %25, which stays as the three characters,
 * so a "%" in the result always begins "%25" and nothing is decoded twice. Reserved characters
 * are compared decoded because origins route `/a,b` and `/a%2Cb` alike: were they compared as
 * written, a deny rule could be passed by encoding one character (and `,` can only be written
 * `%2C` in a rule, since the flag splits on commas).
 */
function decodeForMatch(text: string): string {
  return text.replace(/%([0-9A-F]{2})/g, (whole, hex: string) =>
    hex === "25" ? whole : String.fromCharCode(parseInt(hex, 16)),
  );
}

/** A glob segment: "**", or the literal runs between its `*`s (one run: no `*`). */
type GlobItem = "**" | readonly string[];

function compileGlob(glob: string): GlobItem[] {
  return glob
    .slice(1)
    .split("/")
    .map((segment) => (segment === "**" ? "**" : segment.split("*").map(decodeForMatch)));
}

/**
 * Whether one path segment matches runs split at `*`. The leftmost place of each middle run is
 * always a right choice (a later `*` can take what an earlier one left), so no backtracking.
 */
function segmentMatches(runs: readonly string[], segment: string): boolean {
  const first = runs[0] ?? "";
  if (runs.length === 1) return segment === first;
  const last = runs[runs.length - 1] ?? "";
  const end = segment.length - last.length;
  if (end < first.length || !segment.startsWith(first) || !segment.endsWith(last)) return false;
  let at = first.length;
  for (let i = 1; i < runs.length - 1; i++) {
    const run = runs[i] ?? "";
    const found = segment.indexOf(run, at);
    if (found === -1 || found + run.length > end) return false;
    at = found + run.length;
  }
  return true;
}

/** Whether `items` (no "**") match `segments` from `start`. */
function runMatchesAt(
  items: readonly (readonly string[])[],
  segments: readonly string[],
  start: number,
): boolean {
  return items.every((runs, i) => segmentMatches(runs, segments[start + i] ?? ""));
}

/**
 * Whether a compiled glob matches a path's segments. Not a RegExp: a backtracking engine takes
 * polynomial time on `/**\/a/**\/a/**\/b` (or `a*a*a*b` in one segment) against a long path.
 * Like `*` within a segment, each "**" is resolved by taking the leftmost place of the next
 * group of segments, which is always a right choice; the cost is at most path × glob.
 */
function globMatches(items: readonly GlobItem[], segments: readonly string[]): boolean {
  const groups: (readonly string[])[][] = [[]];
  for (const item of items) {
    if (item === "**") groups.push([]);
    else groups[groups.length - 1]?.push(item);
  }
  const head = groups[0] ?? [];
  if (groups.length === 1)
    return segments.length === head.length && runMatchesAt(head, segments, 0);
  const tail = groups[groups.length - 1] ?? [];
  const end = segments.length - tail.length;
  if (end < head.length || !runMatchesAt(head, segments, 0)) return false;
  if (!runMatchesAt(tail, segments, end)) return false;
  let at = head.length;
  for (const group of groups.slice(1, -1)) {
    while (at + group.length <= end && !runMatchesAt(group, segments, at)) at++;
    if (at + group.length > end) return false;
    at += group.length;
  }
  return true;
}

/** A request as the rules see it. `path` is the raw request path, query included. */
export interface RuleRequest {
  readonly method: string;
  /** Lower-case punycode name (as the gatekeeper normalizes it). */
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

/** A policy's allow and deny rules, indexed for lookup. */
export interface CompiledRequestRules {
  /** Whether any rule (allow or deny) names this host: its requests must then be seen. */
  covers(host: string, port: number): boolean;
  /**
   * The verdict for one request on a covered host: "allow", "request_not_allowed", or
   * "malformed_request" when its path cannot be judged (an encoded slash, a dot segment…).
   * A host no rule covers is "allow" (its domain rule already decided it).
   */
  decide(request: RuleRequest): "allow" | "request_not_allowed" | "malformed_request";
}

interface CompiledRule {
  readonly deny: boolean;
  readonly rule: RequestRule;
  readonly items: readonly GlobItem[];
}

/** Rules under their host: exact names in one map, wildcard suffixes in the other. */
interface RuleIndex {
  readonly exact: Map<string, CompiledRule[]>;
  readonly wildcard: Map<string, CompiledRule[]>;
}

function addRules(index: RuleIndex, texts: readonly string[], deny: boolean): void {
  for (const text of texts) {
    const parsed = parseRequestRule(text, { storedRule: true });
    // Stored policies were validated when written and again on load; a bad one here is a bug.
    if (!parsed.ok) throw new Error(`invalid stored request rule: ${parsed.why}`);
    const { rule } = parsed;
    const target = rule.host.wildcard ? index.wildcard : index.exact;
    const list = target.get(rule.host.host) ?? [];
    list.push({ deny, rule, items: compileGlob(rule.glob) });
    target.set(rule.host.host, list);
  }
}

/** The rules for this host and port. A rule without a port applies to every port. */
function rulesFor(index: RuleIndex, rawHost: string, port: number): CompiledRule[] {
  const host = rawHost.toLowerCase().replace(/\.$/, "");
  const found = [...(index.exact.get(host) ?? [])];
  if (index.wildcard.size > 0) {
    // "*.example.com" matches strict subdomains only: probe each proper suffix of the host.
    for (let dot = host.indexOf("."); dot !== -1; dot = host.indexOf(".", dot + 1)) {
      found.push(...(index.wildcard.get(host.slice(dot + 1)) ?? []));
    }
  }
  return found.filter((c) => c.rule.host.port === undefined || c.rule.host.port === port);
}

/**
 * Indexes a policy's rules. A host any rule covers is in "rules mode": a request passes only if
 * an allow rule matches it and no deny rule does (so deny rules alone deny the whole host).
 */
export function compileRequestRules(
  allow: readonly string[],
  deny: readonly string[],
): CompiledRequestRules {
  const index: RuleIndex = { exact: new Map(), wildcard: new Map() };
  addRules(index, allow, false);
  addRules(index, deny, true);
  return {
    covers: (host, port) => rulesFor(index, host, port).length > 0,
    decide(request) {
      const rules = rulesFor(index, request.host, request.port);
      if (rules.length === 0) return "allow";
      const path = normalizeRulePath(request.path);
      if (!path.ok) return "malformed_request";
      const segments = path.path.slice(1).split("/").map(decodeForMatch);
      const hits = rules.filter(
        (c) =>
          (c.rule.method === "*" || c.rule.method === request.method) &&
          globMatches(c.items, segments),
      );
      if (hits.some((c) => c.deny)) return "request_not_allowed";
      return hits.length > 0 ? "allow" : "request_not_allowed";
    },
  };
}
