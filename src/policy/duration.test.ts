import assert from "node:assert/strict";
import { test } from "node:test";

import { formatDuration, parseDurationSeconds } from "./duration.js";

/** [text, whole seconds]. */
const parsed: [string, number][] = [
  ["90s", 90],
  ["15m", 900],
  ["24h", 86_400],
  ["7d", 604_800],
  ["90", 90],
  ["1s", 1],
  [" 24h ", 86_400],
  ["9999999999", 9_999_999_999],
  ["9999999999d", 863_999_999_913_600],
];

for (const [text, seconds] of parsed) {
  test(`parseDurationSeconds(${JSON.stringify(text)}) is ${seconds}`, () => {
    assert.equal(parseDurationSeconds(text), seconds);
  });
}

/** [why, text]: each is refused (undefined). */
const refused: [string, string][] = [
  ["zero", "0"],
  ["zero seconds", "0s"],
  ["a negative number", "-1"],
  ["a fraction", "1.5h"],
  ["an unknown unit", "1w"],
  ["an upper-case unit", "24H"],
  ["a unit without a number", "h"],
  ["a leading zero", "01m"],
  ["a space between number and unit", "1 h"],
  ["a doubled unit", "1hh"],
  ["more than ten digits", "10000000000"],
  ["empty", ""],
];

for (const [why, text] of refused) {
  test(`parseDurationSeconds refuses ${why}: ${JSON.stringify(text)}`, () => {
    assert.equal(parseDurationSeconds(text), undefined);
  });
}

/** [seconds, text]: the largest unit that divides exactly. */
const formatted: [number, string][] = [
  [1, "1s"],
  [90, "90s"],
  [60, "1m"],
  [5400, "90m"],
  [3600, "1h"],
  [7200, "2h"],
  [86_400, "1d"],
  [172_800, "2d"],
  [86_401, "86401s"],
];

for (const [seconds, text] of formatted) {
  test(`formatDuration(${seconds}) is ${JSON.stringify(text)}`, () => {
    assert.equal(formatDuration(seconds), text);
  });
}

test("formatDuration output parses back to the same number of seconds", () => {
  for (const seconds of [1, 59, 60, 61, 3599, 3600, 86_399, 86_400, 2_592_000]) {
    assert.equal(parseDurationSeconds(formatDuration(seconds)), seconds);
  }
});
