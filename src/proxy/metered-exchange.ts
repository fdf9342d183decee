import type { IncomingMessage, ServerResponse } from "node:http";

import {
  decisionRecord,
  type DecisionFields,
  type RequestLine,
  type RunIdentity,
} from "../audit/index.js";
import { meteredProviderFor, type ProviderId } from "../metering/index.js";
import type { CompiledPolicy, DenyReason } from "../policy/index.js";
import { denyBody, type ErrorShape } from "./deny-body.js";
import { DENY_HEADERS } from "./deny-response.js";
import { tunnelRequestLine, type InnerHandler, type TunnelContext } from "./intercept.js";
import {
  admit,
  MAX_METERED_BODY_BYTES,
  messageOf,
  type AdmitPorts,
  type AdmittedCall,
  type Refusal,
} from "./metered-admit.js";
import { forward } from "./metered-forward.js";
import { cancelReservation, chargeInFull, settle } from "./metered-settle.js";
import { forwardHeaders } from "./headers.js";
import { checkInnerRequest } from "./inner-check.js";
import type { Outgoing } from "./metered-forward.js";
import type { AuditSink, PriceLookup, SecretSource, SpendLedger } from "./ports.js";
import { lazyUpstreamAgent } from "./upstream-tls.js";
import { tablePrices } from "./price-lookup.js";
import { settledWithin } from "./settled-within.js";

export interface MeterOptions {
  readonly identity: RunIdentity;
  readonly policy: CompiledPolicy;
  readonly ledger: SpendLedger;
  readonly budgetNano: number;
  readonly audit: AuditSink;
  /** Why the run is stopping, or undefined while it runs. */
  readonly stopReason: () => DenyReason | undefined;
  /** Takes one request from the run's limits; the reason when none is left. */
  readonly takeRequestSlot: () => DenyReason | undefined;
  /** Called once the budget cannot pay for a request (a refused reservation, or nothing left). */
  readonly onBudgetExhausted: () => void;
  /** PEM roots the proxy trusts as a TLS client: the system's plus `--upstream-ca`. */
  readonly upstreamRoots: readonly string[];
  readonly now: () => Date;
  /** The price table with the policy's overrides unless given (tests). */
  readonly prices?: PriceLookup;
  /** The run's secrets: stand-ins swapped, values and misplaced stand-ins refused. */
  readonly secrets?: SecretSource | undefined;
}

function errorShape(provider: ProviderId | undefined): ErrorShape | undefined {
  if (provider === undefined) return undefined;
  if (provider === "anthropic") return "anthropic";
  if (provider === "gemini" || provider === "vertex") return "gemini";
  return "openai";
}

const elapsedSince = (started: number) => Math.round(performance.now() - started);

/** One request inside a metered tunnel, and where it stands. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly tunnel: TunnelContext;
  readonly line: RequestLine;
  readonly started: number;
  /** The call once admitted (its reservation is open until it is settled). */
  call?: AdmittedCall;
  /** Its audit line is written: nothing is left to record. */
  recorded?: true;
  /** Names of the secrets swapped into it, for its audit line. */
  secret?: string | undefined;
}

/** The contract's 403, in the provider's error shape, and its audit line. */
function refuse(options: MeterOptions, x: Exchange, refusal: Refusal): void {
  const { res, line, started } = x;
  const body = denyBody(options.identity, refusal.reason, errorShape(refusal.provider));
  res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
  const end = {
    status: 403,
    bytesIn: 0,
    bytesOut: 0,
    durationMs: elapsedSince(started),
    error: refusal.error,
    secret: refusal.secret,
  };
  const metered = {
    ...(refusal.provider === undefined ? {} : { provider: refusal.provider }),
    ...refusal.metered,
  };
  x.recorded = true;
  options.audit.append(decisionRecord(options.identity, line, refusal.reason, end, metered));
}

/** The metered handler's parts: its options, the steps' ports, the upstream TLS agent. */
class Meter {
  readonly admitPorts: AdmitPorts;
  /** Calls admitted and not yet settled with their audit line queued. */
  readonly calls = new Set<Promise<void>>();
  readonly upstream;

  constructor(readonly options: MeterOptions) {
    const prices = options.prices ?? tablePrices(options.policy.rules.prices);
    this.admitPorts = { ...options, prices };
    this.upstream = lazyUpstreamAgent(options.upstreamRoots);
  }

  /**
   * admit → forward → settle; the one place where an error none of them caught ends up (a bug:
   * each step turns what it expects into a denial itself). That request alone is denied.
   */
  async serve(x: Exchange): Promise<void> {
    try {
      await this.steps(x);
    } catch (err) {
      this.failed(x, err);
    }
  }

  /**
   * An unexpected error: a 403 `malformed_request` and its line if nothing was answered yet,
   * else the connection cut and the call recorded as it stood. An admitted call is charged its
   * whole reservation: what reached the provider is not known (fail closed).
   */
  private failed(x: Exchange, err: unknown): void {
    if (x.recorded === true) return;
    x.recorded = true;
    x.req.resume();
    const error = `internal error: ${messageOf(err)}`;
    const { call } = x;
    if (call?.billing !== undefined) {
      chargeInFull(this.options.ledger, call.billing, "internal error");
    }
    const model = call?.request.model;
    const metered = model === undefined ? {} : { model };
    const provider = call?.provider ?? meteredProviderFor(x.tunnel.host);
    if (!x.res.headersSent && !x.res.destroyed) {
      const refusal: Refusal = { reason: "malformed_request", provider, error, metered };
      refuse(this.options, x, refusal);
      return;
    }
    x.res.destroy();
    const end = {
      status: x.res.statusCode,
      bytesIn: 0,
      bytesOut: call?.forwardBody.length ?? 0,
      durationMs: elapsedSince(x.started),
      error,
    };
    const fields = { ...(provider === undefined ? {} : { provider }), ...metered };
    this.options.audit.append(
      decisionRecord(this.options.identity, x.line, undefined, end, fields),
    );
  }

  private async steps(x: Exchange): Promise<void> {
    const { req } = x;
    const headers = forwardHeaders(req.rawHeaders, false);
    const checked = await checkInnerRequest(
      { policy: this.options.policy, secrets: this.options.secrets },
      req,
      x.tunnel,
      headers,
      MAX_METERED_BODY_BYTES,
    );
    if (!checked.ok) {
      const { reason, error, secret } = checked.denial;
      req.resume();
      const provider = meteredProviderFor(x.tunnel.host);
      refuse(this.options, x, {
        reason,
        provider,
        secret,
        ...(error === undefined ? {} : { error }),
      });
      return;
    }
    x.secret = checked.secret;
    const admission = await admit(this.admitPorts, {
      method: x.line.method,
      path: req.url ?? "/",
      host: req.headers.host,
      tunnel: x.tunnel,
      readBody: (limit) => Promise.resolve(checked.body.length > limit ? undefined : checked.body),
    });
    if (!admission.admitted) {
      req.resume();
      refuse(this.options, x, admission.refusal);
      if (admission.refusal.budgetExhausted === true) this.options.onBudgetExhausted();
      return;
    }
    x.call = admission.call;
    // The failure is handled inside the tracked promise, so that finished() waits for its line.
    const call = this.forwardAndSettle(admission.call, x, checked).catch((err: unknown) => {
      this.failed(x, err);
    });
    this.calls.add(call);
    await call.finally(() => this.calls.delete(call));
  }

  private async forwardAndSettle(call: AdmittedCall, x: Exchange, sent: Outgoing): Promise<void> {
    const agent = this.upstream.agent();
    const forwarded = await forward(call, x.req, x.res, x.tunnel, agent, sent);
    if (forwarded.untrusted) {
      if (call.billing !== undefined) {
        cancelReservation(this.options.ledger, call.billing, "upstream certificate not trusted");
      }
      const model = call.request.model;
      const refusal: Refusal = {
        reason: "malformed_request",
        provider: call.provider,
        error: forwarded.error,
        metered: model === undefined ? {} : { model },
      };
      refuse(this.options, x, refusal);
      return;
    }
    const durationMs = elapsedSince(x.started);
    const end = {
      sent: forwarded.sent,
      usage: forwarded.usage,
      complete: forwarded.complete,
      status: forwarded.status,
      bytesIn: forwarded.bytesIn,
      bytesOut: call.forwardBody.length,
      durationMs,
      error: forwarded.error,
      secret: x.secret,
    };
    // The line is marked written as it is appended: a fault after it must not write a second.
    const audit = {
      append: (record: DecisionFields) => {
        x.recorded = true;
        this.options.audit.append(record);
      },
    };
    await settle({ ...this.options, audit }, x.line, call, end);
  }
}

/**
 * Serves the requests inside an intercepted tunnel to an LLM API, each in three steps: admit
 * (host, body, model, price, reservation), forward (verified TLS to the checked address, usage
 * read as the answer streams), settle (the reservation charged with the actual cost, or all of
 * it, failing closed, and the audit line).
 */
export function createMeteredHandler(
  options: MeterOptions,
): InnerHandler & { finished(timeoutMs: number): Promise<void> } {
  const meter = new Meter(options);
  const handler = (req: IncomingMessage, res: ServerResponse, tunnel: TunnelContext) => {
    const started = performance.now();
    const line = tunnelRequestLine(req, tunnel);
    void meter.serve({ req, res, tunnel, line, started });
  };
  /**
   * Waits (up to `timeoutMs`) until every call in flight is settled and its audit line queued:
   * the supervisor calls it after closing the proxy, before draining the ledger and run_end.
   */
  const finished = async (timeoutMs: number): Promise<void> => {
    await settledWithin(meter.calls, timeoutMs);
    meter.upstream.close();
    await options.ledger.drain();
    await settledWithin(meter.calls, timeoutMs);
  };
  return Object.assign(handler, { finished });
}
