import type { Gatekeeper, Judgement, RequestFacts } from "./judgement.js";

/** A request being served: what it has moved so far, and the one way to record its end. */
export interface InFlight {
  bytesIn: number;
  bytesOut: number;
  /** Set once the gatekeeper has answered. */
  judgement: Judgement | undefined;
  /** Names of the secrets swapped into the request, once they are. */
  secret?: string | undefined;
  /** Records the request's end; only the first call counts. */
  finish(judgement: Judgement, status: number, error?: string): void;
}

/** Every request gets exactly one audit record, however it ends. */
export class RequestRecords {
  private readonly open = new Set<InFlight>();
  /** Called when the last open request is recorded, while `settled` waits. */
  private onIdle: (() => void) | undefined;

  constructor(private readonly gatekeeper: Gatekeeper) {}

  begin(rawTarget: string, method: string, facts: RequestFacts | undefined): InFlight {
    const started = performance.now();
    let done = false;
    const entry: InFlight = {
      bytesIn: 0,
      bytesOut: 0,
      judgement: undefined,
      finish: (judgement, status, error) => {
        if (done) return;
        done = true;
        this.open.delete(entry);
        const secret = judgement.allow ? entry.secret : judgement.secret;
        this.gatekeeper.record({
          facts,
          rawTarget,
          method,
          judgement,
          status,
          bytesIn: entry.bytesIn,
          bytesOut: entry.bytesOut,
          durationMs: Math.round(performance.now() - started),
          ...(error === undefined ? {} : { error }),
          ...(secret === undefined ? {} : { secret }),
        });
        if (this.onIdle !== undefined && this.open.size === 0) this.onIdle();
      },
    };
    this.open.add(entry);
    return entry;
  }

  /** Waits until every open request has recorded its end, or `timeoutMs` has passed. */
  settled(timeoutMs: number): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.onIdle = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.onIdle = done;
    });
  }

  /** Records every request still open as ended with `error` (the run ended under it). */
  finishAll(error: string): void {
    for (const entry of [...this.open]) {
      entry.finish(entry.judgement ?? { allow: false, reason: "malformed_request" }, 0, error);
    }
  }
}
