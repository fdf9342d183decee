import type { DecisionFields } from "../audit/index.js";
import type { SecretSnapshot } from "../secrets/index.js";
import type {
  LedgerState,
  ModelPricing,
  ProviderId,
  ReserveResult,
  SettleMeta,
} from "../metering/index.js";

/**
 * The run's secrets, read fresh for each request (a rotation applies to the next one). Undefined
 * when the authority holds none: nothing to swap or look for. Throws when they cannot be read:
 * the request is then denied (fail closed).
 */
export interface SecretSource {
  snapshot(): SecretSnapshot | undefined;
}

/** Where each request's decision record goes. */
export interface AuditSink {
  append(record: DecisionFields): void;
}

/**
 * The part of the spend ledger a metered call needs. The run adapts the real ledger to it
 * (batched reservations and settlements); unit tests use an in-memory one.
 */
export interface SpendLedger {
  /** Reserves the worst case, durably, before the call leaves; not ok when the budget is short. */
  reserve(
    amountNano: number,
    meta: { readonly provider: string; readonly model: string },
  ): Promise<ReserveResult>;
  /** Charges the actual cost against a reservation; rejects when it cannot be written. */
  settle(id: string, costNano: number, meta: SettleMeta): Promise<LedgerState>;
  /** Resolves once every reservation and settlement asked for is written. */
  drain(): Promise<void>;
}

/** Prices of models, as of a moment (dated price changes apply when they are due). */
export interface PriceLookup {
  /** Resolves once the price table is loaded; the lookups below are synchronous. */
  ready(): Promise<void>;
  pricing(provider: ProviderId, model: string, at: Date): ModelPricing | undefined;
  /** The model's context window in tokens: the only bound of input the body does not carry. */
  contextWindow(provider: ProviderId, model: string, at: Date): number | undefined;
}
