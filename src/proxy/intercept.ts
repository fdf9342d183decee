import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { TLSSocket, type SecureContext } from "node:tls";
import type { Duplex } from "node:stream";

/** What an intercepted request knows of the tunnel it came through. */
export interface TunnelContext {
  /** The CONNECT host: the only host requests in this tunnel may name. */
  readonly host: string;
  readonly port: number;
  /** The address the gatekeeper checked; the only address we dial. */
  readonly address: string;
}

export type InnerHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  tunnel: TunnelContext,
) => void;

const tunnels = new WeakMap<object, TunnelContext>();

/**
 * One HTTP parser for every intercepted tunnel: each decrypted socket is handed to it as a
 * connection, and requests find their tunnel through their socket.
 */
function makeInnerServer(handler: InnerHandler) {
  const inner = createServer({
    maxHeaderSize: 16 * 1024,
    requireHostHeader: true,
    keepAliveTimeout: 30_000,
  });
  inner.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const tunnel = tunnels.get(req.socket);
    if (tunnel === undefined) {
      res.destroy();
      return;
    }
    handler(req, res, tunnel);
  });
  return inner;
}

export interface Interception {
  /** Terminates TLS on an accepted CONNECT and serves its requests through the handler. */
  accept(
    client: Duplex,
    tunnel: TunnelContext,
    secureContext: SecureContext,
    onRefused: (why: string) => void,
  ): TLSSocket;
}

export function createInterception(
  handler: InnerHandler,
): Interception & { server: ReturnType<typeof createServer> } {
  const server = makeInnerServer(handler);
  server.on("clientError", (_err, socket: Duplex) => socket.destroy());
  return {
    server,
    accept(client, tunnel, secureContext, onRefused) {
      let refused = false;
      let secured = false;
      const refuse = (why: string) => {
        if (refused) return;
        refused = true;
        onRefused(why);
        tls.destroy();
      };
      const tls = new TLSSocket(client, {
        isServer: true,
        secureContext,
        ALPNProtocols: ["http/1.1"],
        // The name the client asks for must be the host it asked us to CONNECT to.
        SNICallback: (servername, done) => {
          if (servername.toLowerCase().replace(/\.$/, "") !== tunnel.host) {
            refuse(`SNI ${servername} differs from the CONNECT host`);
            done(new Error("SNI mismatch"), undefined);
            return;
          }
          done(null, secureContext);
        },
      });
      tls.on("secure", () => {
        secured = true;
        if (tls.servername === false || tls.servername === "") {
          refuse("no SNI in the client hello");
          return;
        }
        tunnels.set(tls, tunnel);
        server.emit("connection", tls);
      });
      tls.on("error", (err: Error) => {
        if (secured) tls.destroy();
        else refuse(`TLS: ${err.message}`);
      });
      return tls;
    },
  };
}
