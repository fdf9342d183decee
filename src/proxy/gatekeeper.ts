import {
  decideAddresses,
  decideRequestCount,
  decideTarget,
  type CompiledPolicy,
  type DenyReason,
} from "../policy/index.js";
import { redactPath } from "../audit/index.js";
import { isPrivateAddress, type HostKind } from "./address.js";
import { denyBody } from "./deny-body.js";
import { resolveTarget, type ResolveOverride } from "./resolve.js";
import type { SecureContext } from "node:tls";

import type { Gatekeeper, Judgement, Outcome, RequestFacts } from "./server.js";

/** Who is running: the identity every decision and audit line carries. */
export interface RunIdentity {
  readonly session_id: string;
  readonly agent_id: string;
  readonly owner: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly jti: string;
}

export interface AuditSink {
  append(fields: Record<string, unknown>): void;
}

export interface GatekeeperOptions {
  readonly identity: RunIdentity;
  readonly policy: CompiledPolicy;
  readonly overrides: readonly ResolveOverride[];
  /** `run --max-requests`; the policy's own limit applies too. */
  readonly maxRequests: number | undefined;
  readonly audit: AuditSink;
  /** Why the run is stopping (revoked, expired, disabled, a limit), or undefined while it runs. */
  readonly stopReason: () => DenyReason | undefined;
  /** Called when a request hits the request limit: the run ends. */
  readonly onRequestLimit: () => void;
  /** The proxy's own port, never a valid destination on loopback. */
  readonly proxyPort: () => number;
  /**
   * For a metered LLM host, the TLS context to intercept its tunnel with (its requests are then
   * judged and counted one by one); undefined for every other host.
   */
  readonly interceptFor?: (host: string) => Promise<SecureContext> | undefined;
}

function targetHost(host: HostKind): string {
  if (host.kind === "ip") return host.family === 6 ? `[${host.address}]` : host.address;
  return host.kind === "name" ? host.name : "";
}

export function createGatekeeper(
  options: GatekeeperOptions,
): Gatekeeper & { allowedCount(): number; takeRequestSlot(): DenyReason | undefined } {
  const { identity, policy } = options;
  let allowed = 0;

  /** Counts one request against the limits; the deny reason when the limit is reached. */
  function takeRequestSlot(): DenyReason | undefined {
    const count = decideRequestCount(policy, allowed, options.maxRequests);
    if (count.decision === "deny") {
      options.onRequestLimit();
      return count.reason;
    }
    allowed++;
    return undefined;
  }

  async function judge(facts: RequestFacts): Promise<Judgement> {
    const stop = options.stopReason();
    if (stop !== undefined) return { allow: false, reason: stop };
    if (facts.host.kind === "invalid") return { allow: false, reason: "malformed_request" };
    const target = decideTarget(policy, {
      host: targetHost(facts.host),
      isIpLiteral: facts.host.kind === "ip",
      port: facts.port,
    });
    if (target.decision === "deny") return { allow: false, reason: target.reason };
    const host = targetHost(facts.host);
    const intercept = facts.host.kind === "name" ? options.interceptFor?.(host) : undefined;
    // A metered host is reached only through an intercepted tunnel, where each call is metered.
    if (intercept !== undefined && facts.kind !== "connect")
      return { allow: false, reason: "malformed_request" };
    // Take the slot now, so concurrent requests cannot together pass the limit. An intercepted
    // tunnel counts its requests one by one instead.
    if (intercept === undefined) {
      const over = takeRequestSlot();
      if (over !== undefined) return { allow: false, reason: over };
    } else {
      allowed++;
    }
    let resolved;
    try {
      resolved = await resolveTarget(facts.host, facts.port, options.overrides);
    } catch (err) {
      allowed--;
      throw err;
    }
    const addresses = resolved.map((r) => ({ ...r, isPrivate: isPrivateAddress(r.address) }));
    const verdict = decideAddresses(policy, addresses);
    const first = addresses[0];
    const selfConnect = addresses.some(
      (a) =>
        (a.address === "127.0.0.1" || a.address === "::1") && facts.port === options.proxyPort(),
    );
    if (verdict.decision === "deny" || first === undefined || selfConnect) {
      allowed--;
      return {
        allow: false,
        reason: verdict.decision === "deny" ? verdict.reason : "private_address",
      };
    }
    // A later stop may have begun while we resolved.
    const late = options.stopReason();
    if (late !== undefined) {
      allowed--;
      return { allow: false, reason: late };
    }
    if (intercept !== undefined) {
      allowed--;
      return { allow: true, address: first.address, intercept: await intercept };
    }
    return { allow: true, address: first.address };
  }

  function record(outcome: Outcome): void {
    const facts = outcome.facts;
    options.audit.append({
      session_id: identity.session_id,
      decision: outcome.judgement.allow ? "allow" : "deny",
      agent_id: identity.agent_id,
      owner: identity.owner,
      policy_id: identity.policy_id,
      policy_version: identity.policy_version,
      jti: identity.jti,
      method: outcome.method,
      scheme: facts?.scheme ?? null,
      host: facts === undefined ? null : targetHost(facts.host),
      port: facts?.port ?? null,
      path: facts === undefined ? null : redactPath(facts.path),
      ...(outcome.judgement.allow ? {} : { deny_reason: outcome.judgement.reason }),
      status: outcome.status,
      bytes_in: outcome.bytesIn,
      bytes_out: outcome.bytesOut,
      duration_ms: outcome.durationMs,
      ...(outcome.error === undefined ? {} : { error: outcome.error.slice(0, 200) }),
    });
  }

  return {
    judge,
    denyBody: (reason) => denyBody(identity, reason),
    record,
    allowedCount: () => allowed,
    takeRequestSlot,
  };
}
