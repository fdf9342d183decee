import type { SecureContext } from "node:tls";

import type { DenyReason } from "../policy/index.js";
import type { SecretSnapshot } from "../secrets/index.js";
import type { HostKind } from "./address.js";

/** What the proxy read from one request, before anything goes upstream. */
export interface RequestFacts {
  readonly kind: "http" | "connect" | "upgrade";
  readonly method: string;
  readonly scheme: "http" | "https";
  readonly host: HostKind;
  readonly port: number;
  /** Raw path and query; redaction is the audit log's job. "" for CONNECT. */
  readonly path: string;
}

export type Judgement =
  | {
      readonly allow: true;
      readonly address: string;
      /** Set for metered hosts: terminate TLS with this context and meter each request. */
      readonly intercept?: SecureContext;
      /**
       * The run's secrets as read when the request was judged (absent when it holds none): a
       * plain-HTTP request or an upgrade is checked against this same view, read once.
       */
      readonly secrets?: SecretSnapshot;
    }
  | {
      readonly allow: false;
      readonly reason: DenyReason;
      /** The secret a secret_* denial is about, by name. */
      readonly secret?: string;
      /** A secret-free note for the audit line: where, or why. */
      readonly error?: string;
    };

/** A finished request, allowed or denied, for the audit log. */
export interface Outcome {
  readonly facts: RequestFacts | undefined;
  /** The raw target text when the request could not be parsed. */
  readonly rawTarget: string;
  readonly method: string;
  readonly judgement: Judgement;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly error?: string;
  /** Secrets swapped in (allowed) or refused (denied), by name. */
  readonly secret?: string;
}

/**
 * The proxy decides nothing itself: it reads requests, asks the gatekeeper, and carries out
 * the answer. The gatekeeper owns policy, resolution, limits and the audit log.
 */
export interface Gatekeeper {
  judge(facts: RequestFacts): Promise<Judgement>;
  /** The deny JSON; given a metered `host`, with an `error` object in its provider's shape. */
  denyBody(reason: DenyReason, host?: string): string;
  record(outcome: Outcome): void;
}
