import type { Dispatcher } from "undici";

/**
 * Plain-HTTP requests go upstream through undici's pools rather than http.request: its dispatcher
 * API hands over raw headers and body chunks at about half the per-request CPU (measured in
 * bench/). Loaded on the first plain-HTTP request, so runs that only open tunnels don't carry it.
 */
const loadUndici = (() => {
  let loading: ReturnType<typeof importUndici> | undefined;
  return () => (loading ??= importUndici());
})();
const importUndici = () => import("undici");

/** One keep-alive pool per upstream address and port, made on first use. */
export class UpstreamPools {
  private readonly pools = new Map<string, Promise<Dispatcher>>();

  get(address: string, port: number): Promise<Dispatcher> {
    const key = `${address} ${port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      const origin = address.includes(":")
        ? `http://[${address}]:${port}`
        : `http://${address}:${port}`;
      pool = loadUndici().then(
        ({ Pool }) =>
          new Pool(origin, {
            connections: 256,
            // The agent decides how long a request may take, not the firewall.
            headersTimeout: 0,
            bodyTimeout: 0,
          }),
      );
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Destroys every pool and its connections; a later request makes a new one. */
  destroyAll(): void {
    for (const pool of this.pools.values()) void pool.then((p) => p.destroy());
    this.pools.clear();
  }
}
