import type { DenyReason } from "../policy/index.js";
import type { RunIdentity } from "../audit/index.js";
import { meteredProviderFor } from "../metering/index.js";

/** Providers whose SDKs read an `error` object of their own shape. */
export type ErrorShape = "openai" | "anthropic" | "gemini";

/** The error shape of the provider that serves `host`, if it is a metered host. */
export function errorShapeFor(host: string): ErrorShape | undefined {
  const provider = meteredProviderFor(host);
  if (provider === undefined) return undefined;
  if (provider === "anthropic" || provider === "gemini") return provider;
  return "openai";
}

/** What a person reads in the 403 for each reason. */
export const REASON_TEXT: Record<DenyReason, string> = {
  domain_not_allowed: "the host is not in the policy's allowed domains",
  domain_denied: "the host is in the policy's denied domains",
  port_not_allowed: "the policy does not allow this port for this host",
  ip_literal_not_allowed: "IP addresses are allowed only when the policy lists them",
  private_address: "the host resolves to a private, loopback or link-local address",
  budget_exceeded: "the token's spend budget cannot pay for this request",
  model_not_allowed: "the policy does not allow this model",
  model_price_unknown: "the model has no known price, so its cost cannot be bounded",
  request_limit_exceeded: "the run's request limit is reached",
  token_revoked: "the token was revoked",
  token_expired: "the token expired",
  agent_disabled: "the agent was disabled",
  store_unavailable: "the audit log or the spend ledger cannot be written",
  malformed_request: "the request could not be judged, so it was refused",
  request_not_allowed: "no request rule of the policy allows this method and path on this host",
  secret_wrong_host: "a secret's stand-in may go only to that secret's hosts, where it belongs",
  secret_exfiltration: "the request carries the real value of a secret",
};

/**
 * The contract's deny JSON: the six fields first, then a message; on a metered host also an
 * `error` object in that provider's shape, so its SDK raises a readable error (status stays 403,
 * which SDKs do not retry).
 */
export function denyBody(identity: RunIdentity, reason: DenyReason, shape?: ErrorShape): string {
  const message = `vallignus: ${REASON_TEXT[reason]} (${reason})`;
  const body: Record<string, unknown> = {
    decision: "deny",
    agent_id: identity.agent_id,
    owner: identity.owner,
    policy_id: identity.policy_id,
    policy_version: identity.policy_version,
    deny_reason: reason,
    message,
  };
  if (shape === "openai")
    body["error"] = { message, type: "vallignus_denied", code: reason, param: null };
  if (shape === "anthropic") {
    body["type"] = "error";
    body["error"] = { type: "permission_error", message };
  }
  if (shape === "gemini") body["error"] = { code: 403, message, status: "PERMISSION_DENIED" };
  return JSON.stringify(body);
}
