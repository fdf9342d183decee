export { startProxy } from "./server.js";
export type { ProxyServer } from "./server.js";
export type { Gatekeeper, Judgement, Outcome, RequestFacts } from "./judgement.js";
export { createGatekeeper } from "./gatekeeper.js";
export type { AuditSink, PriceLookup, SpendLedger } from "./ports.js";
export type { ResolveOverride } from "./resolve.js";
export { parseAuthority, parseHost, isPrivateAddress } from "./address.js";
export { createMeteredHandler } from "./metered-exchange.js";
export type { MeterOptions } from "./metered-exchange.js";
