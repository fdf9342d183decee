import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createSecureContext } from "node:tls";

import type { CompiledPolicy, DenyReason } from "../policy/index.js";
import { formatNanoUsd } from "../policy/index.js";
import {
  cheapestNextRequestNanoUsd,
  costNanoUsd,
  createUsageReader,
  findContextWindow,
  findPricing,
  inputTokenBound,
  loadPriceTable,
  meteredProviderFor,
  readLlmRequest,
  reservationNanoUsd,
  type Ledger,
  type LedgerState,
  type ModelPricing,
  type ProviderId,
  type SettleMeta,
  type Usage,
} from "../metering/index.js";
import { redactPath } from "../audit/index.js";
import { denyBody, type ErrorShape } from "./deny-body.js";
import { DENY_HEADERS } from "./deny-response.js";
import type { AuditSink, RunIdentity } from "./gatekeeper.js";
import type { InnerHandler, TunnelContext } from "./intercept.js";
import { dropHeaders, forwardHeaders } from "./headers.js";

/** The largest request body read before it is judged: Anthropic's own request limit. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

export interface MeterOptions {
  readonly identity: RunIdentity;
  readonly policy: CompiledPolicy;
  readonly ledger: Ledger;
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
}

function errorShape(provider: ProviderId): ErrorShape {
  if (provider === "anthropic") return "anthropic";
  if (provider === "gemini") return "gemini";
  return "openai";
}

/** Errors of certificate verification, as Node's TLS reports them. */
function isCertificateError(err: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/.test(err.code ?? "");
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

function usd(nano: number): string {
  return formatNanoUsd(nano);
}

/**
 * Serves the requests inside an intercepted tunnel to an LLM API: reads the request, checks
 * model and price, reserves the worst case in the ledger before anything is sent, forwards over
 * verified TLS to the checked address, reads the provider's usage from the response as it
 * streams, and settles the reservation to the actual cost (or to all of it, failing closed).
 */
export function createMeteredHandler(
  options: MeterOptions,
): InnerHandler & { finished(timeoutMs: number): Promise<void> } {
  const { identity, policy, ledger } = options;
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

  // A table lookup walks the price table (5% of a metered call's CPU): remembered per provider
  // and model for the minute it was made in, so a dated price change applies within a minute.
  const prices = new Map<string, { minute: number; pricing: ModelPricing | undefined }>();
  const pricingAt = (provider: ProviderId, model: string, at: Date) => {
    const minute = Math.floor(at.getTime() / 60_000);
    const key = `${provider} ${model}`;
    const known = prices.get(key);
    if (known?.minute === minute) return known.pricing;
    const pricing = findPricing(provider, model, policy.rules.prices, at);
    if (prices.size > 1000) prices.clear();
    prices.set(key, { minute, pricing });
    return pricing;
  };

  /** Calls sent upstream and not yet settled; settlements whose audit line is not yet written. */
  let calls = 0;
  const unfinished = new Set<Promise<void>>();
  const track = (done: Promise<void>) => {
    unfinished.add(done);
    void done.finally(() => unfinished.delete(done));
  };
  // The ledger refuses a malformed amount by throwing; that is a failed settlement like any other.
  const settleSafely = (id: string, cost: number, meta: SettleMeta): Promise<LedgerState> => {
    try {
      return ledger.settleBatched(id, cost, meta);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  };
  // After the run's end (a bug if it happens) the line has nowhere to go; it must not crash us.
  const appendSafely = (fields: Record<string, unknown>) => {
    try {
      options.audit.append(fields);
    } catch {
      // Nothing to record it in.
    }
  };

  const handler = (req: IncomingMessage, res: ServerResponse, tunnel: TunnelContext) => {
    void serve(req, res, tunnel);
  };
  /**
   * Waits (up to `timeoutMs`) until every call in flight is settled and its audit line queued:
   * the supervisor calls it after closing the proxy, before draining the ledger and run_end.
   */
  const finished = async (timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (calls > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    agentMade?.destroy();
    await ledger.drain();
    await Promise.allSettled([...unfinished]);
  };
  return Object.assign(handler, { finished });

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    tunnel: TunnelContext,
  ): Promise<void> {
    const started = performance.now();
    const provider = meteredProviderFor(tunnel.host);
    const path = req.url ?? "/";
    const base = {
      session_id: identity.session_id,
      agent_id: identity.agent_id,
      owner: identity.owner,
      policy_id: identity.policy_id,
      policy_version: identity.policy_version,
      jti: identity.jti,
      method: req.method ?? "",
      scheme: "https" as const,
      host: tunnel.host,
      port: tunnel.port,
      path: redactPath(path),
      ...(provider === undefined ? {} : { provider }),
    };
    const elapsed = () => Math.round(performance.now() - started);

    const refuse = (reason: DenyReason, extra: Record<string, unknown> = {}) => {
      const body = denyBody(
        identity,
        reason,
        provider === undefined ? undefined : errorShape(provider),
      );
      res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
      res.end(body);
      options.audit.append({
        ...base,
        decision: "deny",
        deny_reason: reason,
        status: 403,
        bytes_in: 0,
        bytes_out: 0,
        duration_ms: elapsed(),
        ...extra,
      });
    };

    // The request must name the host of its tunnel: a different Host is domain fronting.
    const declared = (req.headers.host ?? "").toLowerCase().replace(/\.$/, "");
    const expected =
      tunnel.port === 443 ? [tunnel.host, `${tunnel.host}:443`] : [`${tunnel.host}:${tunnel.port}`];
    if (provider === undefined || !expected.includes(declared)) {
      req.resume();
      refuse("malformed_request", { error: "Host differs from the tunnel's host" });
      return;
    }
    const stop = options.stopReason();
    if (stop !== undefined) {
      req.resume();
      refuse(stop);
      return;
    }
    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === undefined) {
      refuse("malformed_request", { error: "request body too large or unreadable" });
      return;
    }
    const reading = readLlmRequest(provider, req.method ?? "", path, body, MAX_BODY_BYTES);
    if (!reading.ok) {
      refuse("malformed_request", { error: reading.why });
      return;
    }
    const { request } = reading;
    const slot = options.takeRequestSlot();
    if (slot !== undefined) {
      refuse(slot);
      return;
    }
    const model = request.model;
    const billable = request.api !== "other";
    if (!billable && !["GET", "HEAD", "OPTIONS"].includes(req.method ?? "")) {
      // A POST we cannot read is a call we cannot price.
      refuse("model_price_unknown", { error: "unrecognised API path" });
      return;
    }
    let pricing: ModelPricing | undefined;
    let reservation: { id: string; amount: number } | undefined;
    if (billable) {
      if (model === undefined) {
        refuse("malformed_request", { error: "no model in the request" });
        return;
      }
      const allowed = policy.rules.allowed_models;
      if (allowed !== null && !allowed.includes(model)) {
        refuse("model_not_allowed", { model });
        return;
      }
      await loadPriceTable();
      pricing = pricingAt(provider, model, options.now());
      if (pricing === undefined) {
        refuse("model_price_unknown", { model });
        return;
      }
      // Content stored elsewhere (and audio, video, PDFs) costs tokens the body's bytes do not
      // bound: the model's context window is then the only honest bound. Images get a fixed
      // per-image allowance on top of their bytes.
      const inputTokens = request.externalInput
        ? findContextWindow(provider, model, options.now())
        : inputTokenBound(request.inputBytes, request.imageCount);
      if (inputTokens === undefined) {
        refuse("model_price_unknown", { model, error: "input cannot be bounded" });
        return;
      }
      const amount = reservationNanoUsd(pricing, {
        inputTokens,
        maxOutputTokens: request.maxOutputTokens,
        n: request.n,
      });
      let reserved;
      try {
        // Group commit: reservations (and settlements) asked for in one turn of the event loop
        // share one lock, one write and one fdatasync.
        reserved = await ledger.reserveBatched(amount, { provider, model });
      } catch (err) {
        refuse("malformed_request", {
          model,
          error: `ledger: ${err instanceof Error ? err.message : String(err)}`,
        });
        return;
      }
      if (!reserved.ok) {
        refuse("budget_exceeded", {
          model,
          cost_usd: "0",
          spent_usd: usd(reserved.state.spentNano),
          budget_usd: usd(options.budgetNano),
        });
        options.onBudgetExhausted();
        return;
      }
      reservation = { id: reserved.id, amount };
    }

    const headers = dropHeaders(forwardHeaders(req.rawHeaders, false), [
      "content-length",
      "accept-encoding",
      "host",
    ]);
    // Usage must be readable, so the response comes uncompressed.
    headers.push(
      "host",
      req.headers.host ?? tunnel.host,
      "accept-encoding",
      "identity",
      "content-length",
      String(reading.forwardBody.length),
    );
    let bytesIn = 0;
    let sent = false;
    let settled = false;

    const settle = (
      usage: Usage | undefined,
      complete: boolean,
      status: number,
      error?: string,
    ) => {
      if (settled) return;
      settled = true;
      calls--;
      const fields: Record<string, unknown> = {
        ...base,
        decision: "allow",
        status,
        bytes_in: bytesIn,
        bytes_out: reading.forwardBody.length,
        duration_ms: elapsed(),
      };
      if (model !== undefined) fields["model"] = model;
      if (error !== undefined) fields["error"] = error.slice(0, 200);
      if (reservation !== undefined && pricing !== undefined) {
        let cost: number;
        let chargedFull = false;
        if (!sent) {
          cost = 0; // Nothing reached the provider.
        } else if (usage === undefined || !complete) {
          cost = reservation.amount;
          chargedFull = true;
        } else {
          try {
            cost = usage.providerCostNanoUsd ?? costNanoUsd(pricing, usage);
          } catch {
            cost = reservation.amount;
            chargedFull = true;
          }
        }
        // A provider-reported cost we cannot hold (OpenRouter's cost + upstream cost, say)
        // charges the whole reservation rather than failing the settlement.
        if (!Number.isSafeInteger(cost) || cost < 0) {
          cost = reservation.amount;
          chargedFull = true;
        }
        const settled = settleSafely(reservation.id, cost, {
          ...(usage === undefined
            ? {}
            : { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens }),
          charged_full: chargedFull,
          ...(chargedFull
            ? { reason: usage === undefined ? "no usage in the response" : "response cut short" }
            : {}),
        });
        Object.assign(fields, {
          input_tokens:
            usage === undefined
              ? null
              : usage.inputTokens + usage.cacheReadTokens + usage.cacheWriteTokens,
          output_tokens: usage?.outputTokens ?? null,
          cost_usd: usd(cost),
          reserved_usd: usd(reservation.amount),
          ...(chargedFull
            ? {
                charged_full: true,
                charge_reason:
                  usage === undefined ? "no usage in the response" : "response cut short",
              }
            : {}),
        });
        const budget = usd(options.budgetNano);
        const cheapest = cheapestNextRequestNanoUsd(pricing);
        // The audit line goes out once the ledger has the settlement (its batch is written
        // at the end of this turn of the event loop), with the spend it brought the total to.
        track(
          settled.then(
            (state) => {
              appendSafely({ ...fields, spent_usd: usd(state.spentNano), budget_usd: budget });
              if (state.leftNano < cheapest) options.onBudgetExhausted();
            },
            () => appendSafely({ ...fields, budget_usd: budget }),
          ),
        );
        return;
      }
      options.audit.append(fields);
    };

    calls++;
    const upstream = httpsRequest({
      host: tunnel.address,
      port: tunnel.port,
      servername: tunnel.host,
      method: req.method,
      path,
      headers,
      agent: upstreamAgent(),
      setHost: false,
    });
    upstream.on("socket", (socket) => {
      // A kept-alive socket is connected already; only a new one waits for its handshake.
      if (socket.connecting) socket.once("secureConnect", () => (sent = true));
      else sent = true;
    });
    let reader: ReturnType<typeof createUsageReader> | undefined;
    let upstreamStatus = 502;
    // A client that leaves, or a run that ends and drops its connections, ends the call whether
    // or not the provider has answered yet: the upstream request goes, the call is settled.
    res.on("close", () => {
      if (!res.writableFinished) {
        upstream.destroy();
        settle(reader?.usage(), false, upstreamStatus, "client closed before the end");
      }
    });
    upstream.on("response", (up: IncomingMessage) => {
      upstreamStatus = up.statusCode ?? 502;
      reader = createUsageReader(request, reading.usageInjected, up.headers["content-type"]);
      const usageReader = reader;
      // Dropping the injected usage event changes the length: let the body be chunked.
      const out = dropHeaders(
        forwardHeaders(up.rawHeaders, false),
        reading.usageInjected ? ["content-length"] : [],
      );
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      up.on("data", (chunk: Buffer) => {
        bytesIn += chunk.length;
        const forward = usageReader.push(chunk);
        if (forward.length > 0) res.write(forward);
      });
      up.on("end", () => {
        res.end(usageReader.end());
        settle(usageReader.usage(), usageReader.complete(), upstreamStatus);
      });
      up.on("error", (err) => {
        res.destroy();
        settle(usageReader.usage(), false, upstreamStatus, err.message);
      });
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      // An upstream we cannot verify is refused, never downgraded; nothing was sent.
      if (!res.headersSent && isCertificateError(err) && !settled) {
        settled = true;
        if (reservation !== undefined) {
          try {
            // A failure leaves the reservation open, to be charged in full later: fail closed.
            ledger
              .settleBatched(reservation.id, 0, { reason: "upstream certificate not trusted" })
              .catch(() => undefined);
          } catch {
            // As above.
          }
        }
        refuse("malformed_request", {
          ...(model === undefined ? {} : { model }),
          error: `upstream TLS verification failed: ${err.message}`,
        });
        return;
      }
      if (!res.headersSent && !res.destroyed) {
        const body = JSON.stringify({
          error: {
            message: `vallignus: upstream ${tunnel.host} failed: ${err.message}`,
            type: "vallignus_upstream_error",
          },
        });
        res.writeHead(502, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "x-vallignus-decision": "allow",
        });
        res.end(body);
      }
      settle(undefined, false, 502, err.message);
    });
    upstream.end(reading.forwardBody);
  }
}
