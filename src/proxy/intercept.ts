import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { TLSSocket, type SecureContext } from "node:tls";
import type { Duplex } from "node:stream";

import { redactPath, type RequestLine } from "../audit/index.js";
import { DENY_HEADERS, denyResponseHead } from "./deny-response.js";
import { connectionNamesProtected } from "./headers.js";
import { innerTarget } from "./request-parse.js";

/** What an intercepted request knows of the tunnel it came through. */
export interface TunnelContext {
  /** The CONNECT host: the only host requests in this tunnel may name. */
  readonly host: string;
  readonly port: number;
  /** The address the gatekeeper checked; the only address we dial. */
  readonly address: string;
}

/** The audit line's request fields of a request inside a tunnel (its query values redacted). */
export function tunnelRequestLine(req: IncomingMessage, tunnel: TunnelContext): RequestLine {
  return {
    method: req.method ?? "",
    scheme: "https",
    host: tunnel.host,
    port: tunnel.port,
    path: redactPath(req.url ?? "/"),
  };
}

export type InnerHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  tunnel: TunnelContext,
) => void;

/** How one tunnel records what is refused in it before the handler sees a request. */
export interface TunnelRefusals {
  /** The TLS handshake was refused (SNI): the CONNECT's own record says so. */
  handshake(why: string): void;
  /** A request in the tunnel was refused: records it, and gives the deny JSON to answer with. */
  request(method: string, path: string, why: string): string;
}

interface Tunnel {
  readonly context: TunnelContext;
  readonly refusals: TunnelRefusals;
}

const tunnels = new WeakMap<object, Tunnel>();
/** Decrypted connections with a request in progress: that request's record covers its end. */
const busy = new WeakSet<Duplex>();

/** A request refused before the handler: the contract's 403, and its own audit line. */
function refuseRequest(tunnel: Tunnel, req: IncomingMessage, res: ServerResponse, why: string) {
  const body = tunnel.refusals.request(
    req.method ?? "",
    innerTarget(req.url ?? "", tunnel.context).path,
    why,
  );
  res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
  req.resume();
}

/** Why a request may not reach the handler as it is, after putting its target in origin-form. */
function checkRequest(req: IncomingMessage, tunnel: Tunnel): string | undefined {
  const target = innerTarget(req.url ?? "", tunnel.context);
  if (target.why !== undefined) return target.why;
  const named = connectionNamesProtected(req.rawHeaders);
  if (named !== undefined) return `Connection names ${named}`;
  // The handler and the provider see the path alone; the authority was just checked.
  req.url = target.path;
  return undefined;
}

/**
 * A request on a raw decrypted socket that is refused there: one the parser rejected (CL+TE,
 * obs-fold, huge headers…), a CONNECT, or an upgrade (WebSocket traffic cannot be metered).
 */
function refuseOnSocket(socket: Duplex, method: string, path: string, why: string): void {
  const tunnel = tunnels.get(socket);
  if (tunnel === undefined || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = tunnel.refusals.request(method, path, why);
  socket.end(denyResponseHead(body) + body);
}

/**
 * One HTTP parser for every intercepted tunnel: each decrypted socket is handed to it as a
 * connection, and requests find their tunnel through their socket. Whatever it cannot pass to
 * the handler is answered with the contract's 403 and audited, as on the proxy's own port.
 */
function makeInnerServer(handler: InnerHandler): Server {
  const inner = createServer({
    maxHeaderSize: 16 * 1024,
    // Not Node's own 400 (unaudited): a missing Host is refused by admission, with a 403 and a line.
    requireHostHeader: false,
    keepAliveTimeout: 30_000,
  });
  inner.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const tunnel = tunnels.get(req.socket);
    if (tunnel === undefined) {
      res.destroy();
      return;
    }
    const socket = req.socket;
    busy.add(socket);
    res.once("close", () => busy.delete(socket));
    const why = checkRequest(req, tunnel);
    if (why === undefined) handler(req, res, tunnel.context);
    else refuseRequest(tunnel, req, res, why);
  });
  inner.on("connect", (req: IncomingMessage, socket: Duplex) => {
    refuseOnSocket(socket, "CONNECT", "", "CONNECT inside an intercepted tunnel");
  });
  inner.on("upgrade", (req: IncomingMessage, socket: Duplex) => {
    const tunnel = tunnels.get(socket);
    const path = tunnel === undefined ? "" : innerTarget(req.url ?? "", tunnel.context).path;
    refuseOnSocket(socket, req.method ?? "", path, "upgrade inside a metered tunnel");
  });
  inner.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A client that hangs up mid-request ends that request, which records it: not a second one.
    const hungUp =
      err.code === "ECONNRESET" || (err.code === "HPE_INVALID_EOF_STATE" && busy.has(socket));
    if (hungUp) socket.destroy();
    else refuseOnSocket(socket, "", "", err.code ?? err.message);
  });
  return inner;
}

export interface Interception {
  /** Terminates TLS on an accepted CONNECT and serves its requests through the handler. */
  accept(
    client: Duplex,
    tunnel: TunnelContext,
    secureContext: SecureContext,
    refusals: TunnelRefusals,
  ): TLSSocket;
}

export function createInterception(handler: InnerHandler): Interception & { server: Server } {
  const server = makeInnerServer(handler);
  return {
    server,
    accept(client, tunnel, secureContext, refusals) {
      let refused = false;
      let secured = false;
      const refuse = (why: string) => {
        if (refused) return;
        refused = true;
        refusals.handshake(why);
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
        tunnels.set(tls, { context: tunnel, refusals });
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
