import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { chmodSync } from "node:fs";
import {
  connect as netConnect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContext } from "node:tls";
import type { Dispatcher } from "undici";

import type { DenyReason } from "../policy/index.js";
import { parseAuthority, type HostKind } from "./address.js";
import { DENY_HEADERS, denyResponseHead } from "./deny-response.js";
import { forwardHeaders, headerValues } from "./headers.js";
import { createInterception, type InnerHandler } from "./intercept.js";

/** What the proxy read from one request, before anything goes upstream. */
export interface RequestFacts {
  readonly kind: "http" | "connect" | "upgrade";
  readonly method: string;
  readonly scheme: "http" | "https";
  readonly host: HostKind;
  readonly port: number;
  /** Raw path and query; redaction is the audit log's job. "" for CONNECT. */
  readonly path: string;
}

export type Judgement =
  | {
      readonly allow: true;
      readonly address: string;
      /** Set for metered hosts: terminate TLS with this context and meter each request. */
      readonly intercept?: SecureContext;
    }
  | { readonly allow: false; readonly reason: DenyReason };

/** A finished request, allowed or denied, for the audit log. */
export interface Outcome {
  readonly facts: RequestFacts | undefined;
  /** The raw target text when the request could not be parsed. */
  readonly rawTarget: string;
  readonly method: string;
  readonly judgement: Judgement;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly error?: string;
}

/**
 * The proxy decides nothing itself: it reads requests, asks the gatekeeper, and carries out
 * the answer. The gatekeeper owns policy, resolution, limits and the audit log.
 */
export interface Gatekeeper {
  judge(facts: RequestFacts): Promise<Judgement>;
  denyBody(reason: DenyReason): string;
  record(outcome: Outcome): void;
}

export interface ProxyServer {
  readonly port: number;
  readonly server: Server;
  /** Closes the listener and every open connection and tunnel. */
  close(): Promise<void>;
  /** Destroys open tunnels and upstream sockets (a run that was stopped). */
  dropConnections(): void;
}

/** Headers a proxy must not pass on, beyond the hop-by-hop ones; we answered Expect ourselves. */
const REQUEST_DROPS: ReadonlySet<string> = new Set(["expect"]);

/**
 * Plain-HTTP requests go upstream through undici's pools rather than http.request: its dispatcher
 * API hands over raw headers and body chunks at about half the per-request CPU (measured in
 * bench/). Loaded on the first plain-HTTP request, so runs that only open tunnels don't carry it.
 */
const loadUndici = (() => {
  let loading: ReturnType<typeof importUndici> | undefined;
  return () => (loading ??= importUndici());
})();
const importUndici = () => import("undici");

/** A request body larger than this is refused as malformed: agents don't upload gigabytes. */
const MAX_BODY_BYTES = 1024 ** 3;

function hostText(host: HostKind): string {
  if (host.kind === "ip") return host.family === 6 ? `[${host.address}]` : host.address;
  return host.kind === "name" ? host.name : "";
}

/** Bytes a tunnel holds for a slow reader before it stops reading the other side. */
const RELAY_BUFFER_BYTES = 1024 * 1024;
/** Reads at least this big are bulk transfer (libuv reads up to 64 KiB at a time). */
const CORK_FROM_BYTES = 16 * 1024;

/**
 * Copies a tunnel one way. Not `pipe()`: bulk writes are corked until the end of the event-loop
 * turn, so the chunks libuv reads in one turn (up to 32 × 64 KiB) leave in one writev, and reading
 * pauses only once RELAY_BUFFER_BYTES wait, not at the 16 KiB stream default. Fewer, larger
 * writes wake the reader on the other side less often: ~12% more tunnel throughput on loopback.
 * Small reads are written at once: corking them costs request/response traffic a third of its rate.
 */
function relay(from: Duplex, to: Duplex, count: (bytes: number) => void): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    to.uncork();
  };
  const resume = () => from.resume();
  from.on("data", (chunk: Buffer) => {
    count(chunk.length);
    // Only a bulk read is held back: a small one (a request, an answer, an SSE event) goes out
    // at once, unless bulk reads of this turn are still waiting (order is kept either way).
    if (!corked && chunk.length >= CORK_FROM_BYTES) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    to.write(chunk);
    if (to.writableLength > RELAY_BUFFER_BYTES) {
      from.pause();
      to.once("drain", resume);
    }
  });
  from.once("end", () => to.end());
}

type Parsed = { ok: true; facts: RequestFacts } | { ok: false; why: string };

/** Reads an absolute-form `http://` request target; the Host header must agree with it. */
function parseHttpRequest(req: IncomingMessage, kind: "http" | "upgrade"): Parsed {
  const url = req.url ?? "";
  const method = req.method ?? "";
  const match = /^http:\/\/([^/?#]*)([^#]*)/i.exec(url);
  if (match === null) return { ok: false, why: "not an absolute http:// URL" };
  const authority = parseAuthority(match[1] ?? "", 80);
  if ("invalid" in authority) return { ok: false, why: authority.invalid };
  if (authority.host.kind === "invalid") return { ok: false, why: authority.host.why };
  const path = match[2] === "" || match[2] === undefined ? "/" : match[2];
  if (!path.startsWith("/") && !path.startsWith("?")) return { ok: false, why: "bad path" };
  const hosts = headerValues(req.rawHeaders, "host");
  if (hosts.length > 1) return { ok: false, why: "more than one Host header" };
  if (hosts.length === 1) {
    const declared = parseAuthority(hosts[0] ?? "", 80);
    if (
      "invalid" in declared ||
      declared.port !== authority.port ||
      hostText(declared.host) !== hostText(authority.host) ||
      hostText(declared.host) === ""
    ) {
      return { ok: false, why: "Host header disagrees with the request target" };
    }
  }
  const length = headerValues(req.rawHeaders, "content-length");
  if (length.length > 1) return { ok: false, why: "more than one Content-Length" };
  if (length.length === 1 && Number(length[0]) > MAX_BODY_BYTES)
    return { ok: false, why: "body too large" };
  return {
    ok: true,
    facts: {
      kind,
      method,
      scheme: "http",
      host: authority.host,
      port: authority.port,
      path: path.startsWith("?") ? `/${path}` : path,
    },
  };
}

function parseConnect(req: IncomingMessage): Parsed {
  const authority = parseAuthority(req.url ?? "", undefined);
  if ("invalid" in authority) return { ok: false, why: authority.invalid };
  if (authority.host.kind === "invalid") return { ok: false, why: authority.host.why };
  return {
    ok: true,
    facts: {
      kind: "connect",
      method: "CONNECT",
      scheme: "https",
      host: authority.host,
      port: authority.port,
      path: "",
    },
  };
}

export interface ProxyOptions {
  readonly host?: string;
  readonly port?: number | undefined;
  readonly gatekeeper: Gatekeeper;
  /** Serves requests inside intercepted (metered) tunnels. */
  readonly innerHandler?: InnerHandler;
  /** Also accept connections on this unix socket (mode 0600): the way in from `--isolate`. */
  readonly unixSocket?: string | undefined;
}

interface InFlight {
  bytesIn: number;
  bytesOut: number;
  /** Set once the gatekeeper has answered. */
  judgement: Judgement | undefined;
  finish(judgement: Judgement, status: number, error?: string): void;
}

export async function startProxy(options: ProxyOptions): Promise<ProxyServer> {
  const { gatekeeper } = options;
  const interception =
    options.innerHandler === undefined ? undefined : createInterception(options.innerHandler);
  const pools = new Map<string, Promise<Dispatcher>>();
  /** One keep-alive pool per upstream address and port, made on first use. */
  const upstreamPool = (address: string, port: number): Promise<Dispatcher> => {
    const key = `${address} ${port}`;
    let pool = pools.get(key);
    if (pool === undefined) {
      const origin = address.includes(":")
        ? `http://[${address}]:${port}`
        : `http://${address}:${port}`;
      pool = loadUndici().then(
        ({ Pool }) =>
          new Pool(origin, {
            connections: 256,
            // The agent decides how long a request may take, not the firewall.
            headersTimeout: 0,
            bodyTimeout: 0,
          }),
      );
      pools.set(key, pool);
    }
    return pool;
  };
  const open = new Set<Duplex>();
  const inFlight = new Set<InFlight>();
  let closing = false;
  const track = (socket: Duplex) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  };

  /** Every request gets exactly one audit record, however it ends. */
  function begin(rawTarget: string, method: string, facts: RequestFacts | undefined): InFlight {
    const started = performance.now();
    let done = false;
    const entry: InFlight = {
      bytesIn: 0,
      bytesOut: 0,
      judgement: undefined,
      finish: (judgement, status, error) => {
        if (done) return;
        done = true;
        inFlight.delete(entry);
        gatekeeper.record({
          facts,
          rawTarget,
          method,
          judgement,
          status,
          bytesIn: entry.bytesIn,
          bytesOut: entry.bytesOut,
          durationMs: Math.round(performance.now() - started),
          ...(error === undefined ? {} : { error }),
        });
      },
    };
    inFlight.add(entry);
    return entry;
  }

  /** Asks the gatekeeper; a failure to judge is a denial (fail closed). */
  async function judge(
    entry: InFlight,
    facts: RequestFacts,
  ): Promise<{ judgement: Judgement; error?: string }> {
    let result: { judgement: Judgement; error?: string };
    try {
      result = { judgement: await gatekeeper.judge(facts) };
    } catch (err) {
      result = {
        judgement: { allow: false, reason: "malformed_request" },
        error: `cannot judge: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
    if (closing && result.judgement.allow) {
      result = { judgement: { allow: false, reason: "malformed_request" }, error: "proxy closing" };
    }
    entry.judgement = result.judgement;
    return result;
  }

  const server = createServer({
    maxHeaderSize: 16 * 1024,
    requireHostHeader: false,
    keepAliveTimeout: 30_000,
  });
  server.on("connection", (socket: Socket) => {
    track(socket);
    socket.setNoDelay(true);
  });

  const sendDeny = (res: ServerResponse, reason: DenyReason) => {
    const body = gatekeeper.denyBody(reason);
    res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  const denyOnSocket = (socket: Duplex, reason: DenyReason) => {
    const body = gatekeeper.denyBody(reason);
    if (socket.writable) socket.end(denyResponseHead(body) + body);
    else socket.destroy();
  };

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    void handleHttp(req, res);
  });

  /** Connections with a request in progress: that request's own record covers how it ends. */
  const busy = new WeakSet<Duplex>();

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const socket = req.socket;
    busy.add(socket);
    res.once("close", () => busy.delete(socket));
    const parsed = parseHttpRequest(req, "http");
    const entry = begin(req.url ?? "", req.method ?? "", parsed.ok ? parsed.facts : undefined);
    if (!parsed.ok) {
      sendDeny(res, "malformed_request");
      req.resume();
      entry.finish({ allow: false, reason: "malformed_request" }, 403, parsed.why);
      return;
    }
    const { judgement, error } = await judge(entry, parsed.facts);
    if (!judgement.allow) {
      sendDeny(res, judgement.reason);
      req.resume();
      entry.finish(judgement, 403, error);
      return;
    }
    const { facts } = parsed;
    const headers = forwardHeaders(req.rawHeaders, false, REQUEST_DROPS);
    // An HTTP/1.0 client may send no Host; the origin still needs one (undici would otherwise
    // name the address it connects to).
    if (headerValues(req.rawHeaders, "host").length === 0) {
      headers.push(
        "host",
        facts.port === 80 ? hostText(facts.host) : `${hostText(facts.host)}:${facts.port}`,
      );
    }
    const hasBody =
      req.headers["transfer-encoding"] !== undefined ||
      (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
    let abortUpstream: ((err?: Error) => void) | undefined;
    let upstreamDone = false;
    const failed = (err: Error) => {
      upstreamDone = true;
      // Once the client has its status line, that is the status it got; the error says the rest.
      const recorded = res.headersSent ? res.statusCode : 502;
      try {
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(502, "Bad Gateway", {
            "content-type": "text/plain",
            "x-vallignus-decision": "allow",
          });
          res.end(
            `vallignus: upstream ${hostText(facts.host)}:${facts.port} failed: ${err.message}\n`,
          );
        } else {
          res.destroy();
        }
      } catch {
        res.destroy();
      } finally {
        entry.finish(judgement, recorded, err.message);
      }
    };
    res.on("close", () => {
      if (!res.writableFinished) {
        // Recorded first: aborting makes undici call onError at once, which would record a 502.
        // The status is what the client was sent, 0 when it left before any answer.
        entry.finish(
          judgement,
          res.headersSent ? res.statusCode : 0,
          "client closed before the end",
        );
        if (!upstreamDone) abortUpstream?.(new Error("client closed"));
      }
    });
    let pool: Dispatcher;
    try {
      pool = await upstreamPool(judgement.address, facts.port);
    } catch (err) {
      failed(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    let status = 502;
    const handler: Dispatcher.DispatchHandlers = {
      onConnect: (abort) => {
        abortUpstream = abort;
        if (res.destroyed) abort(new Error("client closed"));
      },
      onBodySent: (chunk: unknown) => {
        entry.bytesOut +=
          typeof chunk === "number" ? chunk : Buffer.isBuffer(chunk) ? chunk.length : 0;
      },
      onHeaders: (statusCode, rawHeaders, resume, statusText) => {
        const names: string[] = [];
        for (const value of rawHeaders) names.push(value.toString("latin1"));
        try {
          // A reason phrase or header Node will not write (a control character, say) is the
          // upstream's fault: answered 502 below, like any upstream failure.
          res.writeHead(statusCode, statusText, forwardHeaders(names, false));
        } catch (err) {
          res.statusMessage = "";
          const why = `invalid response from upstream: ${err instanceof Error ? err.message : String(err)}`;
          abortUpstream?.(new Error(why));
          return false;
        }
        status = statusCode;
        res.on("drain", resume);
        return true;
      },
      onData: (chunk) => {
        entry.bytesIn += chunk.length;
        return res.write(chunk);
      },
      onComplete: () => {
        upstreamDone = true;
        res.end();
        entry.finish(judgement, status);
      },
      onError: failed,
    };
    try {
      pool.dispatch(
        {
          path: facts.path,
          method: facts.method as Dispatcher.HttpMethod,
          headers,
          body: hasBody ? req : null,
        },
        handler,
      );
    } catch (err) {
      failed(err instanceof Error ? err : new Error(String(err)));
    }
    if (!hasBody) req.resume();
  }

  server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void handleConnect(req, socket, head);
  });

  async function handleConnect(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    track(client);
    client.on("error", () => client.destroy());
    const parsed = parseConnect(req);
    const entry = begin(req.url ?? "", "CONNECT", parsed.ok ? parsed.facts : undefined);
    entry.bytesOut = head.length;
    if (!parsed.ok) {
      denyOnSocket(client, "malformed_request");
      entry.finish({ allow: false, reason: "malformed_request" }, 403, parsed.why);
      return;
    }
    const { judgement, error } = await judge(entry, parsed.facts);
    if (!judgement.allow) {
      denyOnSocket(client, judgement.reason);
      entry.finish(judgement, 403, error);
      return;
    }
    if (judgement.intercept !== undefined) {
      if (interception === undefined) {
        denyOnSocket(client, "malformed_request");
        entry.finish(
          { allow: false, reason: "malformed_request" },
          403,
          "no interception configured",
        );
        return;
      }
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      const tunnel = {
        host: hostText(parsed.facts.host),
        port: parsed.facts.port,
        address: judgement.address,
      };
      if (head.length > 0) client.unshift(head);
      const tls = interception.accept(client, tunnel, judgement.intercept, (why) => {
        entry.finish({ allow: false, reason: "malformed_request" }, 403, why);
      });
      track(tls);
      client.once("close", () => entry.finish(judgement, 200));
      return;
    }
    const upstream = netConnect({ host: judgement.address, port: parsed.facts.port });
    track(upstream);
    upstream.setNoDelay(true);
    let established = false;
    upstream.once("connect", () => {
      established = true;
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      relay(upstream, client, (n) => (entry.bytesIn += n));
      relay(client, upstream, (n) => (entry.bytesOut += n));
    });
    upstream.on("error", (err) => {
      if (!established && client.writable) {
        client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        entry.finish(judgement, 502, err.message);
      }
      client.destroy();
    });
    const done = () => {
      upstream.destroy();
      client.destroy();
      entry.finish(judgement, established ? 200 : 502);
    };
    upstream.once("close", done);
    client.once("close", done);
  }

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void handleUpgrade(req, socket, head);
  });

  async function handleUpgrade(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    track(client);
    client.on("error", () => client.destroy());
    const parsed = parseHttpRequest(req, "upgrade");
    const entry = begin(req.url ?? "", req.method ?? "", parsed.ok ? parsed.facts : undefined);
    const upgradeTo = (req.headers.upgrade ?? "").toLowerCase();
    // Only WebSocket may be upgraded through us; h2c would hide requests from the policy.
    if (!parsed.ok || upgradeTo !== "websocket") {
      denyOnSocket(client, "malformed_request");
      entry.finish(
        { allow: false, reason: "malformed_request" },
        403,
        parsed.ok ? `upgrade to ${upgradeTo}` : parsed.why,
      );
      return;
    }
    const { judgement, error } = await judge(entry, parsed.facts);
    if (!judgement.allow) {
      denyOnSocket(client, judgement.reason);
      entry.finish(judgement, 403, error);
      return;
    }
    const { facts } = parsed;
    const upstream = netConnect({ host: judgement.address, port: facts.port });
    track(upstream);
    const headers = forwardHeaders(req.rawHeaders, true);
    let headText = `${facts.method} ${facts.path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2)
      headText += `${headers[i] ?? ""}: ${headers[i + 1] ?? ""}\r\n`;
    upstream.once("connect", () => {
      upstream.write(`${headText}\r\n`);
      if (head.length > 0) upstream.write(head);
      relay(upstream, client, (n) => (entry.bytesIn += n));
      relay(client, upstream, (n) => (entry.bytesOut += n));
    });
    upstream.on("error", (err) => {
      entry.finish(judgement, 502, err.message);
      client.destroy();
    });
    const done = () => {
      upstream.destroy();
      client.destroy();
      entry.finish(judgement, 101);
    };
    upstream.once("close", done);
    client.once("close", done);
  }

  // Requests Node's parser refuses (CL+TE, obs-fold, bad chunking, huge headers) still get the
  // contract's 403 and an audit line.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A client that hangs up in the middle of a request body ends that request, which is
    // recorded as such ("client closed before the end"): not a second, malformed one.
    const hungUpMidRequest = err.code === "HPE_INVALID_EOF_STATE" && busy.has(socket);
    if (err.code === "ECONNRESET" || !socket.writable || hungUpMidRequest) {
      socket.destroy();
      return;
    }
    denyOnSocket(socket, "malformed_request");
    begin("", "", undefined).finish(
      { allow: false, reason: "malformed_request" },
      403,
      err.code ?? err.message,
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;

  let unixServer: NetServer | undefined;
  const socketPath = options.unixSocket;
  if (socketPath !== undefined) {
    const listener = createNetServer((socket) => server.emit("connection", socket));
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(socketPath, () => {
        listener.off("error", reject);
        resolve();
      });
    });
    chmodSync(socketPath, 0o600);
    unixServer = listener;
  }

  const dropConnections = () => {
    for (const socket of open) socket.destroy();
    for (const pool of pools.values()) void pool.then((p) => p.destroy());
    pools.clear();
  };
  return {
    port,
    server,
    dropConnections,
    close: async () => {
      closing = true;
      unixServer?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      dropConnections();
      await closed;
      // Sockets report their end from close events; give them a moment, then record the rest.
      for (let i = 0; i < 20 && inFlight.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
      for (const entry of [...inFlight]) {
        entry.finish(
          entry.judgement ?? { allow: false, reason: "malformed_request" },
          0,
          "closed when the run ended",
        );
      }
    },
  };
}
