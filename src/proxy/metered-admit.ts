import type { MeteredFields } from "../audit/index.js";
import {
  DEFAULT_MAX_REQUEST_BODY_BYTES,
  inputTokenBound,
  meteredProviderFor,
  readLlmRequest,
  reservationNanoUsd,
  withToolPrices,
  type LlmRequest,
  type ModelPricing,
  type ProviderId,
} from "../metering/index.js";
import {
  decideModel,
  formatNanoUsd,
  type CompiledPolicy,
  type DenyReason,
} from "../policy/index.js";
import type { TunnelContext } from "./intercept.js";
import type { PriceLookup, SpendLedger } from "./ports.js";

/** The largest request body read before it is judged: Anthropic's own request limit. */
export const MAX_METERED_BODY_BYTES = DEFAULT_MAX_REQUEST_BODY_BYTES;

/** What admission asks of the run: its policy, ledger, prices, clock and live state. */
export interface AdmitPorts {
  readonly policy: CompiledPolicy;
  readonly ledger: SpendLedger;
  readonly prices: PriceLookup;
  readonly now: () => Date;
  readonly budgetNano: number;
  /** Why the run is stopping, or undefined while it runs. */
  readonly stopReason: () => DenyReason | undefined;
  /** Takes one request from the run's limits; the reason when none is left. */
  readonly takeRequestSlot: () => DenyReason | undefined;
}

/** One request inside a metered tunnel, as it arrived (its body is read by admission). */
export interface MeteredRequest {
  readonly method: string;
  readonly path: string;
  /** The Host header, undefined when absent. */
  readonly host: string | undefined;
  readonly tunnel: TunnelContext;
  /** Reads the body; undefined when it is larger than `limit` or cannot be read. */
  readBody(limit: number): Promise<Buffer | undefined>;
}

/** A call allowed to go upstream, with what it reserved. */
export interface AdmittedCall {
  readonly provider: ProviderId;
  readonly request: LlmRequest;
  /** The body to send: the client's own, unless usage reporting was injected. */
  readonly forwardBody: Buffer;
  readonly usageInjected: boolean;
  /** Set for billable calls (everything but GETs of model lists and the like). */
  readonly billing?: Billing;
}

export interface Billing {
  readonly model: string;
  readonly pricing: ModelPricing;
  readonly reservationId: string;
  readonly reservedNano: number;
}

/** A refusal: the reason for the 403 and what the audit line says beside it. */
export interface Refusal {
  readonly reason: DenyReason;
  readonly provider: ProviderId | undefined;
  readonly error?: string;
  readonly metered?: MeteredFields;
  /** The budget could not pay for this call: once the 403 is out, the run is told. */
  readonly budgetExhausted?: true;
  /** The secret a secret_* refusal is about, by name. */
  readonly secret?: string | undefined;
}

export type Admission =
  | { readonly admitted: true; readonly call: AdmittedCall }
  | { readonly admitted: false; readonly refusal: Refusal };

const refused = (
  reason: DenyReason,
  provider: ProviderId | undefined,
  note: { error?: string; metered?: MeteredFields } = {},
): Admission => ({ admitted: false, refusal: { reason, provider, ...note } });

/** Methods that read, and cost nothing, on a path we cannot price. */
const FREE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * The first step of a metered call, before any byte goes upstream: the request must name its
 * tunnel's host, the run must not be stopping, the body must be a request we can read, the
 * run's request limit must have room, the model must be allowed and priced, and the worst case
 * must be reserved in the ledger.
 */
export async function admit(ports: AdmitPorts, req: MeteredRequest): Promise<Admission> {
  try {
    return await admitSteps(ports, req);
  } catch (err) {
    // A step that fails (the price table cannot load, say) is a call we cannot judge: deny.
    const provider = meteredProviderFor(req.tunnel.host);
    return refused("malformed_request", provider, { error: `cannot admit: ${messageOf(err)}` });
  }
}

async function admitSteps(ports: AdmitPorts, req: MeteredRequest): Promise<Admission> {
  const provider = meteredProviderFor(req.tunnel.host);
  // A different Host inside the tunnel would be domain fronting.
  if (provider === undefined || !hostMatchesTunnel(req.host, req.tunnel)) {
    return refused("malformed_request", provider, {
      error: "Host differs from the tunnel's host",
    });
  }
  const stop = ports.stopReason();
  if (stop !== undefined) return refused(stop, provider);
  const body = await req.readBody(MAX_METERED_BODY_BYTES);
  if (body === undefined) {
    return refused("malformed_request", provider, {
      error: "request body too large or unreadable",
    });
  }
  const reading = readLlmRequest(provider, req.method, req.path, body, MAX_METERED_BODY_BYTES);
  if (!reading.ok) return refused("malformed_request", provider, { error: reading.why });
  const slot = ports.takeRequestSlot();
  if (slot !== undefined) return refused(slot, provider);
  const { request } = reading;
  const call = {
    provider,
    request,
    forwardBody: reading.forwardBody,
    usageInjected: reading.usageInjected,
  };
  if (request.api === "other") {
    // A POST we cannot read is a call we cannot price.
    if (FREE_METHODS.has(req.method)) return { admitted: true, call };
    return refused("model_price_unknown", provider, { error: "unrecognised API path" });
  }
  const billing = await reserveFor(ports, provider, request);
  if ("reason" in billing) return { admitted: false, refusal: billing };
  const { forwardBody, usageInjected } = reading;
  return { admitted: true, call: { provider, request, forwardBody, usageInjected, billing } };
}

export function hostMatchesTunnel(host: string | undefined, tunnel: TunnelContext): boolean {
  const declared = (host ?? "").toLowerCase().replace(/\.$/, "");
  return tunnel.port === 443
    ? declared === tunnel.host || declared === `${tunnel.host}:443`
    : declared === `${tunnel.host}:${tunnel.port}`;
}

/** Checks model and price, and reserves the call's worst-case cost. */
async function reserveFor(
  ports: AdmitPorts,
  provider: ProviderId,
  request: LlmRequest,
): Promise<Billing | Refusal> {
  const model = request.model;
  if (model === undefined)
    return { reason: "malformed_request", provider, error: "no model in the request" };
  const allowed = decideModel(ports.policy, model);
  if (allowed.decision === "deny") return { reason: allowed.reason, provider, metered: { model } };
  // A server tool whose cost cannot be bounded makes the call's price unknown.
  const tools = request.serverTools ?? { ok: true, nanoPerCall: {}, maxCalls: {} };
  if (!tools.ok) {
    return { reason: "model_price_unknown", provider, error: tools.why, metered: { model } };
  }
  if (request.unpricedTier !== undefined) {
    const error = request.unpricedTier;
    return { reason: "model_price_unknown", provider, error, metered: { model } };
  }
  await ports.prices.ready();
  const at = ports.now();
  const modelPricing = ports.prices.pricing(provider, model, at);
  if (modelPricing === undefined) {
    return { reason: "model_price_unknown", provider, metered: { model } };
  }
  const pricing = withToolPrices(modelPricing, tools);
  const inputTokens = inputBound(request, tools.modelTurns, () =>
    ports.prices.contextWindow(provider, model, at),
  );
  if (inputTokens === undefined) {
    return {
      reason: "model_price_unknown",
      provider,
      error: "input cannot be bounded",
      metered: { model },
    };
  }
  const reservedNano = reservationNanoUsd(pricing, {
    inputTokens,
    maxOutputTokens: request.maxOutputTokens,
    n: request.n,
    mediaInput: request.hasImages || request.externalInput,
    toolCalls: tools.maxCalls,
    extraOutputTokens: request.predictionTokens,
    outputTurns: outputTurns(request, tools.modelTurns),
  });
  let reserved;
  try {
    reserved = await ports.ledger.reserve(reservedNano, { provider, model });
  } catch (err) {
    // A ledger we cannot write is a budget we cannot hold: deny (fail closed).
    return {
      reason: "malformed_request",
      provider,
      error: `ledger: ${messageOf(err)}`,
      metered: { model },
    };
  }
  if (!reserved.ok) {
    return {
      reason: "budget_exceeded",
      provider,
      budgetExhausted: true,
      metered: {
        model,
        cost_usd: "0",
        spent_usd: formatNanoUsd(reserved.state.spentNano),
        budget_usd: formatNanoUsd(ports.budgetNano),
      },
    };
  }
  return { model, pricing, reservationId: reserved.id, reservedNano };
}

/**
 * An upper bound on the input tokens of a call, undefined when none can be computed. Content
 * stored elsewhere (and audio, video, PDFs) costs tokens the body's bytes do not bound: the
 * model's context window is then the only honest bound. Images get a fixed per-image allowance
 * on top of their bytes. A server tool makes the provider run the model once more after each
 * call, each turn billed for the whole context again: the window × the most turns.
 */
function inputBound(
  request: LlmRequest,
  modelTurns: number | undefined,
  contextWindow: () => number | undefined,
): number | undefined {
  if (!request.externalInput && modelTurns === undefined) {
    return inputTokenBound(request.inputBytes, request.imageCount);
  }
  const window = contextWindow();
  if (window === undefined) return undefined;
  return Math.min(window * (modelTurns ?? 1), Number.MAX_SAFE_INTEGER);
}

/**
 * How many times the output limit can be spent. Each turn of a server-tool loop emits output
 * (the tool call, its reasoning, the answer), and a per-completion limit (`max_tokens`,
 * `max_completion_tokens`, or the model's own maximum when the request sets none) is not
 * documented to cap the loop as a whole, so it counts once per turn. The Responses API's
 * `max_output_tokens` is documented as the bound of the whole response, "including visible
 * output tokens and reasoning tokens", across its tool calls: when the request sets it, once.
 */
function outputTurns(request: LlmRequest, modelTurns: number | undefined): number {
  if (modelTurns === undefined) return 1;
  if (request.api === "responses" && request.maxOutputTokens !== undefined) return 1;
  return modelTurns;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
