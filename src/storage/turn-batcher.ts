import type { VallignusError } from "../errors.js";
import type { FailureLatch } from "./failure-latch.js";
import type { LinkedFileLock } from "./file-lock.js";
import type { JournalFile } from "./journal-file.js";

/** What one batch's write made: a result for its items, and whether it must be on disk first. */
export interface BatchOutcome<R> {
  readonly result: R;
  readonly durable: boolean;
}

/** The journal-specific half of a batch: what the lines are, and who waits for them. */
export interface BatchTarget<T, R> {
  /** Under the lock: writes the items with one write(2). A throw fails the journal for good. */
  write(items: readonly T[]): BatchOutcome<R>;
  /** After the write, and after its fdatasync when the batch was durable. */
  deliver(items: readonly T[], result: R): void;
  /** The batch was not written (or not synced): the journal has failed with `err`. */
  reject(items: readonly T[], err: VallignusError): void;
}

export interface TurnBatcherOptions<T, R> {
  readonly lock: LinkedFileLock;
  readonly file: JournalFile;
  readonly failure: FailureLatch;
  readonly target: BatchTarget<T, R>;
  /** Syncs a batch that need not be durable at once within this many ms (none: never). */
  readonly lazySyncMs?: number;
}

interface Written<T, R> {
  readonly items: readonly T[];
  readonly outcome: BatchOutcome<R> | undefined;
  readonly error?: unknown;
}

/**
 * Items asked for in one turn of the event loop are written together: one lock, one write(2),
 * at most one fdatasync (off the event loop), so a busy run takes the cross-process lock once per
 * turn instead of once per request. The lock is taken at once when free; when another process
 * holds it, the batch waits on timers (items asked for meanwhile join it) and the event loop goes
 * on serving: no process that serves traffic ever sleeps on a lock.
 */
export class TurnBatcher<T, R> {
  private queue: T[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private lockWait: Promise<void> | undefined;
  private lazySync: NodeJS.Timeout | undefined;
  private readonly syncing = new Set<Promise<void>>();

  constructor(private readonly opts: TurnBatcherOptions<T, R>) {}

  /** Queues `item` for this turn's batch; throws the journal's failure if it has failed. */
  add(item: T): void {
    this.opts.failure.throwIfFailed();
    this.queue.push(item);
    this.scheduled ??= setImmediate(this.flushScheduled);
  }

  /** Writes what is queued now, with a blocking lock and sync: for close() and short commands. */
  flushNow(): void {
    this.cancelScheduled();
    if (this.queue.length === 0) return;
    const written = this.opts.lock.run(this.writeQueued);
    if (written.error !== undefined) throw this.rejectAll(written.items, written.error);
    if (written.outcome === undefined) return;
    if (written.outcome.durable) {
      try {
        this.opts.file.sync();
      } catch (err) {
        throw this.rejectAll(written.items, err);
      }
    }
    this.opts.target.deliver(written.items, written.outcome.result);
  }

  /** Writes what is queued and waits until every batch so far is written and synced. */
  async drain(): Promise<void> {
    this.cancelScheduled();
    this.flush();
    while (this.lockWait !== undefined) {
      await this.lockWait;
      this.flush();
    }
    await Promise.allSettled([...this.syncing]);
  }

  /** Syncs at once what a lazy sync would have later; the caller is about to close the file. */
  syncPending(): void {
    if (this.lazySync !== undefined) clearTimeout(this.lazySync);
    this.lazySync = undefined;
    if (!this.opts.file.closed) this.opts.file.sync();
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = undefined;
    this.flush();
  };

  private cancelScheduled(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  private flush(): void {
    if (this.lockWait !== undefined || this.queue.length === 0) return;
    let written: Written<T, R> | Promise<Written<T, R>>;
    try {
      written = this.opts.lock.runWhenFree(this.writeQueued);
    } catch (err) {
      this.rejectAll(this.queue.splice(0), err);
      return;
    }
    if (!(written instanceof Promise)) {
      this.finish(written);
      return;
    }
    this.lockWait = written.then(
      (w) => {
        this.lockWait = undefined;
        this.finish(w);
        // Items queued after the batch was taken wait for the next turn's batch.
        if (this.queue.length > 0) this.scheduled ??= setImmediate(this.flushScheduled);
      },
      (err: unknown) => {
        this.lockWait = undefined;
        this.rejectAll(this.queue.splice(0), err);
      },
    );
  }

  /** Under the lock: the items queued until now, written. Never throws (the lock must go). */
  private readonly writeQueued = (): Written<T, R> => {
    const items = this.queue;
    this.queue = [];
    if (items.length === 0) return { items, outcome: undefined };
    try {
      this.opts.failure.throwIfFailed();
      return { items, outcome: this.opts.target.write(items) };
    } catch (error) {
      return { items, outcome: undefined, error };
    }
  };

  private finish({ items, outcome, error }: Written<T, R>): void {
    if (error !== undefined) {
      this.rejectAll(items, error);
      return;
    }
    if (outcome === undefined) return;
    if (!outcome.durable) {
      this.opts.target.deliver(items, outcome.result);
      this.scheduleLazySync();
      return;
    }
    this.track(
      this.opts.file.syncAsync().then(
        () => {
          this.opts.target.deliver(items, outcome.result);
        },
        (err: unknown) => {
          this.rejectAll(items, err);
        },
      ),
    );
  }

  private rejectAll(items: readonly T[], err: unknown): VallignusError {
    const failure = this.opts.failure.fail(err);
    this.opts.target.reject(items, failure);
    return failure;
  }

  private track(sync: Promise<void>): void {
    this.syncing.add(sync);
    void sync.finally(() => this.syncing.delete(sync));
  }

  private scheduleLazySync(): void {
    const ms = this.opts.lazySyncMs;
    if (ms === undefined || this.lazySync !== undefined) return;
    this.lazySync = setTimeout(() => {
      this.lazySync = undefined;
      if (this.opts.file.closed) return;
      this.track(
        this.opts.file.syncAsync().catch((err: unknown) => {
          this.opts.failure.fail(err);
        }),
      );
    }, ms);
    // A pending sync must not keep a finished run alive; close() syncs anyway.
    this.lazySync.unref();
  }
}
