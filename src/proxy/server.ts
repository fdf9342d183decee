import { createServer, ServerResponse, type IncomingMessage, type Server } from "node:http";
import { chmodSync } from "node:fs";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";

import type { Gatekeeper, Judgement, RequestFacts } from "./judgement.js";
import { createInterception, type InnerHandler } from "./intercept.js";
import { forwardPlainHttp } from "./plain-http.js";
import {
  denyOnSocket,
  judgeRequest,
  MALFORMED,
  sendDeny,
  track,
  type ProxyCore,
} from "./proxy-core.js";
import { parseConnect, parseHttpRequest } from "./request-parse.js";
import { RequestRecords, type InFlight } from "./request-records.js";
import { interceptTunnel, openTunnel, openUpgrade } from "./tunnel.js";
import { UpstreamPools } from "./upstream-pools.js";
import { hostText } from "./address.js";
import { forwardHeaders } from "./headers.js";
import { checkSecrets } from "./secret-check.js";

export type { Gatekeeper, Judgement, Outcome, RequestFacts } from "./judgement.js";

export interface ProxyServer {
  readonly port: number;
  readonly server: Server;
  /** Closes the listener and every open connection and tunnel. */
  close(): Promise<void>;
  /** Destroys open tunnels and upstream sockets (a run that was stopped). */
  dropConnections(): void;
}

export interface ProxyOptions {
  readonly host?: string;
  readonly port?: number | undefined;
  readonly gatekeeper: Gatekeeper;
  /** Serves requests inside intercepted (metered) tunnels. */
  readonly innerHandler?: InnerHandler;
  /**
   * Accept connections on this unix socket (mode 0600) instead of 127.0.0.1: the way in from
   * `--isolate`. A TCP port on the host's loopback would let any local user or program borrow
   * the run's identity and budget.
   */
  readonly unixSocket?: string | undefined;
}

/** How long close() lets open requests report their own end before recording it for them. */
const CLOSE_GRACE_MS = 200;

/** Connections with a request in progress: that request's own record covers how it ends. */
const busy = new WeakSet<Duplex>();

/** The record of each request being served, for containFailure to end. */
const entries = new WeakMap<IncomingMessage, InFlight>();

/** A plain-HTTP request: parse, judge, then forward it or answer 403. */
async function serveHttp(core: ProxyCore, req: IncomingMessage, res: ServerResponse) {
  const socket = req.socket;
  busy.add(socket);
  res.once("close", () => busy.delete(socket));
  const parsed = parseHttpRequest(req, "http");
  const entry = core.records.begin(req.url ?? "", req.method ?? "", parsed.facts);
  entries.set(req, entry);
  if (!parsed.ok) {
    sendDeny(core, res, "malformed_request");
    req.resume();
    entry.finish(MALFORMED, 403, parsed.why);
    return;
  }
  const { judgement, error } = await judgeRequest(core, entry, parsed.facts);
  if (!judgement.allow) {
    sendDeny(core, res, judgement.reason);
    req.resume();
    entry.finish(judgement, 403, error);
    return;
  }
  await forwardPlainHttp(core, req, res, parsed.facts, judgement, entry);
}

/** Judges a request on a raw socket; a denial is answered there and recorded. */
async function judgeOnSocket(
  core: ProxyCore,
  client: Duplex,
  entry: InFlight,
  facts: RequestFacts,
): Promise<Extract<Judgement, { allow: true }> | undefined> {
  const { judgement, error } = await judgeRequest(core, entry, facts);
  if (judgement.allow) return judgement;
  denyOnSocket(core, client, judgement.reason);
  entry.finish(judgement, 403, error);
  return undefined;
}

/** A CONNECT: parse, judge, then a tunnel (intercepted for a metered host) or 403. */
async function serveConnect(core: ProxyCore, req: IncomingMessage, client: Duplex, head: Buffer) {
  track(core, client);
  client.on("error", () => client.destroy());
  const parsed = parseConnect(req);
  const entry = core.records.begin(req.url ?? "", "CONNECT", parsed.ok ? parsed.facts : undefined);
  entries.set(req, entry);
  entry.bytesOut = head.length;
  if (!parsed.ok) {
    denyOnSocket(core, client, "malformed_request");
    entry.finish(MALFORMED, 403, parsed.why);
    return;
  }
  const judgement = await judgeOnSocket(core, client, entry, parsed.facts);
  if (judgement === undefined) return;
  const request = { core, client, head, facts: parsed.facts, judgement, entry };
  if (judgement.intercept === undefined) openTunnel(request);
  else interceptTunnel(request, judgement.intercept);
}

/** An Upgrade request: only WebSocket, judged like plain HTTP, then bytes both ways. */
async function serveUpgrade(core: ProxyCore, req: IncomingMessage, client: Duplex, head: Buffer) {
  track(core, client);
  client.on("error", () => client.destroy());
  const parsed = parseHttpRequest(req, "upgrade");
  const entry = core.records.begin(req.url ?? "", req.method ?? "", parsed.facts);
  entries.set(req, entry);
  // Bytes the client sent ahead of the 101 go upstream with the request: they count too.
  entry.bytesOut = head.length;
  const upgradeTo = (req.headers.upgrade ?? "").toLowerCase();
  // Only WebSocket may be upgraded through us; h2c would hide requests from the policy.
  if (!parsed.ok || upgradeTo !== "websocket") {
    denyOnSocket(core, client, "malformed_request");
    entry.finish(MALFORMED, 403, parsed.ok ? `upgrade to ${upgradeTo}` : parsed.why);
    return;
  }
  const judgement = await judgeOnSocket(core, client, entry, parsed.facts);
  if (judgement === undefined) return;
  const headers = forwardHeaders(req.rawHeaders, true);
  const facts = parsed.facts;
  const target = { host: hostText(facts.host), port: facts.port, path: facts.path, headers };
  // Its path and headers are checked for secrets; its frames, once upgraded, are not seen.
  const sent =
    judgement.secrets === undefined
      ? { ok: true as const, path: facts.path, headers, secret: undefined }
      : await checkSecrets(judgement.secrets, req, target, Buffer.alloc(0));
  if (!sent.ok) {
    denyOnSocket(core, client, sent.denial.reason);
    entry.finish(sent.denial, 403, sent.denial.error);
    return;
  }
  entry.secret = sent.secret;
  const request = { core, client, head, facts, judgement, entry };
  openUpgrade(request, { path: sent.path, headers: sent.headers });
}

/**
 * Requests Node's parser refuses (CL+TE, obs-fold, bad chunking, huge headers) still get the
 * contract's 403 and an audit line.
 */
function refuseUnparsable(core: ProxyCore, err: NodeJS.ErrnoException, socket: Duplex): void {
  // A client that hangs up in the middle of a request body ends that request, which is
  // recorded as such ("client closed before the end"): not a second, malformed one.
  const hungUpMidRequest = err.code === "HPE_INVALID_EOF_STATE" && busy.has(socket);
  if (err.code === "ECONNRESET" || !socket.writable || hungUpMidRequest) {
    socket.destroy();
    return;
  }
  denyOnSocket(core, socket, "malformed_request");
  core.records.begin("", "", undefined).finish(MALFORMED, 403, err.code ?? err.message);
}

/**
 * Where an error that nothing else caught while serving a request ends up (a bug: the steps
 * turn what they expect into denials themselves). That request alone is denied
 * `malformed_request` — one we could not carry out is one we cannot judge — and recorded; if
 * its answer had begun, its connection is cut instead. The proxy serves on.
 */
function containFailure(
  core: ProxyCore,
  req: IncomingMessage,
  answer: ServerResponse | Duplex,
  err: unknown,
): void {
  const entry = entries.get(req) ?? core.records.begin(req.url ?? "", req.method ?? "", undefined);
  const error = `internal error: ${err instanceof Error ? err.message : String(err)}`;
  req.resume();
  const begun =
    answer instanceof ServerResponse
      ? answer.headersSent
      : "bytesWritten" in answer && answer.bytesWritten !== 0;
  if (begun || answer.destroyed) {
    answer.destroy();
    entry.finish(
      entry.judgement ?? MALFORMED,
      answer instanceof ServerResponse ? answer.statusCode : 0,
      error,
    );
    return;
  }
  if (answer instanceof ServerResponse) sendDeny(core, answer, "malformed_request");
  else denyOnSocket(core, answer, "malformed_request");
  entry.finish(MALFORMED, 403, error);
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : 0);
    });
  });
}

/** The way in from `--isolate`: a unix socket (0600) whose connections the HTTP server serves. */
async function listenUnix(server: Server, path: string): Promise<NetServer> {
  const listener = createNetServer((socket) => server.emit("connection", socket));
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(path, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return listener;
}

function createProxyServer(core: ProxyCore): Server {
  const server = createServer({
    maxHeaderSize: 16 * 1024,
    requireHostHeader: false,
    keepAliveTimeout: 30_000,
  });
  server.on("connection", (socket: Socket) => {
    track(core, socket);
    socket.setNoDelay(true);
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    serveHttp(core, req, res).catch((err: unknown) => containFailure(core, req, res, err));
  });
  server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    serveConnect(core, req, socket, head).catch((err: unknown) => {
      containFailure(core, req, socket, err);
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    serveUpgrade(core, req, socket, head).catch((err: unknown) => {
      containFailure(core, req, socket, err);
    });
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    refuseUnparsable(core, err, socket);
  });
  return server;
}

/**
 * The run's proxy on 127.0.0.1 (or on a unix socket only, under --isolate). Each request is parsed,
 * judged by the gatekeeper, and carried out: a plain-HTTP forward, a CONNECT tunnel (intercepted
 * and metered for LLM hosts), or a WebSocket upgrade; a denial is the contract's 403.
 */
export async function startProxy(options: ProxyOptions): Promise<ProxyServer> {
  const { gatekeeper } = options;
  const core: ProxyCore = {
    gatekeeper,
    records: new RequestRecords(gatekeeper),
    pools: new UpstreamPools(),
    interception:
      options.innerHandler === undefined ? undefined : createInterception(options.innerHandler),
    open: new Set(),
    closing: false,
  };
  const server = createProxyServer(core);
  const port =
    options.unixSocket === undefined
      ? await listen(server, options.port ?? 0, options.host ?? "127.0.0.1")
      : 0;
  const unixServer =
    options.unixSocket === undefined ? undefined : await listenUnix(server, options.unixSocket);

  const dropConnections = () => {
    for (const socket of core.open) socket.destroy();
    core.pools.destroyAll();
  };
  return {
    port,
    server,
    dropConnections,
    close: async () => {
      core.closing = true;
      unixServer?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      dropConnections();
      await closed;
      // Sockets report their end from close events; give them a moment, then record the rest.
      await core.records.settled(CLOSE_GRACE_MS);
      core.records.finishAll("closed when the run ended");
    },
  };
}
