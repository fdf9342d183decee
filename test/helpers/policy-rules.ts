import { compilePolicy, type CompiledPolicy, type PolicyRules } from "../../src/policy/index.js";

/** A policy version's rules that allow nothing and limit nothing; tests override what they need. */
export const NO_RULES: PolicyRules = {
  max_spend_usd: "1",
  allowed_domains: [],
  denied_domains: [],
  allowed_models: null,
  max_requests: null,
  max_runtime_seconds: null,
  allow_private_networks: false,
  prices: {},
  secrets: [],
  inspect_hosts: [],
  allow_requests: [],
  deny_requests: [],
};

export function policyWith(rules: Partial<PolicyRules>): CompiledPolicy {
  return compilePolicy({ ...NO_RULES, ...rules });
}
