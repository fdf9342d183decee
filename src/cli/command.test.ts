import assert from "node:assert/strict";
import { test } from "node:test";

import { VallignusError } from "../errors.js";
import { defineCommand, parseCommandInput } from "./command.js";

const EXAMPLE = defineCommand({
  summary: "an example",
  flags: {
    "agent-id": { type: "string", value: "ID", required: true, description: "the agent" },
    "max-requests": { type: "string", value: "N", description: "a limit" },
    price: { type: "string", multiple: true, value: "P", description: "prices" },
    lines: { type: "string", short: "n", value: "N", description: "how many" },
    private: { type: "boolean", negation: "also", description: "on or off" },
    session: { type: "boolean", negation: "only", description: "only --no-session" },
    json: { type: "boolean", description: "JSON" },
  },
  operands: "ID",
  positionals: 1,
});

const RUN_LIKE = defineCommand({
  summary: "runs a command",
  flags: { port: { type: "string", value: "P", description: "a port" } },
  operands: "-- CMD [ARGS…]",
  passThrough: true,
});

function usageErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof VallignusError);
    assert.equal(err.code, "ERR_CLI_USAGE");
    assert.equal(err.exitStatus, 2);
    return err.message;
  }
  assert.fail("expected a usage error");
}

test("flags come out typed from the declaration", () => {
  const { flags, operands, name } = parseCommandInput("x", EXAMPLE, [
    "--agent-id",
    "bot",
    "--price",
    "a=1/2",
    "--price=b=3/4",
    "-n",
    "5",
    "--no-private",
    "--no-session",
    "--json",
    "s-1",
  ]);
  // A required flag is a string, not string | undefined.
  const agent: string = flags["agent-id"];
  assert.equal(agent, "bot");
  assert.deepEqual(flags.price, ["a=1/2", "b=3/4"]);
  assert.equal(flags.lines, "5");
  assert.equal(flags.private, false);
  assert.equal(flags.session, false);
  assert.equal(flags.json, true);
  assert.equal(flags["max-requests"], undefined);
  assert.deepEqual(operands, ["s-1"]);
  assert.equal(name, "x");
  // @ts-expect-error a misspelt flag name does not compile
  assert.equal(flags["max-requets"], undefined);
});

test("a negative number is a flag's value, so that the value check can explain it", () => {
  const { flags } = parseCommandInput("x", EXAMPLE, ["--agent-id", "a", "--max-requests", "-1"]);
  assert.equal(flags["max-requests"], "-1");
});

const refusals: [string, string[], RegExp][] = [
  ["unknown flag", ["--agent-id", "a", "--agent-idd", "b"], /^x: Unknown option '--agent-idd'/],
  ["missing required flag", ["--json"], /^x: --agent-id is required$/],
  ["missing value", ["--agent-id"], /^x: Option '--agent-id <value>' argument missing/],
  ["--no- of a flag without negation", ["--agent-id", "a", "--no-json"], /'--no-json'/],
  ["the positive spelling of a --no- only flag", ["--agent-id", "a", "--session"], /'--session'/],
  ["too many operands", ["--agent-id", "a", "one", "two"], /extra argument \(position 2\)$/],
  ["a value for a boolean", ["--agent-id", "a", "--json=1"], /does not take an argument/],
];

for (const [name, args, message] of refusals) {
  test(`usage error: ${name}`, () => {
    assert.match(
      usageErrorOf(() => parseCommandInput("x", EXAMPLE, args)),
      message,
    );
  });
}

test("a pass-through command keeps everything after -- untouched", () => {
  const input = parseCommandInput("run", RUN_LIKE, ["--port", "80", "--", "ls", "--port", "-x"]);
  assert.equal(input.flags.port, "80");
  assert.deepEqual(input.operands, ["ls", "--port", "-x"]);
  assert.deepEqual(parseCommandInput("run", RUN_LIKE, []).operands, []);
  assert.match(
    usageErrorOf(() => parseCommandInput("run", RUN_LIKE, ["ls", "--", "x"])),
    /extra argument/,
  );
});
