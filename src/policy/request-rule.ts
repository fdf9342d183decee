import type { DomainPattern } from "./domain-pattern.js";

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

/** Parses and validates one rule's text; the canonical text is in `rule.text`. */
export function parseRequestRule(text: string): RuleResult {
  void text;
  throw new Error("parseRequestRule: not yet built");
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

export function compileRequestRules(
  allow: readonly string[],
  deny: readonly string[],
): CompiledRequestRules {
  if (allow.length === 0 && deny.length === 0)
    return { covers: () => false, decide: () => "allow" };
  throw new Error("compileRequestRules: not yet built");
}
