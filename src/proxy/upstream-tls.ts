import { Agent as HttpsAgent } from "node:https";
import { createSecureContext } from "node:tls";

/** Errors of certificate verification, as Node's TLS reports them. */
export function isCertificateError(err: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/.test(err.code ?? "");
}

/**
 * The TLS agent the proxy uses as a client of intercepted hosts, made on first use (a run that
 * makes no such call keeps the ~140 parsed roots out of memory). One secure context for the
 * trusted roots: passing `ca` per request instead would make Node build the pool key from
 * ~200 KB of PEM, and reparse it, on every request.
 */
export function lazyUpstreamAgent(roots: readonly string[]): {
  agent(): HttpsAgent;
  close(): void;
} {
  let made: HttpsAgent | undefined;
  return {
    agent: () =>
      (made ??= new HttpsAgent({
        keepAlive: true,
        maxSockets: 64,
        secureContext: createSecureContext({ ca: [...roots] }),
      })),
    close: () => made?.destroy(),
  };
}
