import { Agent as HttpsAgent } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createSecureContext } from "node:tls";

import { decisionRecord, redactPath, type RequestLine, type RunIdentity } from "../audit/index.js";
import type { ProviderId } from "../metering/index.js";
import type { CompiledPolicy, DenyReason } from "../policy/index.js";
import { denyBody, type ErrorShape } from "./deny-body.js";
import { DENY_HEADERS } from "./deny-response.js";
import type { InnerHandler, TunnelContext } from "./intercept.js";
import { admit, type AdmitPorts, type AdmittedCall, type Refusal } from "./metered-admit.js";
import { forward } from "./metered-forward.js";
import { cancelReservation, settle, type SettlePorts } from "./metered-settle.js";
import type { AuditSink, PriceLookup, SpendLedger } from "./ports.js";
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
}

function errorShape(provider: ProviderId | undefined): ErrorShape | undefined {
  if (provider === undefined) return undefined;
  if (provider === "anthropic") return "anthropic";
  if (provider === "gemini") return "gemini";
  return "openai";
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(size > limit ? undefined : Buffer.concat(chunks)));
    req.on("error", () => resolve(undefined));
  });
}

const elapsedSince = (started: number) => Math.round(performance.now() - started);

/**
 * Serves the requests inside an intercepted tunnel to an LLM API, each in three steps: admit
 * (host, body, model, price, reservation), forward (verified TLS to the checked address, usage
 * read as the answer streams), settle (the reservation charged with the actual cost, or all of
 * it, failing closed, and the audit line).
 */
export function createMeteredHandler(
  options: MeterOptions,
): InnerHandler & { finished(timeoutMs: number): Promise<void> } {
  const { identity, ledger } = options;
  const prices = options.prices ?? tablePrices(options.policy.rules.prices);
  const admitPorts: AdmitPorts = { ...options, prices };
  const settlePorts: SettlePorts = options;
  // One secure context for the trusted roots, made once, on the first metered call (a run that
  // makes none keeps the ~140 parsed roots out of memory): passing `ca` per request instead would
  // make Node build the pool key from ~200 KB of PEM, and reparse it, on every request.
  let agentMade: HttpsAgent | undefined;
  const upstreamAgent = () =>
    (agentMade ??= new HttpsAgent({
      keepAlive: true,
      maxSockets: 64,
      secureContext: createSecureContext({ ca: [...options.upstreamRoots] }),
    }));
  /** Calls admitted and not yet settled with their audit line queued. */
  const calls = new Set<Promise<void>>();

  const refuse = (res: ServerResponse, line: RequestLine, refusal: Refusal, started: number) => {
    const body = denyBody(identity, refusal.reason, errorShape(refusal.provider));
    res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
    res.end(body);
    const end = {
      status: 403,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: elapsedSince(started),
      error: refusal.error,
    };
    const metered = {
      ...(refusal.provider === undefined ? {} : { provider: refusal.provider }),
      ...refusal.metered,
    };
    options.audit.append(decisionRecord(identity, line, refusal.reason, end, metered));
  };

  async function forwardAndSettle(
    call: AdmittedCall,
    req: IncomingMessage,
    res: ServerResponse,
    tunnel: TunnelContext,
    line: RequestLine,
    started: number,
  ): Promise<void> {
    const forwarded = await forward(call, req, res, tunnel, upstreamAgent());
    if (forwarded.untrusted) {
      if (call.billing !== undefined) {
        cancelReservation(ledger, call.billing, "upstream certificate not trusted");
      }
      const metered = call.request.model === undefined ? {} : { model: call.request.model };
      refuse(
        res,
        line,
        { reason: "malformed_request", provider: call.provider, error: forwarded.error, metered },
        started,
      );
      return;
    }
    const end = {
      ...forwarded,
      bytesOut: call.forwardBody.length,
      durationMs: elapsedSince(started),
    };
    await settle(settlePorts, line, call, end);
  }

  async function serve(req: IncomingMessage, res: ServerResponse, tunnel: TunnelContext) {
    const started = performance.now();
    const path = req.url ?? "/";
    const method = req.method ?? "";
    const line = {
      method,
      scheme: "https",
      host: tunnel.host,
      port: tunnel.port,
      path: redactPath(path),
    } as const;
    const admission = await admit(admitPorts, {
      method,
      path,
      host: req.headers.host,
      tunnel,
      readBody: (limit) => readBody(req, limit),
    });
    if (!admission.admitted) {
      req.resume();
      refuse(res, line, admission.refusal, started);
      if (admission.refusal.budgetExhausted === true) options.onBudgetExhausted();
      return;
    }
    const call = forwardAndSettle(admission.call, req, res, tunnel, line, started);
    calls.add(call);
    await call.finally(() => calls.delete(call));
  }

  const handler = (req: IncomingMessage, res: ServerResponse, tunnel: TunnelContext) => {
    void serve(req, res, tunnel);
  };
  /**
   * Waits (up to `timeoutMs`) until every call in flight is settled and its audit line queued:
   * the supervisor calls it after closing the proxy, before draining the ledger and run_end.
   */
  const finished = async (timeoutMs: number): Promise<void> => {
    await settledWithin(calls, timeoutMs);
    agentMade?.destroy();
    await ledger.drain();
    await settledWithin(calls, timeoutMs);
  };
  return Object.assign(handler, { finished });
}
