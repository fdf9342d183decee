/**
 * Waits until every promise in `pending` has settled, or `timeoutMs` has passed, whichever is
 * first: a bound on waiting for work that ends on its own (a call, a socket), without polling.
 */
export async function settledWithin(
  pending: ReadonlySet<Promise<unknown>>,
  timeoutMs: number,
): Promise<void> {
  if (pending.size === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  try {
    await Promise.race([Promise.allSettled([...pending]), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
