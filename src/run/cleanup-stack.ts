/**
 * Releases what a run acquired, in reverse order of acquisition. Each resource registers its
 * release the moment it exists, so a start-up step that throws leaves nothing behind: the
 * steps before it are undone, the steps after it never ran.
 */
export class CleanupStack {
  private readonly releases: { readonly name: string; readonly release: () => unknown }[] = [];

  /** Registers `release` to run at unwind time, before everything registered earlier. */
  defer(name: string, release: () => unknown): void {
    this.releases.push({ name, release });
  }

  /**
   * Runs every release, last registered first, awaiting each; one that throws does not stop the
   * others. Returns the failures, so the caller decides whether they matter.
   */
  async unwind(): Promise<Error[]> {
    const failures: Error[] = [];
    for (let entry = this.releases.pop(); entry !== undefined; entry = this.releases.pop()) {
      try {
        await entry.release();
      } catch (err) {
        failures.push(describeFailure(entry.name, err));
      }
    }
    return failures;
  }

  /**
   * The last resort, for a process about to exit: runs every release without waiting for the
   * ones that return a promise (they only get started).
   */
  unwindNow(): Error[] {
    const failures: Error[] = [];
    for (let entry = this.releases.pop(); entry !== undefined; entry = this.releases.pop()) {
      try {
        const result = entry.release();
        if (result instanceof Promise) result.catch(() => undefined);
      } catch (err) {
        failures.push(describeFailure(entry.name, err));
      }
    }
    return failures;
  }
}

function describeFailure(name: string, err: unknown): Error {
  return new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
