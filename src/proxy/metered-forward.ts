import type { Agent as HttpsAgent } from "node:https";
import { request as httpsRequest } from "node:https";
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";

import { createUsageReader, type Usage, type UsageReader } from "../metering/index.js";
import type { Scrubber, SecretSnapshot } from "../secrets/index.js";
import { dropHeaders, forwardHeaders } from "./headers.js";
import { maskHeaderValues } from "./secret-check.js";
import { isCertificateError } from "./upstream-tls.js";
import type { TunnelContext } from "./intercept.js";
import type { AdmittedCall } from "./metered-admit.js";

/** How forwarding ended: the call's end, or an upstream we would not trust (nothing was sent). */
export type Forwarded =
  | {
      readonly untrusted: false;
      readonly sent: boolean;
      readonly usage: Usage | undefined;
      readonly complete: boolean;
      readonly status: number;
      readonly bytesIn: number;
      readonly error?: string;
    }
  | { readonly untrusted: true; readonly error: string };

/** What goes upstream of a request: its target and headers once checked, stand-ins swapped. */
export interface Outgoing {
  readonly path: string;
  /** As forwardHeaders gives them (hop-by-hop headers gone). */
  readonly headers: readonly string[];
  /** Set when the run holds secrets: their values are masked in the answer. */
  readonly secrets: { snapshot: SecretSnapshot; scrubber: Scrubber } | undefined;
}

function upstreamHeaders(
  req: IncomingMessage,
  tunnel: TunnelContext,
  sent: Outgoing,
  bodyLength: number,
): string[] {
  const headers = dropHeaders(sent.headers, ["content-length", "accept-encoding", "host"]);
  // Usage must be readable, so the response comes uncompressed.
  headers.push(
    "host",
    req.headers.host ?? tunnel.host,
    "accept-encoding",
    "identity",
    "content-length",
    String(bodyLength),
  );
  return headers;
}

/** One call upstream, from the request's first byte to its end, which it resolves once. */
class UpstreamCall {
  /** The TLS handshake with the provider completed: the request may have reached it. */
  sent = false;
  private ended = false;
  private bytesIn = 0;
  private status = 502;
  private reader: UsageReader | undefined;

  constructor(
    private readonly call: AdmittedCall,
    private readonly res: ServerResponse,
    private readonly tunnel: TunnelContext,
    private readonly outgoing: Outgoing,
    private readonly resolve: (forwarded: Forwarded) => void,
  ) {}

  end(usage: Usage | undefined, complete: boolean, error?: string): void {
    if (this.ended) return;
    this.ended = true;
    const { sent, status, bytesIn } = this;
    this.resolve({
      untrusted: false,
      sent,
      usage,
      complete,
      status,
      bytesIn,
      ...(error === undefined ? {} : { error }),
    });
  }

  /** The client left (or the run dropped its connection) before the answer was complete. */
  clientClosed(upstream: ClientRequest): void {
    if (this.res.writableFinished) return;
    upstream.destroy();
    this.end(this.reader?.usage(), false, "client closed before the end");
  }

  /** Streams the answer to the client through the usage reader. */
  response(up: IncomingMessage): void {
    const { res, call } = this;
    this.status = up.statusCode ?? 502;
    const reader = createUsageReader(call.request, call.usageInjected, up.headers["content-type"]);
    this.reader = reader;
    // Dropping the injected usage event changes the length: let the body be chunked.
    const out = dropHeaders(
      forwardHeaders(up.rawHeaders, false),
      call.usageInjected ? ["content-length"] : [],
    );
    const secrets = this.outgoing.secrets;
    const scrub = (bytes: Buffer) => secrets?.scrubber.push(bytes) ?? bytes;
    const headers = secrets === undefined ? out : maskHeaderValues(out, secrets.snapshot);
    res.writeHead(this.status, up.statusMessage, headers);
    up.on("data", (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      const passOn = scrub(reader.push(chunk));
      if (passOn.length > 0) res.write(passOn);
    });
    up.on("end", () => {
      const last = scrub(reader.end());
      res.end(secrets === undefined ? last : Buffer.concat([last, secrets.scrubber.end()]));
      this.end(reader.usage(), reader.complete());
    });
    up.on("error", (err) => {
      res.destroy();
      this.end(reader.usage(), false, err.message);
    });
  }

  failed(err: NodeJS.ErrnoException): void {
    const { res } = this;
    // An upstream we cannot verify is refused, never downgraded; nothing was sent.
    if (!res.headersSent && isCertificateError(err) && !this.ended) {
      this.ended = true;
      this.resolve({ untrusted: true, error: `upstream TLS verification failed: ${err.message}` });
      return;
    }
    if (!res.headersSent && !res.destroyed) answerBadGateway(res, this.tunnel, err);
    this.status = 502;
    this.end(undefined, false, err.message);
  }
}

/** A client that left while the call was admitted (a run that ended, say) gets nothing sent. */
const CLIENT_GONE: Forwarded = {
  untrusted: false,
  sent: false,
  usage: undefined,
  complete: false,
  status: 0,
  bytesIn: 0,
  error: "client closed before the end",
};

/**
 * The middle step of a metered call: sends it over verified TLS to the address the gatekeeper
 * checked, streams the answer back through the usage reader (which hides an injected usage
 * event), and resolves once, when the call ends however it ends: completed, cut by the provider,
 * or left by the client (a run that ends drops its connections, which ends its calls too).
 */
export function forward(
  call: AdmittedCall,
  req: IncomingMessage,
  res: ServerResponse,
  tunnel: TunnelContext,
  agent: HttpsAgent,
  sent: Outgoing,
): Promise<Forwarded> {
  if (res.destroyed) return Promise.resolve(CLIENT_GONE);
  return new Promise((resolve) => {
    const state = new UpstreamCall(call, res, tunnel, sent, resolve);
    const upstream = httpsRequest({
      host: tunnel.address,
      port: tunnel.port,
      servername: tunnel.host,
      method: req.method,
      path: sent.path,
      headers: upstreamHeaders(req, tunnel, sent, call.forwardBody.length),
      agent,
      setHost: false,
    });
    upstream.on("socket", (socket) => {
      // A kept-alive socket is connected already; only a new one waits for its handshake.
      if (socket.connecting) socket.once("secureConnect", () => (state.sent = true));
      else state.sent = true;
    });
    res.on("close", () => state.clientClosed(upstream));
    upstream.on("response", (up: IncomingMessage) => state.response(up));
    upstream.on("error", (err: NodeJS.ErrnoException) => state.failed(err));
    upstream.end(call.forwardBody);
  });
}

function answerBadGateway(res: ServerResponse, tunnel: TunnelContext, err: Error): void {
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
