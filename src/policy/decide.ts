import { parseDomainPattern, type DomainPattern } from "./domain-pattern.js";
import type { PolicyRules } from "./policy-version.js";
import { compileRequestRules, type CompiledRequestRules } from "./request-rule.js";

/** Every reason a request can be denied, as the contract names them. */
export type DenyReason =
  | "domain_not_allowed"
  | "domain_denied"
  | "port_not_allowed"
  | "ip_literal_not_allowed"
  | "private_address"
  | "budget_exceeded"
  | "model_not_allowed"
  | "model_price_unknown"
  | "request_limit_exceeded"
  | "token_revoked"
  | "token_expired"
  | "agent_disabled"
  | "malformed_request"
  | "store_unavailable"
  | "secret_wrong_host"
  | "secret_exfiltration"
  | "request_not_allowed";

export type Decision =
  { readonly decision: "allow" } | { readonly decision: "deny"; readonly reason: DenyReason };

export const ALLOW: Decision = Object.freeze({ decision: "allow" });

export function deny(reason: DenyReason): Decision {
  return { decision: "deny", reason };
}

const DEFAULT_PORTS: readonly number[] = [80, 443];

/**
 * A policy's domain rules indexed for lookup: exact hosts in one map, wildcard suffixes in
 * another. A decision walks the host's own suffixes (one map probe per label), so its cost does
 * not grow with the number of patterns.
 */
export interface CompiledPolicy {
  readonly rules: PolicyRules;
  readonly allowedExact: ReadonlyMap<string, readonly DomainPattern[]>;
  readonly allowedWildcard: ReadonlyMap<string, readonly DomainPattern[]>;
  readonly deniedExact: ReadonlyMap<string, readonly DomainPattern[]>;
  readonly deniedWildcard: ReadonlyMap<string, readonly DomainPattern[]>;
  /** `--inspect-hosts`: hosts whose tunnels are opened so that their requests are seen. */
  readonly inspected: HostSet;
  readonly requestRules: CompiledRequestRules;
}

/** A list of domain patterns, indexed like the allowed and denied ones. */
export interface HostSet {
  /** Whether a pattern matches the host; a pattern without a port matches 80 and 443 only. */
  matches(host: string, port: number): boolean;
  /** Whether a pattern matches the host by name, on any port. */
  namesHost(host: string): boolean;
}

export function compileHostSet(patterns: readonly string[]): HostSet {
  const { exact, wildcard } = index(patterns);
  return {
    matches: (host, port) => matching(exact, wildcard, host).some((p) => portMatches(p, port)),
    namesHost: (host) => matching(exact, wildcard, host).length > 0,
  };
}

function index(patterns: readonly string[]): {
  exact: Map<string, DomainPattern[]>;
  wildcard: Map<string, DomainPattern[]>;
} {
  const exact = new Map<string, DomainPattern[]>();
  const wildcard = new Map<string, DomainPattern[]>();
  for (const text of patterns) {
    const parsed = parseDomainPattern(text, { storedPattern: true });
    // Stored policies were validated at creation and again on load; a bad one here is a bug.
    if (!parsed.ok) throw new Error(`invalid stored pattern ${text}: ${parsed.why}`);
    const target = parsed.pattern.wildcard ? wildcard : exact;
    const list = target.get(parsed.pattern.host) ?? [];
    list.push(parsed.pattern);
    target.set(parsed.pattern.host, list);
  }
  return { exact, wildcard };
}

export function compilePolicy(rules: PolicyRules): CompiledPolicy {
  const allowed = index(rules.allowed_domains);
  const denied = index(rules.denied_domains);
  return {
    rules,
    allowedExact: allowed.exact,
    allowedWildcard: allowed.wildcard,
    deniedExact: denied.exact,
    deniedWildcard: denied.wildcard,
    inspected: compileHostSet(rules.inspect_hosts),
    requestRules: compileRequestRules(rules.allow_requests, rules.deny_requests),
  };
}

/** Patterns that match `host` by name (ports not yet considered). */
function matching(
  exact: ReadonlyMap<string, readonly DomainPattern[]>,
  wildcard: ReadonlyMap<string, readonly DomainPattern[]>,
  host: string,
): DomainPattern[] {
  const found: DomainPattern[] = [...(exact.get(host) ?? [])];
  if (wildcard.size > 0) {
    // "*.example.com" matches strict subdomains only: probe each proper suffix of the host.
    let dot = host.indexOf(".");
    while (dot !== -1) {
      const suffix = host.slice(dot + 1);
      const list = wildcard.get(suffix);
      if (list !== undefined) found.push(...list);
      dot = host.indexOf(".", dot + 1);
    }
  }
  return found;
}

function portMatches(pattern: DomainPattern, port: number): boolean {
  return pattern.port === undefined ? DEFAULT_PORTS.includes(port) : pattern.port === port;
}

/** The target of one request, normalized by the proxy. */
export interface TargetFacts {
  /** Lower-case punycode name without trailing dot, or a canonical IP (IPv6 in brackets). */
  readonly host: string;
  readonly isIpLiteral: boolean;
  readonly port: number;
}

/**
 * Host and port rules, decided before any name is resolved. Denied domains win over allowed
 * ones; a denied pattern without a port denies every port.
 */
export function decideTarget(policy: CompiledPolicy, target: TargetFacts): Decision {
  const denied = matching(policy.deniedExact, policy.deniedWildcard, target.host);
  if (denied.some((p) => p.port === undefined || p.port === target.port))
    return deny("domain_denied");
  const allowed = matching(policy.allowedExact, policy.allowedWildcard, target.host);
  if (allowed.length === 0)
    return deny(target.isIpLiteral ? "ip_literal_not_allowed" : "domain_not_allowed");
  if (!allowed.some((p) => portMatches(p, target.port))) return deny("port_not_allowed");
  return ALLOW;
}

/** One resolved address, classified by the proxy. */
export interface ResolvedAddress {
  readonly address: string;
  readonly isPrivate: boolean;
  /** Chosen by the operator with --resolve: exempt from the private-network rule. */
  readonly operatorChosen: boolean;
}

/**
 * The resolved addresses of an allowed target. If any address is private (and the policy does
 * not allow private networks), the whole answer is refused: a name that mixes public and private
 * addresses is not one we can trust to dial.
 */
export function decideAddresses(
  policy: CompiledPolicy,
  addresses: readonly ResolvedAddress[],
): Decision {
  if (addresses.length === 0) return deny("malformed_request");
  if (policy.rules.allow_private_networks) return ALLOW;
  return addresses.some((a) => a.isPrivate && !a.operatorChosen) ? deny("private_address") : ALLOW;
}

/**
 * The model a metered call names. Compared exactly, as the provider will see it: a policy that
 * lists `gpt-4o` does not allow `gpt-4o-mini` or `GPT-4O`. No list allows every model.
 */
export function decideModel(policy: CompiledPolicy, model: string): Decision {
  const allowed = policy.rules.allowed_models;
  return allowed === null || allowed.includes(model) ? ALLOW : deny("model_not_allowed");
}

/** Counters a run keeps; a request beyond `max_requests` is denied. */
export function decideRequestCount(
  policy: CompiledPolicy,
  requestsSoFar: number,
  runLimit?: number,
): Decision {
  const limits = [policy.rules.max_requests, runLimit].filter(
    (n): n is number => n !== null && n !== undefined,
  );
  return limits.some((limit) => requestsSoFar >= limit) ? deny("request_limit_exceeded") : ALLOW;
}
