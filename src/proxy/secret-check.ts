import type { IncomingMessage } from "node:http";

import {
  createScrubber,
  guardRequest,
  type Scrubber,
  type SecretSnapshot,
} from "../secrets/index.js";
import type { Judgement } from "./judgement.js";
import type { SecretSource } from "./ports.js";

/**
 * The largest body read whole to be checked for secrets (the metered limit too). A larger one,
 * while the authority holds secrets, cannot be checked before it leaves: refused.
 */
export const MAX_CHECKED_BODY_BYTES = 32 * 1024 * 1024;

/** Reads a request's body whole; undefined when it is larger than `limit` or cannot be read. */
export function readWholeBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(size > limit ? undefined : Buffer.concat(chunks)));
    req.on("error", () => resolve(undefined));
  });
}

type Denial = Extract<Judgement, { allow: false }>;

/** A request checked for secrets: what to send, or why nothing may be. */
export type Checked =
  | {
      readonly ok: true;
      readonly path: string;
      readonly headers: readonly string[];
      readonly body: Buffer;
      /** Names of the secrets swapped in, for the audit line. */
      readonly secret: string | undefined;
      /** Hides every secret value from the answer. */
      readonly scrubber: Scrubber;
    }
  | { readonly ok: false; readonly denial: Denial };

const cannotCheck = (why: string): Checked => ({
  ok: false,
  denial: { allow: false, reason: "malformed_request", error: why },
});

/** The run's secrets now, or a denial when they cannot be read (fail closed). */
export function takeSnapshot(
  source: SecretSource | undefined,
): { snapshot: SecretSnapshot | undefined } | { denial: Denial } {
  try {
    return { snapshot: source?.snapshot() };
  } catch (err) {
    const why = `secrets cannot be read: ${err instanceof Error ? err.message : String(err)}`;
    return { denial: { allow: false, reason: "malformed_request", error: why } };
  }
}

/** Every secret value, masked in the answer with as many "*": the framing stays valid. */
export function scrubberFor(snapshot: SecretSnapshot): Scrubber {
  return createScrubber(
    snapshot.values.map(({ value }) => ({ value, replacement: "*".repeat(value.length) })),
  );
}

/** Response header pairs with every secret value masked, as scrubberFor masks the body. */
export function maskHeaderValues(pairs: readonly string[], snapshot: SecretSnapshot): string[] {
  return pairs.map((text, i) => {
    if (i % 2 === 0) return text;
    let out = text;
    for (const { value } of snapshot.values) {
      if (out.includes(value)) out = out.split(value).join("*".repeat(value.length));
    }
    return out;
  });
}

/**
 * Checks a whole request against the run's secrets and swaps stand-ins where they belong. The
 * body is read here (whole, so that nothing leaves before it is checked), or given when the
 * caller read it already.
 */
export async function checkSecrets(
  snapshot: SecretSnapshot,
  req: IncomingMessage,
  target: { host: string; port: number; path: string; headers: readonly string[] },
  body?: Buffer,
): Promise<Checked> {
  const whole = body ?? (await readWholeBody(req, MAX_CHECKED_BODY_BYTES));
  if (whole === undefined)
    return cannotCheck("body too large (or unreadable) to be checked for secrets");
  const guarded = guardRequest(snapshot, { ...target, body: whole });
  if (!guarded.ok) {
    const { reason, secret, where } = guarded;
    return {
      ok: false,
      denial: { allow: false, reason, secret, error: `secret ${secret} in the ${where}` },
    };
  }
  return {
    ok: true,
    path: guarded.path,
    headers: guarded.headers,
    body: whole,
    secret: guarded.used.length === 0 ? undefined : guarded.used.join(","),
    scrubber: scrubberFor(snapshot),
  };
}
