import { lookup } from "node:dns/promises";

import type { HostKind } from "./address.js";

/** `--resolve HOST:PORT:ADDR`: the operator's explicit choice of address for one host and port. */
export interface ResolveOverride {
  readonly host: string;
  readonly port: number;
  readonly address: string;
}

export interface ResolvedTarget {
  readonly address: string;
  readonly operatorChosen: boolean;
}

const LOOKUP_TIMEOUT_MS = 5000;

/**
 * Resolves a target once. The caller checks every address returned and dials one of them, so a
 * second lookup (and DNS rebinding between check and dial) cannot happen.
 */
export async function resolveTarget(
  host: HostKind,
  port: number,
  overrides: readonly ResolveOverride[],
): Promise<ResolvedTarget[]> {
  if (host.kind === "ip") return [{ address: host.address, operatorChosen: false }];
  if (host.kind !== "name") return [];
  const chosen = overrides.find((o) => o.host === host.name && o.port === port);
  if (chosen !== undefined) return [{ address: chosen.address, operatorChosen: true }];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`lookup of ${host.name} timed out`)),
      LOOKUP_TIMEOUT_MS,
    );
  });
  try {
    const answers = await Promise.race([lookup(host.name, { all: true, verbatim: true }), timeout]);
    return answers.map((a) => ({ address: a.address, operatorChosen: false }));
  } finally {
    clearTimeout(timer);
  }
}
