import type { DecisionFields } from "../../src/audit/index.js";
import type {
  LedgerState,
  ModelPricing,
  ReserveResult,
  SettleMeta,
} from "../../src/metering/index.js";
import type { AuditSink, PriceLookup, SpendLedger } from "../../src/proxy/index.js";

/**
 * An in-memory spend ledger with the real one's arithmetic (left = budget - spent - reserved),
 * recording every call, and failing on demand.
 */
export class MemoryLedger implements SpendLedger {
  spentNano = 0;
  readonly open = new Map<string, number>();
  readonly reserves: { amountNano: number; meta: { provider: string; model: string } }[] = [];
  readonly settles: { id: string; costNano: number; meta: SettleMeta }[] = [];
  /** Set to make the next calls fail: "reject" as a failed write, "throw" as a refused amount. */
  failReserve: "reject" | undefined;
  failSettle: "reject" | "throw" | undefined;
  drained = 0;
  private next = 0;

  constructor(readonly budgetNano: number) {}

  state(): LedgerState {
    let reservedNano = 0;
    for (const amount of this.open.values()) reservedNano += amount;
    return {
      budgetNano: this.budgetNano,
      spentNano: this.spentNano,
      reservedNano,
      leftNano: Math.max(0, this.budgetNano - this.spentNano - reservedNano),
      calls: this.settles.length,
      openReservations: this.open.size,
    };
  }

  reserve(amountNano: number, meta: { provider: string; model: string }): Promise<ReserveResult> {
    this.reserves.push({ amountNano, meta });
    if (this.failReserve === "reject") return Promise.reject(new Error("disk full"));
    if (amountNano > this.state().leftNano)
      return Promise.resolve({ ok: false, state: this.state() });
    const id = `r${++this.next}`;
    this.open.set(id, amountNano);
    return Promise.resolve({ ok: true, id, state: this.state() });
  }

  settle(id: string, costNano: number, meta: SettleMeta): Promise<LedgerState> {
    this.settles.push({ id, costNano, meta });
    if (this.failSettle === "throw") throw new Error(`bad amount ${costNano}`);
    if (this.failSettle === "reject") return Promise.reject(new Error("disk full"));
    this.open.delete(id);
    this.spentNano += costNano;
    return Promise.resolve(this.state());
  }

  drain(): Promise<void> {
    this.drained++;
    return Promise.resolve();
  }
}

/** An audit sink that keeps the records; `failing` makes append throw (a closed log). */
export class MemoryAudit implements AuditSink {
  readonly records: DecisionFields[] = [];
  failing = false;
  append(record: DecisionFields): void {
    if (this.failing) throw new Error("audit log closed");
    this.records.push(record);
  }
}

/** $1 per million input tokens (1,000 nano-USD a token), $2 per million output. */
export const PRICING: ModelPricing = {
  source: "table",
  inputNanoPerMTok: 1_000_000_000,
  outputNanoPerMTok: 2_000_000_000,
  cacheReadNanoPerMTok: 100_000_000,
  cacheWriteNanoPerMTok: 1_250_000_000,
  maxOutputTokens: 1000,
};

/** Prices for the models named; every other model is unpriced. */
export function fixedPrices(
  models: Readonly<Record<string, ModelPricing>>,
  contextWindow?: number,
): PriceLookup & { lookups: number } {
  const lookup = {
    lookups: 0,
    ready: () => Promise.resolve(),
    pricing: (_provider: string, model: string) => {
      lookup.lookups++;
      return Object.hasOwn(models, model) ? models[model] : undefined;
    },
    contextWindow: () => contextWindow,
  };
  return lookup;
}
