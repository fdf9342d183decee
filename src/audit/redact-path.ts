/**
 * A request target as the audit log may keep it: the path and the query's keys stay (they say
 * what was called), every query value becomes `REDACTED` (API keys and signatures travel there),
 * and the fragment goes (clients never send one; if one arrives it is not ours to keep).
 *
 * `/v1/x?key=abc&b=` -> `/v1/x?key=REDACTED&b=REDACTED`. A bare component without `=`
 * (`?flag`) is a key with no value and stays as it is. The path itself is kept verbatim.
 */
export function redactPath(pathWithQuery: string): string {
  const hash = pathWithQuery.indexOf("#");
  const target = hash === -1 ? pathWithQuery : pathWithQuery.slice(0, hash);
  const question = target.indexOf("?");
  if (question === -1) return target;
  const query = target
    .slice(question + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      return eq === -1 ? pair : `${pair.slice(0, eq)}=REDACTED`;
    })
    .join("&");
  return `${target.slice(0, question)}?${query}`;
}
