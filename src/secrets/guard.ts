import type { HostSet } from "../policy/index.js";
import type { SecretPlacement } from "./types.js";

/** One secret a run may use: its stand-in, where the real value may go, and that value now. */
export interface RunSecret {
  readonly name: string;
  readonly standIn: string;
  readonly value: string;
  readonly hosts: HostSet;
  readonly placements: readonly SecretPlacement[];
}

/** What a request is checked against, read fresh for each request (a rotation applies at once). */
export interface SecretSnapshot {
  /** The policy's secrets: their stand-ins are swapped on their hosts. */
  readonly usable: readonly RunSecret[];
  /** Every value the authority holds, the policy's and the others', for exfiltration checks. */
  readonly values: readonly { readonly name: string; readonly value: string }[];
}

/** A request the proxy can see whole, before any byte of it goes upstream. */
export interface OutboundRequest {
  /** Lower-case punycode name or canonical IP, as the gatekeeper judged it. */
  readonly host: string;
  readonly port: number;
  /** The raw request target in origin-form, query included. */
  readonly path: string;
  /** Raw header name/value pairs, as they would be forwarded. */
  readonly headers: readonly string[];
  /** The whole body; empty when there is none. */
  readonly body: Buffer;
}

export type SecretRefusal = {
  readonly reason: "secret_wrong_host" | "secret_exfiltration";
  /** The secret's name (never its value or stand-in). */
  readonly secret: string;
  /** Where it was seen: "header x-foo", "path", "query", "body", "host". */
  readonly where: string;
};

export type Guarded =
  | {
      readonly ok: true;
      /** The path and headers to send: stand-ins swapped for values where they belong. */
      readonly path: string;
      readonly headers: string[];
      /** Names of the secrets swapped in, for the audit line. */
      readonly used: readonly string[];
    }
  | ({ readonly ok: false } & SecretRefusal);

/**
 * Checks one request and swaps stand-ins. A real value anywhere is `secret_exfiltration`; a
 * stand-in anywhere but its own placements on its own hosts is `secret_wrong_host`; otherwise
 * each stand-in in its placement is replaced by its value.
 */
export function guardRequest(snapshot: SecretSnapshot, request: OutboundRequest): Guarded {
  void snapshot;
  void request;
  throw new Error("guardRequest: not yet built");
}

/** A host name (a CONNECT target) that carries a value or a stand-in, or undefined. */
export function guardHost(snapshot: SecretSnapshot, host: string): SecretRefusal | undefined {
  void snapshot;
  void host;
  throw new Error("guardHost: not yet built");
}
