import { connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContext } from "node:tls";

import { hostText } from "./address.js";
import { MAX_HELLO_BUFFER, readClientHello, sniRefusal } from "./client-hello.js";
import type { Judgement, RequestFacts } from "./judgement.js";
import { denyOnSocket, MALFORMED, track, type ProxyCore } from "./proxy-core.js";
import type { InFlight } from "./request-records.js";
import { relay } from "./relay.js";

type Allowed = Extract<Judgement, { allow: true }>;

/** An allowed request on a raw socket (CONNECT or upgrade), and the record of how it ends. */
export interface SocketRequest {
  readonly core: ProxyCore;
  readonly client: Duplex;
  /** Bytes the client sent after the request head, before we answered. */
  readonly head: Buffer;
  readonly facts: RequestFacts;
  readonly judgement: Allowed;
  readonly entry: InFlight;
}

const ESTABLISHED = "HTTP/1.1 200 Connection Established\r\n\r\n";

/** Copies both ways between client and upstream, counting the bytes of each side. */
function relayBoth(client: Duplex, upstream: Socket, entry: InFlight): void {
  relay(upstream, client, (n) => (entry.bytesIn += n));
  relay(client, upstream, (n) => (entry.bytesOut += n));
}

/**
 * Closes a side once what it still holds for its reader is written. A side whose peer ended was
 * ended by the relay, and may still buffer the peer's last bytes: destroying it at once would cut
 * them off (a download short of its end). A reader that never reads is cut when the run ends.
 */
function closeWhenFlushed(socket: Duplex): void {
  if (socket.writableEnded && !socket.writableFinished && !socket.destroyed) {
    socket.once("finish", () => socket.destroy());
    socket.once("error", () => socket.destroy());
  } else {
    socket.destroy();
  }
}

/** Ends both sides when either closes, and records the end with `status()` and `note()`. */
function closeTogether(
  client: Duplex,
  upstream: Socket,
  entry: InFlight,
  judgement: Allowed,
  status: () => number,
  note: () => string | undefined = () => undefined,
): void {
  const done = () => {
    closeWhenFlushed(upstream);
    closeWhenFlushed(client);
    entry.finish(judgement, status(), note());
  };
  upstream.once("close", done);
  client.once("close", done);
}

/** How long an opaque tunnel waits for the client's ClientHello before it gives up. */
const HELLO_TIMEOUT_MS = 10_000;
/** A fatal TLS alert, access_denied (49): clients print "tlsv1 alert access denied". */
const ACCESS_DENIED_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);

/** Whether an opaque tunnel's ClientHello was read and let through. */
interface HelloGate {
  passed: boolean;
}

/**
 * Closes a tunnel whose first bytes may not go upstream, and records the denial. The client
 * already has its 200: a TLS client gets a fatal alert, anything else the contract's 403 (an
 * HTTP client over CONNECT can read it); then the connection closes. Nothing was sent upstream.
 */
function refuseTunnel(r: SocketRequest, upstream: Socket, why: string, tls: boolean): void {
  const { core, client, entry } = r;
  entry.bytesOut = 0;
  entry.finish(MALFORMED, 403, why);
  upstream.destroy();
  if (tls) client.end(ACCESS_DENIED_ALERT);
  else denyOnSocket(core, client, "malformed_request");
}

/**
 * Holds an opaque tunnel until the client's TLS ClientHello is read, and relays only when its
 * SNI names the CONNECT host: otherwise an allowed host that shares an address with another
 * (a CDN) would carry requests to that other host (domain fronting). Nothing moves either way
 * before that. Not TLS, no SNI for a name, a broken hello, or none within the bound: refused.
 */
function relayAfterHello(r: SocketRequest, upstream: Socket, gate: HelloGate): void {
  const { client, head, facts, entry } = r;
  let buffered = head;
  // Counted once they go upstream, which only a readable, matching hello does.
  entry.bytesOut = 0;
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    check();
  };
  const stop = () => {
    clearTimeout(timer);
    client.off("data", onData);
    client.off("end", onEnd);
    client.off("close", stop);
  };
  const refuse = (why: string, tls: boolean) => {
    stop();
    refuseTunnel(r, upstream, why, tls);
  };
  // A client that leaves before its hello is complete sent nothing upstream: the tunnel ends,
  // recorded as the allowed CONNECT it was, with a note.
  const onEnd = () => {
    stop();
    upstream.destroy();
    client.end();
  };
  const timer = setTimeout(() => {
    refuse(`no TLS ClientHello within ${HELLO_TIMEOUT_MS / 1000} s`, buffered[0] === 0x16);
  }, HELLO_TIMEOUT_MS);
  const check = () => {
    const read = readClientHello(buffered);
    if (read.state === "partial") {
      if (buffered.length > MAX_HELLO_BUFFER) refuse("ClientHello incomplete past its bound", true);
      return;
    }
    if (read.state === "invalid") {
      refuse(`not a readable TLS ClientHello: ${read.why}`, read.tls);
      return;
    }
    const why = sniRefusal(read.serverName, facts.host);
    if (why !== undefined) {
      refuse(why, true);
      return;
    }
    stop();
    gate.passed = true;
    entry.bytesOut = buffered.length;
    upstream.write(buffered);
    relayBoth(client, upstream, entry);
  };
  client.on("data", onData);
  client.once("end", onEnd);
  client.once("close", stop);
  if (buffered.length > 0) check();
}

/** An allowed CONNECT to a host that is not metered: opaque, once its ClientHello names the host. */
export function openTunnel(r: SocketRequest): void {
  const { core, client, facts, judgement, entry } = r;
  const upstream = netConnect({ host: judgement.address, port: facts.port });
  track(core, upstream);
  upstream.setNoDelay(true);
  let established = false;
  const gate: HelloGate = { passed: false };
  upstream.once("connect", () => {
    established = true;
    client.write(ESTABLISHED);
    relayAfterHello(r, upstream, gate);
  });
  upstream.on("error", (err) => {
    if (!established && client.writable) {
      client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      entry.finish(judgement, 502, err.message);
    }
    client.destroy();
  });
  const note = () =>
    established && !gate.passed ? "closed before a TLS ClientHello: nothing relayed" : undefined;
  closeTogether(client, upstream, entry, judgement, () => (established ? 200 : 502), note);
}

/** An allowed CONNECT to a metered host: TLS ends here and each request in it is metered. */
export function interceptTunnel(r: SocketRequest, intercept: SecureContext): void {
  const { core, client, head, facts, judgement, entry } = r;
  if (core.interception === undefined) {
    denyOnSocket(core, client, "malformed_request");
    entry.finish(MALFORMED, 403, "no interception configured");
    return;
  }
  client.write(ESTABLISHED);
  const tunnel = { host: hostText(facts.host), port: facts.port, address: judgement.address };
  if (head.length > 0) client.unshift(head);
  const tls = core.interception.accept(client, tunnel, intercept, {
    handshake: (why) => entry.finish(MALFORMED, 403, why),
    request: (method, path, why) => {
      const inner: RequestFacts = { ...facts, kind: "http", method, path };
      core.records.begin(path, method, inner).finish(MALFORMED, 403, why);
      return core.gatekeeper.denyBody("malformed_request", tunnel.host);
    },
  });
  track(core, tls);
  client.once("close", () => entry.finish(judgement, 200));
}

/**
 * An allowed WebSocket upgrade: the request goes upstream as written (stand-ins swapped), then
 * bytes both ways.
 */
export function openUpgrade(
  r: SocketRequest,
  sent: { readonly path: string; readonly headers: readonly string[] },
): void {
  const { core, client, head, facts, judgement, entry } = r;
  const upstream = netConnect({ host: judgement.address, port: facts.port });
  track(core, upstream);
  const { headers } = sent;
  let headText = `${facts.method} ${sent.path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2)
    headText += `${headers[i] ?? ""}: ${headers[i + 1] ?? ""}\r\n`;
  upstream.once("connect", () => {
    upstream.write(`${headText}\r\n`);
    if (head.length > 0) upstream.write(head);
    relayBoth(client, upstream, entry);
  });
  upstream.on("error", (err) => {
    entry.finish(judgement, 502, err.message);
    client.destroy();
  });
  closeTogether(client, upstream, entry, judgement, () => 101);
}
