import assert from "node:assert/strict";
import { test } from "node:test";

import { formatNanoUsd, MAX_USD, NANO_PER_USD, parseUsdToNano } from "./money.js";

/** [text, nano-USD, the shortest text formatNanoUsd gives back]. */
const exact: [string, number, string][] = [
  ["0", 0, "0"],
  ["5", 5_000_000_000, "5"],
  ["0.000000001", 1, "0.000000001"],
  ["0.999999999", 999_999_999, "0.999999999"],
  ["0.25", 250_000_000, "0.25"],
  ["12.5", 12_500_000_000, "12.5"],
  ["12.50", 12_500_000_000, "12.5"],
  ["0.0", 0, "0"],
  ["1000000", 1_000_000_000_000_000, "1000000"],
  ["1000000.000000000", 1_000_000_000_000_000, "1000000"],
];

for (const [text, nano, formatted] of exact) {
  test(`parseUsdToNano(${JSON.stringify(text)}) is exactly ${nano}`, () => {
    assert.equal(parseUsdToNano(text), nano);
  });
  test(`formatNanoUsd(${nano}) is ${JSON.stringify(formatted)}`, () => {
    assert.equal(formatNanoUsd(nano), formatted);
  });
}

test("parseUsdToNano ignores surrounding spaces", () => {
  assert.equal(parseUsdToNano(" 5 "), 5_000_000_000);
});

test("parseUsdToNano: the largest amount is MAX_USD and stays a safe integer", () => {
  const max = parseUsdToNano(String(MAX_USD));
  assert.equal(max, MAX_USD * NANO_PER_USD);
  assert.ok(Number.isSafeInteger(max));
});

/** [why, text]: each is refused (undefined), never guessed at. */
const refused: [string, string][] = [
  ["a negative amount", "-1"],
  ["a plus sign", "+1"],
  ["exponent notation", "1e3"],
  ["more than nine decimals", "1.0000000001"],
  ["more than MAX_USD", "1000001"],
  ["more than MAX_USD by one nano", "1000000.000000001"],
  ["only a space", " "],
  ["empty", ""],
  ["a leading zero", "01"],
  ["no whole part", ".5"],
  ["a dot without decimals", "5."],
  ["a decimal comma", "1,5"],
  ["hex", "0x10"],
  ["Infinity", "Infinity"],
  ["NaN", "NaN"],
  ["a full-width digit", "１"],
];

for (const [why, text] of refused) {
  test(`parseUsdToNano refuses ${why}: ${JSON.stringify(text)}`, () => {
    assert.equal(parseUsdToNano(text), undefined);
  });
}

test("formatNanoUsd and parseUsdToNano round-trip every nano digit position", () => {
  for (let nano = 1; nano < MAX_USD * NANO_PER_USD; nano *= 10) {
    assert.equal(parseUsdToNano(formatNanoUsd(nano + 7)), nano + 7);
  }
});
