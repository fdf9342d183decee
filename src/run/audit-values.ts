import type { DecisionFields } from "../audit/index.js";

/** Percent-decodes what can be; a stray "%" stays (the record is text, not a URL to follow). */
function decodeLoosely(text: string): string {
  return text.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

function holdsValue(text: string, values: readonly string[]): boolean {
  const lower = text.toLowerCase();
  return values.some((v) => lower.includes(v.toLowerCase()));
}

/** `text` with each value (in any case) masked by as many "*"; null when one is left encoded. */
function masked(text: string | null, values: readonly string[]): string | null {
  if (text === null) return null;
  let out = text;
  for (const value of values) {
    const lower = value.toLowerCase();
    let at = out.toLowerCase().indexOf(lower);
    while (at !== -1) {
      out = `${out.slice(0, at)}${"*".repeat(value.length)}${out.slice(at + value.length)}`;
      at = out.toLowerCase().indexOf(lower, at + value.length);
    }
  }
  // Percent-encoded, the value would still be in the log: the whole field goes instead.
  return holdsValue(decodeLoosely(out), values) ? null : out;
}

/**
 * The record without any secret value in its path or host. A denied request may carry one
 * there (`/upload/<key>`, `<key>.example.com`), whatever it was denied for, and the audit log
 * must never hold a value; an allowed one cannot (the guard found no value in it).
 * `values` is undefined when the secrets could not be read: the fields go whole (fail closed).
 */
export function withoutSecretValues(
  record: DecisionFields,
  values: readonly string[] | undefined,
): DecisionFields {
  if (record.decision !== "deny") return record;
  if (values === undefined) return { ...record, path: null, host: null };
  if (values.length === 0) return record;
  return { ...record, path: masked(record.path, values), host: masked(record.host, values) };
}
