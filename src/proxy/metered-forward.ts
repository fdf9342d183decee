import type { Agent as HttpsAgent } from "node:https";
import { request as httpsRequest } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";

import { createUsageReader, type Usage, type UsageReader } from "../metering/index.js";
import { dropHeaders, forwardHeaders } from "./headers.js";
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

/** Errors of certificate verification, as Node's TLS reports them. */
function isCertificateError(err: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/.test(err.code ?? "");
}

function upstreamHeaders(
  req: IncomingMessage,
  tunnel: TunnelContext,
  bodyLength: number,
): string[] {
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
    String(bodyLength),
  );
  return headers;
}

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
): Promise<Forwarded> {
  // A client that left while the call was admitted (a run that ended, say) gets nothing sent.
  if (res.destroyed) {
    return Promise.resolve({
      untrusted: false,
      sent: false,
      usage: undefined,
      complete: false,
      status: 0,
      bytesIn: 0,
      error: "client closed before the end",
    });
  }
  return new Promise((resolve) => {
    let sent = false;
    let ended = false;
    let bytesIn = 0;
    let status = 502;
    let reader: UsageReader | undefined;
    const end = (usage: Usage | undefined, complete: boolean, error?: string) => {
      if (ended) return;
      ended = true;
      resolve({
        untrusted: false,
        sent,
        usage,
        complete,
        status,
        bytesIn,
        ...(error === undefined ? {} : { error }),
      });
    };
    const upstream = httpsRequest({
      host: tunnel.address,
      port: tunnel.port,
      servername: tunnel.host,
      method: req.method,
      path: req.url ?? "/",
      headers: upstreamHeaders(req, tunnel, call.forwardBody.length),
      agent,
      setHost: false,
    });
    upstream.on("socket", (socket) => {
      // A kept-alive socket is connected already; only a new one waits for its handshake.
      if (socket.connecting) socket.once("secureConnect", () => (sent = true));
      else sent = true;
    });
    res.on("close", () => {
      if (res.writableFinished) return;
      upstream.destroy();
      end(reader?.usage(), false, "client closed before the end");
    });
    upstream.on("response", (up: IncomingMessage) => {
      status = up.statusCode ?? 502;
      const usageReader = createUsageReader(
        call.request,
        call.usageInjected,
        up.headers["content-type"],
      );
      reader = usageReader;
      // Dropping the injected usage event changes the length: let the body be chunked.
      const out = dropHeaders(
        forwardHeaders(up.rawHeaders, false),
        call.usageInjected ? ["content-length"] : [],
      );
      res.writeHead(status, up.statusMessage, out);
      up.on("data", (chunk: Buffer) => {
        bytesIn += chunk.length;
        const passOn = usageReader.push(chunk);
        if (passOn.length > 0) res.write(passOn);
      });
      up.on("end", () => {
        res.end(usageReader.end());
        end(usageReader.usage(), usageReader.complete());
      });
      up.on("error", (err) => {
        res.destroy();
        end(usageReader.usage(), false, err.message);
      });
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      // An upstream we cannot verify is refused, never downgraded; nothing was sent.
      if (!res.headersSent && isCertificateError(err) && !ended) {
        ended = true;
        resolve({ untrusted: true, error: `upstream TLS verification failed: ${err.message}` });
        return;
      }
      if (!res.headersSent && !res.destroyed) answerBadGateway(res, tunnel, err);
      status = 502;
      end(undefined, false, err.message);
    });
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
