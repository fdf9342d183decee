import type { IncomingMessage, ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";

import { decisionRecord, type RequestLine, type RunIdentity } from "../audit/index.js";
import type { CompiledPolicy, DenyReason } from "../policy/index.js";
import { DENY_HEADERS } from "./deny-response.js";
import { denyBody } from "./deny-body.js";
import { dropHeaders, forwardHeaders } from "./headers.js";
import { checkInnerRequest, type InnerChecked } from "./inner-check.js";
import { tunnelRequestLine, type InnerHandler, type TunnelContext } from "./intercept.js";
import { hostMatchesTunnel } from "./metered-admit.js";
import type { AuditSink, SecretSource } from "./ports.js";
import { MAX_CHECKED_BODY_BYTES, maskHeaderValues } from "./secret-check.js";
import { settledWithin } from "./settled-within.js";
import { isCertificateError, lazyUpstreamAgent } from "./upstream-tls.js";

export interface InspectOptions {
  readonly identity: RunIdentity;
  readonly policy: CompiledPolicy;
  readonly audit: AuditSink;
  /** Why the run is stopping, or undefined while it runs. */
  readonly stopReason: () => DenyReason | undefined;
  /** Takes one request from the run's limits; the reason when none is left. */
  readonly takeRequestSlot: () => DenyReason | undefined;
  /** PEM roots the proxy trusts as a TLS client. */
  readonly upstreamRoots: readonly string[];
  readonly secrets?: SecretSource | undefined;
}

type Allowed = Extract<InnerChecked, { ok: true }>;

/** One request inside an inspected tunnel, and the one way to record its end. */
class Inspected {
  private readonly started = performance.now();
  private recorded = false;
  bytesIn = 0;
  bytesOut = 0;
  secret: string | undefined;

  constructor(
    readonly options: InspectOptions,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly tunnel: TunnelContext,
    readonly line: RequestLine,
  ) {}

  record(deny: DenyReason | undefined, status: number, error?: string, secret?: string): void {
    if (this.recorded) return;
    this.recorded = true;
    const end = {
      status,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs: Math.round(performance.now() - this.started),
      error,
      secret: secret ?? this.secret,
    };
    this.options.audit.append(decisionRecord(this.options.identity, this.line, deny, end));
  }

  /** The contract's 403 and its line; nothing went upstream. */
  refuse(reason: DenyReason, error?: string, secret?: string): void {
    const body = denyBody(this.options.identity, reason);
    this.res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
    this.res.end(body);
    this.req.resume();
    this.record(reason, 403, error, secret);
  }
}

/** Why a request may not go on before its body is read, or undefined. */
function earlyRefusal(options: InspectOptions, x: Inspected): DenyReason | undefined {
  if (!hostMatchesTunnel(x.req.headers.host, x.tunnel)) return "malformed_request";
  return options.stopReason();
}

function upstreamHeaders(x: Inspected, sent: Allowed): string[] {
  const drop = [
    "content-length",
    "host",
    ...(sent.secrets === undefined ? [] : ["accept-encoding"]),
  ];
  const headers = dropHeaders(sent.headers, drop);
  headers.push("host", x.req.headers.host ?? x.tunnel.host);
  // Secret values are masked in the answer: it must come uncompressed to be read.
  if (sent.secrets !== undefined) headers.push("accept-encoding", "identity");
  const framed =
    x.req.headers["content-length"] !== undefined ||
    x.req.headers["transfer-encoding"] !== undefined;
  if (framed || sent.body.length > 0) headers.push("content-length", String(sent.body.length));
  return headers;
}

/** Sends a checked request over verified TLS to the address judged, and streams the answer back. */
function forwardInspected(
  x: Inspected,
  sent: Allowed,
  agent: ReturnType<typeof lazyUpstreamAgent>,
) {
  return new Promise<void>((resolve) => {
    const { res, tunnel } = x;
    const upstream = httpsRequest({
      host: tunnel.address,
      port: tunnel.port,
      servername: tunnel.host,
      method: x.req.method,
      path: sent.path,
      headers: upstreamHeaders(x, sent),
      agent: agent.agent(),
      setHost: false,
    });
    const done = (deny: DenyReason | undefined, status: number, error?: string) => {
      x.record(deny, status, error);
      resolve();
    };
    res.on("close", () => {
      if (res.writableFinished) return;
      upstream.destroy();
      done(undefined, res.headersSent ? res.statusCode : 0, "client closed before the end");
    });
    upstream.on("response", (up: IncomingMessage) => {
      const secrets = sent.secrets;
      const out = forwardHeaders(up.rawHeaders, false);
      res.writeHead(
        up.statusCode ?? 502,
        up.statusMessage,
        secrets === undefined ? out : maskHeaderValues(out, secrets.snapshot),
      );
      up.on("data", (chunk: Buffer) => {
        x.bytesIn += chunk.length;
        res.write(secrets?.scrubber.push(chunk) ?? chunk);
      });
      up.on("end", () => {
        res.end(secrets?.scrubber.end());
        done(undefined, up.statusCode ?? 502);
      });
      up.on("error", (err) => {
        res.destroy();
        done(undefined, up.statusCode ?? 502, err.message);
      });
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (!res.headersSent && isCertificateError(err)) {
        x.refuse("malformed_request", `upstream TLS verification failed: ${err.message}`);
        resolve();
        return;
      }
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { "content-type": "text/plain", "x-vallignus-decision": "allow" });
        res.end(`vallignus: upstream ${tunnel.host} failed: ${err.message}\n`);
      } else res.destroy();
      done(undefined, 502, err.message);
    });
    x.bytesOut = sent.body.length;
    upstream.end(sent.body);
  });
}

/**
 * Serves the requests inside an inspected tunnel (a host listed in `--inspect-hosts`, or one
 * with request rules), each judged on its own before any byte of it goes upstream: its Host,
 * the run's state, the request rules, the run's secrets, the request limit. Then it goes over
 * verified TLS to the address the gatekeeper checked, and gets its own audit line.
 */
export function createInspectedHandler(
  options: InspectOptions,
): InnerHandler & { finished(timeoutMs: number): Promise<void> } {
  const agent = lazyUpstreamAgent(options.upstreamRoots);
  const calls = new Set<Promise<void>>();
  const serve = async (x: Inspected): Promise<void> => {
    const early = earlyRefusal(options, x);
    if (early !== undefined) {
      x.refuse(
        early,
        early === "malformed_request" ? "Host differs from the tunnel's host" : undefined,
      );
      return;
    }
    const headers = forwardHeaders(x.req.rawHeaders, false);
    const checked = await checkInnerRequest(
      options,
      x.req,
      x.tunnel,
      headers,
      MAX_CHECKED_BODY_BYTES,
    );
    if (!checked.ok) {
      x.refuse(checked.denial.reason, checked.denial.error, checked.denial.secret);
      return;
    }
    const slot = options.takeRequestSlot();
    if (slot !== undefined) {
      x.refuse(slot);
      return;
    }
    x.secret = checked.secret;
    await forwardInspected(x, checked, agent);
  };
  const handler = (req: IncomingMessage, res: ServerResponse, tunnel: TunnelContext) => {
    const line = tunnelRequestLine(req, tunnel);
    const x = new Inspected(options, req, res, tunnel, line);
    const call = serve(x).catch((err: unknown) => {
      const error = `internal error: ${err instanceof Error ? err.message : String(err)}`;
      if (!res.headersSent && !res.destroyed) x.refuse("malformed_request", error);
      else {
        res.destroy();
        x.record(undefined, res.statusCode, error);
      }
    });
    calls.add(call);
    void call.finally(() => calls.delete(call));
  };
  const finished = async (timeoutMs: number): Promise<void> => {
    await settledWithin(calls, timeoutMs);
    agent.close();
  };
  return Object.assign(handler, { finished });
}
