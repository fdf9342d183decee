import {
  decisionRecord,
  type MeteredFields,
  type RequestLine,
  type RunIdentity,
} from "../audit/index.js";
import { cheapestNextRequestNanoUsd, costNanoUsd, type Usage } from "../metering/index.js";
import { formatNanoUsd } from "../policy/index.js";
import type { AdmittedCall, Billing } from "./metered-admit.js";
import type { AuditSink, SpendLedger } from "./ports.js";

/** How a forwarded call ended, as the forward step saw it. */
export interface CallEnd {
  /** The request reached the provider (its TLS handshake completed); otherwise nothing is owed. */
  readonly sent: boolean;
  /** The usage the response reported, if any. */
  readonly usage: Usage | undefined;
  /** The response reached the end its format documents (a stream not cut short). */
  readonly complete: boolean;
  /** The status the client got (502 when the provider never answered). */
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly error?: string | undefined;
  /** Names of the secrets swapped into the call. */
  readonly secret?: string | undefined;
}

/** What a call is charged, in nano-USD, and why when it is the whole reservation. */
export interface Charge {
  readonly costNano: number;
  /** Why the whole reservation was charged; undefined when the usage was priced. */
  readonly fullReason?: string;
}

/**
 * The cost of a call from its usage, failing closed: a call that reached the provider and left
 * no usage, or a stream cut short, or a cost we cannot hold as a safe integer (OpenRouter's cost
 * plus upstream cost, say), is charged its whole reservation.
 */
export function chargeFor(billing: Billing, end: CallEnd): Charge {
  if (!end.sent) return { costNano: 0 };
  const { usage } = end;
  const fullReason = usage === undefined ? "no usage in the response" : "response cut short";
  if (usage === undefined || !end.complete) return { costNano: billing.reservedNano, fullReason };
  let cost: number;
  try {
    cost = usage.providerCostNanoUsd ?? costNanoUsd(billing.pricing, usage);
  } catch {
    return { costNano: billing.reservedNano, fullReason };
  }
  if (!Number.isSafeInteger(cost) || cost < 0)
    return { costNano: billing.reservedNano, fullReason };
  return { costNano: cost };
}

/** What settling asks of the run. */
export interface SettlePorts {
  readonly identity: RunIdentity;
  readonly ledger: SpendLedger;
  readonly audit: AuditSink;
  readonly budgetNano: number;
  /** Called when what is left cannot pay for the cheapest next call to this model. */
  readonly onBudgetExhausted: () => void;
}

/**
 * The last step of a metered call: charges the reservation with the cost from the usage, and
 * writes the call's audit line once the ledger has the settlement, with the spend it brought the
 * total to. Resolves when the line is written; never rejects (a failed settlement leaves the
 * reservation open, charged in full later: fail closed, and the line says nothing of spend).
 */
export function settle(
  ports: SettlePorts,
  line: RequestLine,
  call: AdmittedCall,
  end: CallEnd,
): Promise<void> {
  const model = call.request.model;
  const { billing } = call;
  if (billing === undefined) {
    const metered = { provider: call.provider, ...(model === undefined ? {} : { model }) };
    ports.audit.append(decisionRecord(ports.identity, line, undefined, end, metered));
    return Promise.resolve();
  }
  const charge = chargeFor(billing, end);
  const { usage } = end;
  const budget_usd = formatNanoUsd(ports.budgetNano);
  const record = (spentNano: number | undefined) => {
    const metered: MeteredFields = {
      provider: call.provider,
      model: billing.model,
      input_tokens:
        usage === undefined
          ? null
          : usage.inputTokens + usage.cacheReadTokens + usage.cacheWriteTokens,
      output_tokens: usage?.outputTokens ?? null,
      cost_usd: formatNanoUsd(charge.costNano),
      reserved_usd: formatNanoUsd(billing.reservedNano),
      ...(charge.fullReason === undefined
        ? {}
        : { charged_full: true, charge_reason: charge.fullReason }),
      ...(spentNano === undefined ? {} : { spent_usd: formatNanoUsd(spentNano) }),
      budget_usd,
    };
    appendSafely(ports.audit, decisionRecord(ports.identity, line, undefined, end, metered));
  };
  return settleSafely(ports.ledger, billing.reservationId, charge.costNano, {
    ...(usage === undefined
      ? {}
      : { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens }),
    charged_full: charge.fullReason !== undefined,
    ...(charge.fullReason === undefined ? {} : { reason: charge.fullReason }),
  }).then(
    (state) => {
      record(state.spentNano);
      if (state.leftNano < cheapestNextRequestNanoUsd(billing.pricing)) ports.onBudgetExhausted();
    },
    () => record(undefined),
  );
}

/**
 * Gives a reservation back (nothing reached the provider). A failure leaves it open, to be
 * charged in full later: fail closed.
 */
export function cancelReservation(ledger: SpendLedger, billing: Billing, reason: string): void {
  settleSafely(ledger, billing.reservationId, 0, { reason }).catch(() => undefined);
}

/**
 * Charges a reservation in full, for a call whose end is not known. A failure leaves it open, to
 * be charged in full later all the same.
 */
export function chargeInFull(ledger: SpendLedger, billing: Billing, reason: string): void {
  settleSafely(ledger, billing.reservationId, billing.reservedNano, {
    charged_full: true,
    reason,
  }).catch(() => undefined);
}

/** The ledger refuses a malformed amount by throwing: a failed settlement like any other. */
function settleSafely(
  ledger: SpendLedger,
  id: string,
  cost: number,
  meta: Parameters<SpendLedger["settle"]>[2],
): ReturnType<SpendLedger["settle"]> {
  try {
    return ledger.settle(id, cost, meta);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/** After the run's end (a bug if it happens) the line has nowhere to go; it must not crash us. */
function appendSafely(audit: AuditSink, record: Parameters<AuditSink["append"]>[0]): void {
  try {
    audit.append(record);
  } catch {
    // Nothing to record it in.
  }
}
