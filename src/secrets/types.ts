/**
 * Where a secret's real value goes on its hosts' requests. A header placement with a template
 * sets the header to the template with `{secret}` replaced; without one, the stand-in is
 * replaced where it stands in the header's value. A query placement replaces the stand-in as
 * the value of that query parameter.
 */
export type SecretPlacement =
  | {
      readonly kind: "header";
      /** Lower case. */
      readonly name: string;
      /** Holds `{secret}` exactly once; null: replace the stand-in in place. */
      readonly template: string | null;
    }
  | { readonly kind: "query"; readonly name: string };

/** What the authority keeps of one secret, without its value: all that may ever be shown. */
export interface SecretMeta {
  /** The environment variable the agent sees: `^[A-Z][A-Z0-9_]{0,63}$`. */
  readonly name: string;
  /** Canonical domain patterns, as policies write them. */
  readonly hosts: readonly string[];
  readonly placements: readonly SecretPlacement[];
  readonly created_at: string;
  /** null until the value is first rotated. */
  readonly rotated_at: string | null;
  /** The first 8 hex digits of the value's sha256. */
  readonly fingerprint: string;
}

/** One secret with its value, as `secrets/<NAME>.json` holds it (0600). */
export interface StoredSecret extends SecretMeta {
  readonly value: string;
}
