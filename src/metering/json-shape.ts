/**
 * What `JSON.parse` does not check in a request body: how deep it nests, and whether an object
 * names a key twice. Pure: no I/O.
 *
 * Written by hand because no parser at hand reports both: `JSON.parse` keeps the last of two
 * equal keys without a word, and the npm parsers that can refuse duplicates (or bound depth)
 * recurse per level — the stack overflow this guards against — or build a second tree of the
 * whole body. This is one iterative pass with a stack of open containers: linear time, and
 * memory in the depth times the keys of the open objects. It does not validate JSON: the text is
 * given to `JSON.parse` afterwards, which refuses what is not JSON.
 */

/**
 * Deeper bodies are refused. The deepest legitimate requests are tool and response JSON
 * Schemas: OpenAI's structured outputs allow 10 levels of schema nesting, about 2 JSON levels
 * each, under some 5 levels of request; 64 leaves room for that twice over. Recursive code on
 * the way (JSON.stringify in the usage-option rewrite) overflows Node's stack at a few thousand.
 */
export const MAX_JSON_DEPTH = 64;

export type JsonShape = { readonly ok: true } | { readonly ok: false; readonly why: string };

/** An open object (with the keys it has named so far) or an open array (`keys` undefined). */
interface Container {
  readonly keys: Set<string> | undefined;
  /** In an object: the next string is a key (after `{` or `,`), not a value. */
  expectKey: boolean;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

const OK: JsonShape = Object.freeze({ ok: true });

/**
 * The index of the quote that closes the string opened at `start`, or -1. A quote preceded by an
 * odd run of backslashes is escaped; each run is counted once, so this stays linear.
 */
function stringEnd(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote === -1) return -1;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

/** A key as `JSON.parse` reads it (`"max_\u0074okens"` is `max_tokens`); undefined if invalid. */
function keyText(literal: string): string | undefined {
  if (!literal.includes("\\")) return literal.slice(1, -1);
  try {
    const key: unknown = JSON.parse(literal);
    return typeof key === "string" ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks that `text` nests at most `maxDepth` objects and arrays deep and that no object in it
 * repeats a key. The reason names no key: it goes to the audit log, which holds no body content.
 */
export function checkJsonShape(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonShape {
  const open: Container[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end === -1) return { ok: false, why: "request body is not valid JSON" };
      const top = open.at(-1);
      if (top?.keys !== undefined && top.expectKey) {
        const key = keyText(text.slice(i, end + 1));
        if (key === undefined) return { ok: false, why: "request body is not valid JSON" };
        if (top.keys.has(key)) return { ok: false, why: "request body repeats a key in an object" };
        top.keys.add(key);
        top.expectKey = false;
      }
      i = end + 1;
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (open.length >= maxDepth) {
        return { ok: false, why: `request body nests deeper than ${maxDepth} levels` };
      }
      const isObject = c === OPEN_OBJECT;
      open.push({ keys: isObject ? new Set() : undefined, expectKey: isObject });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
    } else if (c === COMMA) {
      const top = open.at(-1);
      if (top?.keys !== undefined) top.expectKey = true;
    }
    i++;
  }
  return OK;
}
