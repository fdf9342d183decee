import { decideRequestCount, type CompiledPolicy, type DenyReason } from "../policy/index.js";

/** One request counted against the run's limits, until it turns out not to go ahead. */
export interface RequestSlot {
  /** Gives the place back (the request was denied after all); a second call does nothing. */
  release(): void;
}

class CountedSlot implements RequestSlot {
  private released = false;
  constructor(private readonly counter: RequestCounter) {}
  release(): void {
    if (this.released) return;
    this.released = true;
    this.counter.giveBack();
  }
}

/**
 * The run's request count. A request takes its slot before anything slow (resolving its name),
 * so concurrent requests cannot together pass the limit, and releases it if it is denied later.
 */
export class RequestCounter {
  private count = 0;

  constructor(
    private readonly policy: CompiledPolicy,
    /** `run --max-requests`; the policy's own limit applies too. */
    private readonly runLimit: number | undefined,
    /** Called when a request hits the limit: the run ends. */
    private readonly onLimit: () => void,
  ) {}

  /** Requests counted so far. */
  get taken(): number {
    return this.count;
  }

  /** Counts one request; the deny reason when the limit is reached. */
  take(): RequestSlot | DenyReason {
    const decision = decideRequestCount(this.policy, this.count, this.runLimit);
    if (decision.decision === "deny") {
      this.onLimit();
      return decision.reason;
    }
    return this.hold();
  }

  /** Holds a place without checking the limit (a tunnel whose calls are counted one by one). */
  hold(): RequestSlot {
    this.count++;
    return new CountedSlot(this);
  }

  /** @internal for CountedSlot.release */
  giveBack(): void {
    this.count--;
  }
}
