/** Writes the contract's 403: `X-Vallignus-Decision: deny` and the JSON body. */
export function denyResponseHead(body: string): string {
  return (
    "HTTP/1.1 403 Forbidden\r\n" +
    "Content-Type: application/json\r\n" +
    "X-Vallignus-Decision: deny\r\n" +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    "Connection: close\r\n\r\n"
  );
}

export const DENY_HEADERS = {
  "content-type": "application/json",
  "x-vallignus-decision": "deny",
} as const;
