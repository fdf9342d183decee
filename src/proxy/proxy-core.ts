import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

import type { DenyReason } from "../policy/index.js";
import { DENY_HEADERS, denyResponseHead } from "./deny-response.js";
import type { Interception } from "./intercept.js";
import type { Gatekeeper, Judgement, RequestFacts } from "./judgement.js";
import type { InFlight, RequestRecords } from "./request-records.js";
import type { UpstreamPools } from "./upstream-pools.js";

/** What every way of carrying out a request shares: the judge, the records, the open sockets. */
export interface ProxyCore {
  readonly gatekeeper: Gatekeeper;
  readonly records: RequestRecords;
  readonly pools: UpstreamPools;
  /** Serves metered tunnels; undefined when the run meters nothing. */
  readonly interception: Interception | undefined;
  /** Every socket the proxy holds, destroyed when the run ends. */
  readonly open: Set<Duplex>;
  /** Set once the proxy is closing: nothing more is allowed. */
  closing: boolean;
}

export const MALFORMED: Judgement = Object.freeze({ allow: false, reason: "malformed_request" });

/** Holds a socket until it closes, so that the end of the run can destroy it. */
export function track(core: ProxyCore, socket: Duplex): void {
  core.open.add(socket);
  socket.once("close", () => core.open.delete(socket));
}

/** Asks the gatekeeper; a failure to judge is a denial (fail closed). */
export async function judgeRequest(
  core: ProxyCore,
  entry: InFlight,
  facts: RequestFacts,
): Promise<{ judgement: Judgement; error?: string }> {
  let result: { judgement: Judgement; error?: string };
  try {
    const judgement = await core.gatekeeper.judge(facts);
    // A denial's note (where a secret was seen) goes to its audit line as its error.
    const note = "error" in judgement ? judgement.error : undefined;
    result = note === undefined ? { judgement } : { judgement, error: note };
  } catch (err) {
    result = {
      judgement: MALFORMED,
      error: `cannot judge: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
  if (core.closing && result.judgement.allow) {
    result = { judgement: MALFORMED, error: "proxy closing" };
  }
  entry.judgement = result.judgement;
  return result;
}

/** The contract's 403 on an HTTP response. */
export function sendDeny(core: ProxyCore, res: ServerResponse, reason: DenyReason): void {
  const body = core.gatekeeper.denyBody(reason);
  res.writeHead(403, { ...DENY_HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** The contract's 403 written on a raw socket (CONNECT, upgrade, a request Node refused). */
export function denyOnSocket(core: ProxyCore, socket: Duplex, reason: DenyReason): void {
  const body = core.gatekeeper.denyBody(reason);
  if (socket.writable) socket.end(denyResponseHead(body) + body);
  else socket.destroy();
}
