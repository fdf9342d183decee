/** The longest text a field taken from a request keeps in the audit log. */
export const MAX_AUDIT_TEXT_CHARS = 1024;

/**
 * Cuts what a request sent to a bounded length, saying so: an agent must not be able to grow the
 * log by megabytes with one denied request (a 2 MB model name, a 1 MB path).
 */
export function capAuditText(text: string): string {
  if (text.length <= MAX_AUDIT_TEXT_CHARS) return text;
  return `${text.slice(0, MAX_AUDIT_TEXT_CHARS)}…[cut ${text.length - MAX_AUDIT_TEXT_CHARS} chars]`;
}

/**
 * A request target as the audit log may keep it: the path and the query's keys stay (they say
 * what was called), every query value becomes `REDACTED` (API keys and signatures travel there),
 * and the fragment goes (clients never send one; if one arrives it is not ours to keep).
 *
 * `/v1/x?key=abc&b=` -> `/v1/x?key=REDACTED&b=REDACTED`. A bare component without `=` (`?flag`,
 * or `?sk-live-…`) cannot be told from a secret sent as the whole item, so it becomes `REDACTED`
 * too. The path itself is kept verbatim, cut at MAX_AUDIT_TEXT_CHARS.
 */
export function redactPath(pathWithQuery: string): string {
  const hash = pathWithQuery.indexOf("#");
  const target = hash === -1 ? pathWithQuery : pathWithQuery.slice(0, hash);
  const question = target.indexOf("?");
  if (question === -1) return capAuditText(target);
  const query = target
    .slice(question + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      if (eq === -1) return pair === "" ? pair : "REDACTED";
      return `${pair.slice(0, eq)}=REDACTED`;
    })
    .join("&");
  return capAuditText(`${target.slice(0, question)}?${query}`);
}
