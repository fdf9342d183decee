import type { IncomingMessage } from "node:http";
import { connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContext } from "node:tls";

import { hostText } from "./address.js";
import { forwardHeaders } from "./headers.js";
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

/** Ends both sides when either closes, and records the end with `status()`. */
function closeTogether(
  client: Duplex,
  upstream: Socket,
  entry: InFlight,
  judgement: Allowed,
  status: () => number,
): void {
  const done = () => {
    closeWhenFlushed(upstream);
    closeWhenFlushed(client);
    entry.finish(judgement, status());
  };
  upstream.once("close", done);
  client.once("close", done);
}

/** An allowed CONNECT to a host that is not metered: a byte tunnel, untouched. */
export function openTunnel(r: SocketRequest): void {
  const { core, client, head, facts, judgement, entry } = r;
  const upstream = netConnect({ host: judgement.address, port: facts.port });
  track(core, upstream);
  upstream.setNoDelay(true);
  let established = false;
  upstream.once("connect", () => {
    established = true;
    client.write(ESTABLISHED);
    if (head.length > 0) upstream.write(head);
    relayBoth(client, upstream, entry);
  });
  upstream.on("error", (err) => {
    if (!established && client.writable) {
      client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      entry.finish(judgement, 502, err.message);
    }
    client.destroy();
  });
  closeTogether(client, upstream, entry, judgement, () => (established ? 200 : 502));
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
  const tls = core.interception.accept(client, tunnel, intercept, (why) => {
    entry.finish(MALFORMED, 403, why);
  });
  track(core, tls);
  client.once("close", () => entry.finish(judgement, 200));
}

/** An allowed WebSocket upgrade: the request goes upstream as written, then bytes both ways. */
export function openUpgrade(r: SocketRequest, req: IncomingMessage): void {
  const { core, client, head, facts, judgement, entry } = r;
  const upstream = netConnect({ host: judgement.address, port: facts.port });
  track(core, upstream);
  const headers = forwardHeaders(req.rawHeaders, true);
  let headText = `${facts.method} ${facts.path} HTTP/1.1\r\n`;
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
