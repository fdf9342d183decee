const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/** The largest multiple of 62 that fits a byte: bytes from here on are redrawn (no bias). */
const UNBIASED_LIMIT = 256 - (256 % ALPHABET.length);
const PREFIX_WINDOW = 16;
const MIN_REST_AFTER_PREFIX = 16;
const MIN_SAME_LENGTH = 22;
const DEFAULT_REST_LENGTH = 32;

/**
 * The value's public prefix: up to the last "-" or "_" among its first 16 characters (`sk-proj-`,
 * `sk-ant-api03-`, `ghp_`, `github_pat_`), kept when at least 16 characters follow it. SDKs and
 * tools check a key's shape by its prefix, so a stand-in without it could be refused before the
 * request ever reaches the proxy.
 */
export function publicPrefix(value: string): string {
  const window = value.slice(0, PREFIX_WINDOW);
  const end = Math.max(window.lastIndexOf("-"), window.lastIndexOf("_")) + 1;
  return value.length - end >= MIN_REST_AFTER_PREFIX ? value.slice(0, end) : "";
}

function randomChars(count: number, randomBytes: (n: number) => Buffer): string {
  let out = "";
  while (out.length < count) {
    for (const byte of randomBytes(count - out.length + 8)) {
      if (byte >= UNBIASED_LIMIT) continue;
      out += ALPHABET.charAt(byte % ALPHABET.length);
      if (out.length === count) break;
    }
  }
  return out;
}

/**
 * A stand-in for one run: the value's public prefix, then random [A-Za-z0-9] as long as the
 * value's rest when that is at least 22 characters (so length checks pass), else 32. Never
 * equal to nor containing the value (redrawn in that vanishingly rare case): the guard tells
 * the two apart by content.
 */
export function makeStandIn(value: string, randomBytes: (n: number) => Buffer): string {
  const prefix = publicPrefix(value);
  const restLength = value.length - prefix.length;
  const length = restLength >= MIN_SAME_LENGTH ? restLength : DEFAULT_REST_LENGTH;
  for (let attempt = 0; attempt < 8; attempt++) {
    const standIn = prefix + randomChars(length, randomBytes);
    if (!standIn.includes(value)) return standIn;
  }
  // Eight draws of 22+ random characters that all hold the value: the source is not random.
  throw new Error("makeStandIn: the random source keeps repeating the value");
}
