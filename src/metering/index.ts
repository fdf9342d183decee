export { METERED_HOSTS, meteredProviderFor } from "./providers.js";
export type { MeteredHost, ProviderId } from "./providers.js";
export { readLlmRequest, DEFAULT_MAX_REQUEST_BODY_BYTES } from "./llm-request.js";
export type { LlmApi, LlmRequest, LlmRequestReading } from "./llm-request.js";
export { createUsageReader } from "./usage.js";
export type { Usage, UsageReader } from "./usage.js";
export { costNanoUsd, findContextWindow, findPricing, loadPriceTable } from "./prices.js";
export type { Modality, ModelPricing, TokenUsage, ToolFee } from "./prices.js";
export { readServerTools, withToolPrices } from "./server-tools.js";
export type { ServerToolFacts } from "./server-tools.js";
export {
  cheapestNextRequestNanoUsd,
  DEFAULT_MAX_OUTPUT_TOKENS,
  inputTokenBound,
  reservationNanoUsd,
} from "./reservation.js";
export {
  fileLedgerStore,
  listLedgers,
  openLedger,
  readLedgerSummary,
  recoverDeadReservations,
} from "./ledger.js";
export type {
  Ledger,
  LedgerState,
  LedgerStore,
  LedgerSummary,
  OpenLedgerOptions,
  ReserveResult,
  SettleMeta,
} from "./ledger.js";
