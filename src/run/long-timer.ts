/** The longest delay setTimeout honours; a longer one overflows and fires after 1 ms. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** The timer functions a long timer is built on; tests pass fakes. */
export interface TimerHost {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

const realTimers: TimerHost = {
  setTimeout: (fn, ms) => {
    const handle = setTimeout(fn, ms);
    // A pending limit must not keep a finished run alive.
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => {
    clearTimeout(handle as NodeJS.Timeout);
  },
  now: () => Date.now(),
};

export interface LongTimer {
  clear(): void;
}

/**
 * Calls `fn` once `delayMs` have passed, for any delay a user can give (a 30-day token expiry,
 * a long --max-runtime): it chains timeouts of at most MAX_TIMER_DELAY_MS, each re-measured
 * against the clock, so a link that fires late does not push the deadline back.
 */
export function setLongTimeout(
  fn: () => void,
  delayMs: number,
  timers: TimerHost = realTimers,
): LongTimer {
  const deadline = timers.now() + Math.max(0, delayMs);
  let handle: unknown;
  let cleared = false;
  const arm = (): void => {
    const left = Math.max(0, deadline - timers.now());
    handle = timers.setTimeout(
      () => {
        if (cleared) return;
        if (timers.now() >= deadline) fn();
        else arm();
      },
      Math.min(left, MAX_TIMER_DELAY_MS),
    );
  };
  arm();
  return {
    clear: () => {
      cleared = true;
      timers.clearTimeout(handle);
    },
  };
}
