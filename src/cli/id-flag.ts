import { assertValidId } from "../authority/index.js";

/** An id given as a filter, checked like every id (so that it cannot name a path outside). */
export function validId(kind: string, value: string | undefined): string | undefined {
  if (value !== undefined) assertValidId(kind, value);
  return value;
}
