import type { IncomingMessage, ServerResponse } from "node:http";
import type { Dispatcher } from "undici";

import { hostText } from "./address.js";
import type { Scrubber, SecretSnapshot } from "../secrets/index.js";
import { dropHeaders, forwardHeaders, headerValues } from "./headers.js";
import { sendDeny } from "./proxy-core.js";
import { checkSecrets, maskHeaderValues } from "./secret-check.js";
import type { Judgement, RequestFacts } from "./judgement.js";
import type { ProxyCore } from "./proxy-core.js";
import type { InFlight } from "./request-records.js";

/** Headers a proxy must not pass on, beyond the hop-by-hop ones; we answered Expect ourselves. */
const REQUEST_DROPS: ReadonlySet<string> = new Set(["expect"]);

type Allowed = Extract<Judgement, { allow: true }>;

function upstreamHeaders(req: IncomingMessage, facts: RequestFacts): string[] {
  const headers = forwardHeaders(req.rawHeaders, false, REQUEST_DROPS);
  // An HTTP/1.0 client may send no Host; the origin still needs one (undici would otherwise
  // name the address it connects to).
  if (headerValues(req.rawHeaders, "host").length === 0) {
    headers.push(
      "host",
      facts.port === 80 ? hostText(facts.host) : `${hostText(facts.host)}:${facts.port}`,
    );
  }
  return headers;
}

/** One plain-HTTP exchange: the client's side, the upstream's abort, and how it is recorded. */
class Exchange {
  abortUpstream: ((err?: Error) => void) | undefined;
  upstreamDone = false;
  status = 502;
  /** Set when the run holds secrets: their values are masked in the answer. */
  secrets: { snapshot: SecretSnapshot; scrubber: Scrubber } | undefined;

  constructor(
    readonly res: ServerResponse,
    readonly facts: RequestFacts,
    readonly judgement: Allowed,
    readonly entry: InFlight,
  ) {}

  /** The upstream failed: a 502 if the client has no status yet, else its connection is cut. */
  failed(err: Error): void {
    const { res } = this;
    this.upstreamDone = true;
    // Once the client has its status line, that is the status it got; the error says the rest.
    const recorded = res.headersSent ? res.statusCode : 502;
    try {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, "Bad Gateway", {
          "content-type": "text/plain",
          "x-vallignus-decision": "allow",
        });
        const target = `${hostText(this.facts.host)}:${this.facts.port}`;
        res.end(`vallignus: upstream ${target} failed: ${err.message}\n`);
      } else {
        res.destroy();
      }
    } catch {
      res.destroy();
    } finally {
      this.entry.finish(this.judgement, recorded, err.message);
    }
  }

  /** The client left before the end. */
  clientClosed(): void {
    if (this.res.writableFinished) return;
    // Recorded first: aborting makes undici call onError at once, which would record a 502.
    // The status is what the client was sent, 0 when it left before any answer.
    const { res } = this;
    this.entry.finish(
      this.judgement,
      res.headersSent ? res.statusCode : 0,
      "client closed before the end",
    );
    if (!this.upstreamDone) this.abortUpstream?.(new Error("client closed"));
  }

  handlers(): Dispatcher.DispatchHandlers {
    const { res, entry } = this;
    return {
      onConnect: (abort) => {
        this.abortUpstream = abort;
        if (res.destroyed) abort(new Error("client closed"));
      },
      onBodySent: (chunk: unknown) => {
        entry.bytesOut +=
          typeof chunk === "number" ? chunk : Buffer.isBuffer(chunk) ? chunk.length : 0;
      },
      onHeaders: (statusCode, rawHeaders, resume, statusText) =>
        this.onHeaders(statusCode, rawHeaders, resume, statusText),
      onData: (chunk) => {
        entry.bytesIn += chunk.length;
        return res.write(this.secrets?.scrubber.push(chunk) ?? chunk);
      },
      onComplete: () => {
        this.upstreamDone = true;
        res.end(this.secrets?.scrubber.end());
        entry.finish(this.judgement, this.status);
      },
      onError: (err) => this.failed(err),
    };
  }

  private onHeaders(
    statusCode: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean {
    let names: string[] = [];
    for (const value of rawHeaders) names.push(value.toString("latin1"));
    if (this.secrets !== undefined) names = maskHeaderValues(names, this.secrets.snapshot);
    try {
      // A reason phrase or header Node will not write (a control character, say) is the
      // upstream's fault: answered 502 by onError, like any upstream failure.
      this.res.writeHead(statusCode, statusText, forwardHeaders(names, false));
    } catch (err) {
      this.res.statusMessage = "";
      const why = `invalid response from upstream: ${err instanceof Error ? err.message : String(err)}`;
      this.abortUpstream?.(new Error(why));
      return false;
    }
    this.status = statusCode;
    this.res.on("drain", resume);
    return true;
  }
}

/** Carries out an allowed plain-HTTP request through the upstream's keep-alive pool. */
export async function forwardPlainHttp(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  facts: RequestFacts,
  judgement: Allowed,
  entry: InFlight,
): Promise<void> {
  const hasBody =
    req.headers["transfer-encoding"] !== undefined ||
    (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
  const exchange = new Exchange(res, facts, judgement, entry);
  const outgoing = await checkedRequest(core, req, res, facts, exchange, hasBody);
  if (outgoing === undefined) return;
  res.on("close", () => exchange.clientClosed());
  let pool: Dispatcher;
  try {
    pool = await core.pools.get(judgement.address, facts.port);
  } catch (err) {
    exchange.failed(err instanceof Error ? err : new Error(String(err)));
    return;
  }
  try {
    pool.dispatch(
      {
        path: outgoing.path,
        method: facts.method as Dispatcher.HttpMethod,
        headers: outgoing.headers,
        body: outgoing.body,
      },
      exchange.handlers(),
    );
  } catch (err) {
    exchange.failed(err instanceof Error ? err : new Error(String(err)));
  }
  if (!hasBody) req.resume();
}

/**
 * What goes upstream: the request as it came (its body streamed) when the run holds no secret;
 * else the whole request, checked for secrets, with stand-ins swapped, or nothing and a 403.
 */
async function checkedRequest(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  facts: RequestFacts,
  exchange: Exchange,
  hasBody: boolean,
): Promise<{ path: string; headers: string[]; body: IncomingMessage | Buffer | null } | undefined> {
  const headers = upstreamHeaders(req, facts);
  const refuse = (denial: Extract<Judgement, { allow: false }>): void => {
    sendDeny(core, res, denial.reason);
    req.resume();
    exchange.entry.finish(denial, 403, denial.error);
  };
  const snapshot = exchange.judgement.secrets;
  if (snapshot === undefined) return { path: facts.path, headers, body: hasBody ? req : null };
  const target = { host: hostText(facts.host), port: facts.port, path: facts.path, headers };
  const checked = await checkSecrets(snapshot, req, target);
  if (!checked.ok) {
    refuse(checked.denial);
    return undefined;
  }
  exchange.entry.secret = checked.secret;
  exchange.secrets = { snapshot, scrubber: checked.scrubber };
  // The body goes whole, so its length is known: framed by Content-Length alone.
  const sent = dropHeaders(checked.headers, ["content-length"]);
  if (hasBody) sent.push("content-length", String(checked.body.length));
  return { path: checked.path, headers: sent, body: hasBody ? checked.body : null };
}
