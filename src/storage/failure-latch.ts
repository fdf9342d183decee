import { VallignusError } from "../errors.js";

/**
 * The first failure of a journal, kept: once a write or sync failed, what is on disk is in doubt,
 * so every later append is refused with the same error (fail closed), and the owner is told once.
 */
export class FailureLatch {
  private failure: VallignusError | undefined;

  constructor(
    /** Makes a VallignusError of anything thrown (an errno error from fs, say). */
    private readonly wrap: (err: unknown) => VallignusError,
    private readonly onFailure?: (err: VallignusError) => void,
  ) {}

  get failed(): VallignusError | undefined {
    return this.failure;
  }

  /** Latches `err` (the first one only) and tells the owner; returns the latched error. */
  fail(err: unknown): VallignusError {
    if (this.failure !== undefined) return this.failure;
    const failure = err instanceof VallignusError ? err : this.wrap(err);
    this.failure = failure;
    this.onFailure?.(failure);
    return failure;
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}
