import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, test } from "node:test";

import type { CommandSpec } from "../src/cli/command.js";
import { SECTIONS } from "../src/cli/declarations.js";
import { HELP_WIDTH, isGroup, usageLine } from "../src/cli/help.js";
import { CLI, errorCode, makeTempHome } from "./helpers/cli.js";

/**
 * Help, generated from the declarations: every group and command answers --help and -h with
 * its usage line, its summary and every flag it declares, on stdout, exit 0, in lines no wider
 * than the terminal's 100 columns. The built CLI is what runs.
 */

const home = makeTempHome("vallignus-help-");
after(() => {
  home.cleanup();
});

function assertHelpOutput(args: readonly string[]): string {
  const r = home.run(...args);
  assert.equal(r.status, 0, `vallignus ${args.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr, "", "nothing on stderr");
  for (const line of r.stdout.split("\n"))
    assert.ok(line.length <= HELP_WIDTH, `${args.join(" ")}: line over ${HELP_WIDTH}: ${line}`);
  return r.stdout;
}

const commands: [string, CommandSpec][] = SECTIONS.flatMap(({ entries }) =>
  Object.entries(entries).flatMap(([name, entry]): [string, CommandSpec][] =>
    isGroup(entry)
      ? Object.entries(entry.commands).map(([command, spec]) => [`${name} ${command}`, spec])
      : [[name, entry]],
  ),
);

describe("every command answers --help with its usage, summary and flags", () => {
  for (const [name, spec] of commands) {
    for (const ask of ["--help", "-h"]) {
      test(`vallignus ${name} ${ask}`, () => {
        const text = assertHelpOutput([...name.split(" "), ask]);
        assert.ok(text.startsWith(`${usageLine(name, spec)}\n`), text);
        // A long description wraps under its column: compare the words.
        const words = text.replace(/\s+/g, " ");
        assert.ok(words.includes(spec.summary), "the summary");
        for (const [flag, declared] of Object.entries(spec.flags)) {
          const spelt = declared.negation === "only" ? `--no-${flag}` : flag;
          assert.ok(text.includes(spelt), `flag ${spelt}`);
          assert.ok(words.includes(declared.description), `description of ${flag}`);
          if (declared.value !== undefined)
            assert.ok(text.includes(`${spelt} ${declared.value}`), `value of ${flag}`);
        }
        assert.match(text, /-h, --help +print this help/);
      });
    }
  }
});

describe("every group answers --help with its commands", () => {
  const groups = SECTIONS.flatMap(({ entries }) =>
    Object.entries(entries).flatMap(([name, entry]) => (isGroup(entry) ? [{ name, entry }] : [])),
  );
  assert.deepEqual(
    groups.map((g) => g.name),
    ["auth", "audit", "sessions"],
  );
  for (const { name, entry } of groups) {
    for (const ask of ["--help", "-h"]) {
      test(`vallignus ${name} ${ask}`, () => {
        const text = assertHelpOutput([name, ask]);
        assert.ok(text.startsWith(`usage: vallignus ${name} <command> [options]\n`), text);
        for (const [command, spec] of Object.entries(entry.commands))
          assert.match(text, new RegExp(`^  ${command} +${escape(spec.summary)}$`, "m"));
      });
    }
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

test("vallignus --help lists every command in one set of columns, each line ≤ 100", () => {
  const text = assertHelpOutput(["--help"]);
  assert.equal(assertHelpOutput(["-h"]), text);
  assert.equal(assertHelpOutput(["help"]), text);
  const rows = commands.map(([name, spec]) => {
    const row = text.split("\n").find((line) => line.startsWith(`  ${name} `));
    assert.ok(row !== undefined, `a row for ${name}`);
    assert.ok(row.endsWith(spec.summary), `${name}'s summary`);
    return row;
  });
  const column = new Set(rows.map((row, i) => row.indexOf(commands[i]?.[1].summary ?? "")));
  assert.equal(column.size, 1, "every summary starts in the same column");
  // Without a command it is still the help, but the status says the command was missing.
  const bare = home.run();
  assert.equal(bare.status, 2);
  assert.equal(bare.stdout, text);
});

test("vallignus help run is vallignus run --help; help audit query is audit query --help", () => {
  assert.equal(assertHelpOutput(["help", "run"]), assertHelpOutput(["run", "--help"]));
  assert.equal(
    assertHelpOutput(["help", "audit", "query"]),
    assertHelpOutput(["audit", "query", "--help"]),
  );
});

test("--help after run's -- belongs to the command, not to vallignus", () => {
  const r = home.run("run", "--", "true", "--help");
  // No token in this home: run itself refuses, so the --help was not taken as vallignus's.
  assert.equal(r.status, 3, r.stderr);
  assert.equal(errorCode(r.stderr), "ERR_TOKEN_MISSING");
});

test("help and --version load only the declarations, none of the commands' modules", () => {
  // A module hook that notes every module the CLI loads.
  const log = join(home.root, "loaded.log");
  const hooks = join(home.root, "hooks.mjs");
  writeFileSync(
    hooks,
    `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, resolved.url + "\\n");
  return resolved;
}\n`,
  );
  const register = join(home.root, "register.mjs");
  writeFileSync(
    register,
    `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );
  for (const args of [
    ["--help"],
    ["auth", "create-policy", "--help"],
    ["run", "-h"],
    ["--version"],
  ]) {
    writeFileSync(log, "");
    const r = spawnSync(process.execPath, ["--import", register, CLI, ...args], {
      env: home.env,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const loaded = readFileSync(log, "utf8").trim().split("\n");
    assert.ok(
      loaded.some((url) => url.endsWith("/dist/cli/main.js")),
      "the hook saw the CLI",
    );
    const heavy = loaded.filter((url) => /(auth|audit|run|spend)-command|authority-/.test(url));
    assert.deepEqual(heavy, [], `vallignus ${args.join(" ")} loaded no command module`);
  }
});

test("--version prints package.json's version", () => {
  const pkg = JSON.parse(readFileSync(resolve(import.meta.dirname, "../package.json"), "utf8")) as {
    version: string;
  };
  const r = home.run("--version");
  assert.equal(r.status, 0);
  assert.equal(r.stdout, `${pkg.version}\n`);
});

describe("a flag that is not declared is a usage error (exit 2, ERR_CLI_USAGE)", () => {
  const cases: [string, string[]][] = [
    ["a misspelt flag", ["auth", "create-agent", "--agent-idd", "a", "--owner", "o"]],
    ["a flag of another command", ["auth", "list-agents", "--owner", "o"]],
    ["a misspelt --no-session", ["run", "--no-sesion", "--", "true"]],
    ["--session, which has only its --no- spelling", ["run", "--session", "--", "true"]],
    ["--no- of a flag that has none", ["auth", "list-agents", "--no-json"]],
    ["a value given to a boolean flag", ["audit", "verify", "--json=yes"]],
    ["a required flag left out", ["auth", "create-agent", "--agent-id", "a"]],
    ["an extra argument", ["sessions", "list", "extra"]],
  ];
  for (const [name, args] of cases) {
    test(name, () => {
      const r = home.run(...args);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(errorCode(r.stderr), "ERR_CLI_USAGE", r.stderr);
      assert.equal(r.stdout, "");
    });
  }
  test("an unknown command of a group", () => {
    const r = home.run("auth", "frobnicate", "--help");
    assert.equal(r.status, 2);
    assert.equal(errorCode(r.stderr), "ERR_CLI_UNKNOWN_COMMAND");
  });
});
