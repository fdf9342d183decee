import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { after, describe, test } from "node:test";

import { CLI, errorCode, makeTempHome, type CliResult } from "./helpers/cli.js";

/*
 * The secret commands as a user runs them (the built CLI, a temporary home): values go in by
 * stdin or a variable, come out nowhere. Every command's output in this file is kept, and at the
 * end none of it, and no file under the home but the secret's own, holds any value used here.
 */

const t = makeTempHome("vallignus-secrets-");
after(() => {
  t.cleanup();
});

const VALUES = {
  openai: "sk-proj-Qx7vN2kLmP9rT4wZ8yB3cD6fH1jK5sA0",
  openaiRotated: "sk-proj-Zz9yX8wV7uT6sR5qP4oN3mL2kJ1iH0gF",
  github: "ghp_R4nd0mL00k1ngT0k3nV4lu3F0rT3st1ng99",
  anthropic: "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
  refused: "sk-this-one-is-never-stored-0123456789",
};
const ALL_VALUES = Object.values(VALUES);

/** Every output of every command in this file, checked at the end for values. */
const outputs: { args: string[]; stdout: string; stderr: string }[] = [];

function cli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...t.env, ...options.env },
    input: options.input ?? "",
    encoding: "utf8",
  });
  outputs.push({ args, stdout: r.stdout, stderr: r.stderr });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[], options?: { input?: string; env?: NodeJS.ProcessEnv }): string {
  const r = cli(args, options);
  assert.equal(r.status, 0, `vallignus ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function fails(
  args: string[],
  code: string,
  status: number,
  options?: { input?: string; env?: NodeJS.ProcessEnv },
): string {
  const r = cli(args, options);
  assert.equal(errorCode(r.stderr), code, `vallignus ${args.join(" ")}: ${r.stderr}`);
  assert.equal(r.status, status, r.stderr);
  assert.equal(r.stdout, "", "nothing on stdout");
  return r.stderr;
}

const fingerprint = (value: string) => createHash("sha256").update(value).digest("hex").slice(0, 8);

interface ListedSecret {
  name: string;
  hosts: string[];
  placements: unknown[];
  created_at: string;
  rotated_at: string | null;
  fingerprint: string;
}

const listed = () => JSON.parse(ok(["auth", "list-secrets", "--json"])) as ListedSecret[];
const secretFile = (name: string) => join(t.home, "secrets", `${name}.json`);
const mode = (path: string) => statSync(path).mode & 0o777;

ok(["auth", "init"]);
ok(["auth", "create-agent", "--agent-id", "bot", "--owner", "you@example.com"]);

describe("set, list, rotate, remove", () => {
  test("set-secret reads the value from stdin (one line break removed): 0600 file in a 0700 folder", () => {
    const out = ok(
      ["auth", "set-secret", "--name", "OPENAI_API_KEY", "--hosts", "api.openai.com"],
      {
        input: `${VALUES.openai}\n`,
      },
    );
    assert.match(
      out,
      new RegExp(`stored secret OPENAI_API_KEY \\(fingerprint ${fingerprint(VALUES.openai)}\\)`),
    );
    assert.equal(mode(join(t.home, "secrets")), 0o700);
    assert.equal(mode(secretFile("OPENAI_API_KEY")), 0o600);
    const file = JSON.parse(readFileSync(secretFile("OPENAI_API_KEY"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.equal(file["value"], VALUES.openai, "stored without the line break");
  });

  test("set-secret --from-env reads the variable; --header and --template say where it goes", () => {
    const out = ok(
      [
        "auth",
        "set-secret",
        "--name",
        "GITHUB_TOKEN",
        "--hosts",
        "api.github.com",
        "--header",
        "Authorization",
        "--template",
        "token {secret}",
        "--from-env",
        "GH_VALUE",
        "--json",
      ],
      { env: { GH_VALUE: VALUES.github } },
    );
    const meta = JSON.parse(out) as ListedSecret;
    assert.deepEqual(meta.placements, [
      { kind: "header", name: "authorization", template: "token {secret}" },
    ]);
    assert.equal(meta.fingerprint, fingerprint(VALUES.github));
    assert.equal(meta.rotated_at, null);
  });

  test("list-secrets shows name, hosts, where, dates and fingerprint, never the value", () => {
    const text = ok(["auth", "list-secrets"]);
    const [header, ...rows] = text.trimEnd().split("\n");
    assert.match(header ?? "", /^NAME +HOSTS +WHERE +CREATED +ROTATED +FINGERPRINT$/);
    assert.equal(rows.length, 2);
    assert.match(
      rows[0] ?? "",
      /^GITHUB_TOKEN +api\.github\.com +header authorization: token \{secret\} +\S+ +- +[0-9a-f]{8}$/,
    );
    assert.match(
      rows[1] ?? "",
      new RegExp(
        `^OPENAI_API_KEY +api\\.openai\\.com +header authorization: Bearer \\{secret\\} .* ${fingerprint(VALUES.openai)}$`,
      ),
    );
    assert.deepEqual(
      listed().map((s) => [s.name, s.fingerprint]),
      [
        ["GITHUB_TOKEN", fingerprint(VALUES.github)],
        ["OPENAI_API_KEY", fingerprint(VALUES.openai)],
      ],
    );
  });

  test("rotate-secret takes a new value (stdin), keeps hosts and placements, stamps rotated_at", () => {
    const before = listed().find((s) => s.name === "OPENAI_API_KEY");
    const out = ok(["auth", "rotate-secret", "--name", "OPENAI_API_KEY"], {
      input: `${VALUES.openaiRotated}\r\n`,
    });
    assert.match(out, new RegExp(`fingerprint now ${fingerprint(VALUES.openaiRotated)}`));
    const now = listed().find((s) => s.name === "OPENAI_API_KEY");
    assert.ok(now !== undefined && before !== undefined);
    assert.equal(now.fingerprint, fingerprint(VALUES.openaiRotated));
    assert.deepEqual(now.placements, before.placements);
    assert.equal(now.created_at, before.created_at);
    assert.notEqual(now.rotated_at, null);
    assert.equal(mode(secretFile("OPENAI_API_KEY")), 0o600);
  });

  test("remove-secret removes it, and names the policies whose runs it will stop", () => {
    ok(["auth", "set-secret", "--name", "ANTHROPIC_API_KEY", "--hosts", "api.anthropic.com"], {
      input: VALUES.anthropic,
    });
    ok([
      "auth",
      "create-policy",
      "--policy-id",
      "uses-anthropic",
      "--max-spend-usd",
      "1",
      "--allowed-domains",
      "api.anthropic.com",
      "--secrets",
      "ANTHROPIC_API_KEY",
    ]);
    const out = ok(["auth", "remove-secret", "--name", "ANTHROPIC_API_KEY"]);
    assert.match(out, /^removed secret ANTHROPIC_API_KEY\n/);
    assert.match(out, /refuse to start\): uses-anthropic$/m);
    assert.deepEqual(
      listed().map((s) => s.name),
      ["GITHUB_TOKEN", "OPENAI_API_KEY"],
    );
    assert.deepEqual(readdirSync(join(t.home, "secrets")).sort(), [
      "GITHUB_TOKEN.json",
      "OPENAI_API_KEY.json",
    ]);
  });
});

describe("where the value goes is inferred for known LLM hosts", () => {
  const cases: [string, string[], string][] = [
    ["OpenAI", ["--hosts", "api.openai.com"], "header authorization: Bearer {secret}"],
    [
      "OpenAI-style hosts together",
      ["--hosts", "api.groq.com,api.openai.com,*.api.openai.com"],
      "header authorization: Bearer {secret}",
    ],
    [
      "Anthropic",
      ["--hosts", "api.anthropic.com"],
      "header x-api-key; header authorization: Bearer {secret}",
    ],
    [
      "Gemini",
      ["--hosts", "generativelanguage.googleapis.com"],
      "header x-goog-api-key; query key",
    ],
    ["Azure OpenAI (a wildcard)", ["--hosts", "*.openai.azure.com"], "header api-key"],
    ["a header given", ["--hosts", "example.com", "--header", "X-Api-Token"], "header x-api-token"],
    [
      "a query parameter given",
      ["--hosts", "example.com:8443", "--query", "access_token"],
      "query access_token",
    ],
  ];
  let n = 0;
  for (const [label, flags, where] of cases) {
    test(label, () => {
      const name = `INFER_${String(++n)}`;
      const out = ok(["auth", "set-secret", "--name", name, ...flags], { input: VALUES.refused });
      assert.ok(out.endsWith(`: ${where}\n`), out);
      ok(["auth", "remove-secret", "--name", name]);
    });
  }
});

describe("every error path has its code and exit status, and shows no value", () => {
  const set = (name: string, ...flags: string[]) => [
    "auth",
    "set-secret",
    "--name",
    name,
    ...flags,
  ];
  const openai = ["--hosts", "api.openai.com"];
  const cases: [string, string[], string, number, { input?: string; env?: NodeJS.ProcessEnv }][] = [
    [
      "a name already held",
      set("OPENAI_API_KEY", ...openai),
      "ERR_SECRET_EXISTS",
      1,
      { input: VALUES.refused },
    ],
    [
      "rotating a secret that does not exist",
      ["auth", "rotate-secret", "--name", "NOPE"],
      "ERR_SECRET_NOT_FOUND",
      1,
      { input: VALUES.refused },
    ],
    [
      "removing a secret that does not exist",
      ["auth", "remove-secret", "--name", "NOPE"],
      "ERR_SECRET_NOT_FOUND",
      1,
      {},
    ],
    [
      "a lower-case name",
      set("openai_key", ...openai),
      "ERR_SECRET_NAME_INVALID",
      2,
      { input: VALUES.refused },
    ],
    [
      "a name with a path in it",
      set("../KEY", ...openai),
      "ERR_SECRET_NAME_INVALID",
      2,
      { input: VALUES.refused },
    ],
    [
      "a value of 15 characters",
      set("SHORT", ...openai),
      "ERR_SECRET_VALUE_INVALID",
      2,
      { input: VALUES.refused.slice(0, 15) },
    ],
    [
      "a value with a space",
      set("SPACED", ...openai),
      "ERR_SECRET_VALUE_INVALID",
      2,
      { input: `${VALUES.refused} x` },
    ],
    [
      "a value of two lines",
      set("TWO_LINES", ...openai),
      "ERR_SECRET_VALUE_INVALID",
      2,
      { input: `${VALUES.refused}\n${VALUES.refused}\n` },
    ],
    ["nothing on stdin", set("EMPTY", ...openai), "ERR_SECRET_VALUE_INVALID", 2, { input: "" }],
    [
      "--from-env naming an unset variable",
      set("UNSET", ...openai, "--from-env", "NO_SUCH_VAR_X"),
      "ERR_SECRET_VALUE_INVALID",
      2,
      {},
    ],
    [
      "the value as an argument (refused: argv is public)",
      [...set("ARGV", ...openai), VALUES.refused],
      "ERR_CLI_USAGE",
      2,
      {},
    ],
    [
      "the value as a flag",
      [...set("ARGV", ...openai), `--value=${VALUES.refused}`],
      "ERR_CLI_USAGE",
      2,
      {},
    ],
    [
      "a host that is no known LLM API, without --header",
      set("PLAIN", "--hosts", "example.com"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "hosts of two LLM families",
      set("MIXED", "--hosts", "api.openai.com,api.anthropic.com"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "Vertex AI (OAuth, not keys)",
      set("VERTEX", "--hosts", "aiplatform.googleapis.com"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a template without {secret}",
      set("TPL", "--hosts", "example.com", "--header", "authorization", "--template", "token"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a template with {secret} twice",
      set(
        "TPL",
        "--hosts",
        "example.com",
        "--header",
        "authorization",
        "--template",
        "{secret}{secret}",
      ),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a template without --header",
      set("TPL", "--hosts", "example.com", "--template", "token {secret}"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a header that frames the request",
      set("HOST", "--hosts", "example.com", "--header", "Host"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a header name with a space",
      set("SP", "--hosts", "example.com", "--header", "x api"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a bad query parameter",
      set("Q", "--hosts", "example.com", "--query", "a&b"),
      "ERR_SECRET_PLACEMENT",
      2,
      { input: VALUES.refused },
    ],
    [
      "a bad host",
      set("BAD_HOST", "--hosts", "*.com", "--header", "x-k"),
      "ERR_POLICY_DOMAIN_INVALID",
      2,
      { input: VALUES.refused },
    ],
    [
      "no host",
      set("NO_HOST", "--hosts", " , ", "--header", "x-k"),
      "ERR_POLICY_DOMAIN_INVALID",
      2,
      { input: VALUES.refused },
    ],
    [
      "--hosts left out",
      ["auth", "set-secret", "--name", "NO_HOSTS"],
      "ERR_CLI_USAGE",
      2,
      { input: VALUES.refused },
    ],
  ];
  for (const [label, args, code, status, options] of cases) {
    test(label, () => {
      const stderr = fails(args, code, status, options);
      for (const value of ALL_VALUES) assert.ok(!stderr.includes(value), "no value in the message");
    });
  }

  test("a terminal on stdin is refused, naming --from-env and the pipe", () => {
    // script(1) gives the command a pseudo-terminal for stdin and stdout.
    const command = [
      process.execPath,
      CLI,
      "auth",
      "set-secret",
      "--name",
      "TTY_KEY",
      "--hosts",
      "api.openai.com",
    ]
      .map((word) => `'${word}'`)
      .join(" ");
    const r = spawnSync("script", ["-qec", command, "/dev/null"], {
      env: t.env,
      encoding: "utf8",
      input: "",
    });
    outputs.push({ args: ["script", command], stdout: r.stdout, stderr: r.stderr });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /stdin is a terminal; pipe the value in .* or give --from-env VAR \[ERR_CLI_USAGE\]/,
    );
    assert.ok(!listed().some((s) => s.name === "TTY_KEY"));
  });

  test("a home not initialized is refused before the value is read", () => {
    const other = makeTempHome("vallignus-secrets-uninit-");
    try {
      const r = spawnSync(
        process.execPath,
        [CLI, "auth", "set-secret", "--name", "K", "--hosts", "api.openai.com"],
        {
          env: other.env,
          input: VALUES.refused,
          encoding: "utf8",
        },
      );
      outputs.push({ args: ["uninitialized"], stdout: r.stdout, stderr: r.stderr });
      assert.equal(r.status, 1);
      assert.equal(errorCode(r.stderr), "ERR_HOME_NOT_INITIALIZED");
    } finally {
      other.cleanup();
    }
  });

  test("nothing refused was stored", () => {
    assert.deepEqual(
      listed().map((s) => s.name),
      ["GITHUB_TOKEN", "OPENAI_API_KEY"],
    );
  });
});

describe("policies name secrets, inspected hosts and request rules", () => {
  const create = (id: string, ...flags: string[]) => [
    "auth",
    "create-policy",
    "--policy-id",
    id,
    "--max-spend-usd",
    "1",
    "--allowed-domains",
    "api.openai.com,api.github.com",
    ...flags,
  ];

  test("a policy naming a missing secret is refused ERR_SECRET_NOT_FOUND (exit 1), on create and update", () => {
    fails(create("missing", "--secrets", "OPENAI_API_KEY,NOT_STORED"), "ERR_SECRET_NOT_FOUND", 1);
    assert.equal(
      cli(["auth", "show-policy", "--policy-id", "missing"]).status,
      1,
      "nothing written",
    );
    fails(create("badname", "--secrets", "lower"), "ERR_SECRET_NAME_INVALID", 2);
    ok(create("keys"));
    fails(
      ["auth", "update-policy", "--policy-id", "keys", "--secrets", "NOT_STORED"],
      "ERR_SECRET_NOT_FOUND",
      1,
    );
    fails(
      ["auth", "update-policy", "--policy-id", "keys", "--inspect-hosts", "*.com"],
      "ERR_POLICY_DOMAIN_INVALID",
      2,
    );
  });

  test("show-policy prints the four fields; --json holds them; update replaces, none clears", () => {
    ok(
      create(
        "full",
        "--secrets",
        "OPENAI_API_KEY, GITHUB_TOKEN",
        "--inspect-hosts",
        "API.GitHub.com",
      ),
    );
    const text = ok(["auth", "show-policy", "--policy-id", "full"]);
    assert.match(text, /^secrets +GITHUB_TOKEN, OPENAI_API_KEY$/m);
    assert.match(text, /^inspect hosts +api\.github\.com$/m);
    assert.match(text, /^allow requests +\(none\)$/m);
    assert.match(text, /^deny requests +\(none\)$/m);
    const v1 = JSON.parse(ok(["auth", "show-policy", "--policy-id", "full", "--json"])) as Record<
      string,
      unknown
    >;
    assert.deepEqual(v1["secrets"], ["GITHUB_TOKEN", "OPENAI_API_KEY"]);
    assert.deepEqual(v1["inspect_hosts"], ["api.github.com"]);
    assert.deepEqual(v1["allow_requests"], []);
    assert.deepEqual(v1["deny_requests"], []);

    ok(["auth", "update-policy", "--policy-id", "full", "--secrets", "GITHUB_TOKEN"]);
    const v2 = JSON.parse(ok(["auth", "show-policy", "--policy-id", "full", "--json"])) as Record<
      string,
      unknown
    >;
    assert.deepEqual(v2["secrets"], ["GITHUB_TOKEN"], "a given list replaces");
    assert.deepEqual(v2["inspect_hosts"], ["api.github.com"], "a list not given stays");

    ok([
      "auth",
      "update-policy",
      "--policy-id",
      "full",
      "--secrets",
      "none",
      "--inspect-hosts",
      "none",
    ]);
    const v3 = JSON.parse(ok(["auth", "show-policy", "--policy-id", "full", "--json"])) as Record<
      string,
      unknown
    >;
    assert.deepEqual([v3["secrets"], v3["inspect_hosts"]], [[], []]);
    const file = readFileSync(join(t.home, "policies", "full", "v0003.json"), "utf8");
    assert.ok(
      !file.includes('"secrets"') && !file.includes('"inspect_hosts"'),
      "empty lists are not written",
    );
  });

  test("request rules: comma lists, the flag repeated, stored canonical; update replaces, none clears", () => {
    ok(
      create(
        "rules",
        "--allow-requests",
        "GET API.GitHub.com/repos/acme/*, * uploads.example.com/**",
        "--allow-requests",
        "POST api.openai.com/v1/chat/completions",
        "--deny-requests",
        "DELETE api.github.com/**",
      ),
    );
    const show = () =>
      JSON.parse(ok(["auth", "show-policy", "--policy-id", "rules", "--json"])) as Record<
        string,
        unknown
      >;
    const v1 = show();
    assert.deepEqual(v1["allow_requests"], [
      "* uploads.example.com/**",
      "GET api.github.com/repos/acme/*",
      "POST api.openai.com/v1/chat/completions",
    ]);
    assert.deepEqual(v1["deny_requests"], ["DELETE api.github.com/**"]);
    assert.match(
      ok(["auth", "show-policy", "--policy-id", "rules"]),
      /^deny requests +DELETE api\.github\.com\/\*\*$/m,
    );
    ok([
      "auth",
      "update-policy",
      "--policy-id",
      "rules",
      "--allow-requests",
      "GET api.github.com/**",
    ]);
    assert.deepEqual(show()["allow_requests"], ["GET api.github.com/**"]);
    assert.deepEqual(show()["deny_requests"], ["DELETE api.github.com/**"], "not given: kept");
    ok(["auth", "update-policy", "--policy-id", "rules", "--deny-requests", "none"]);
    assert.deepEqual(show()["deny_requests"], []);
  });

  describe("a bad request rule is refused ERR_POLICY_RULE_INVALID (exit 2), nothing written", () => {
    const bad: [string, string][] = [
      ["a lower-case method", "get api.github.com/x"],
      ["no path", "GET api.github.com"],
      ["a query in the glob", "GET api.github.com/x?y=1"],
      ["a dot segment", "GET api.github.com/a/../b"],
      ["** inside a segment", "GET api.github.com/a**"],
      ["an over-broad host", "GET *.com/x"],
      ["no method", "api.github.com/x"],
    ];
    for (const [label, rule] of bad) {
      test(label, () => {
        fails(
          create(`bad-${label.replace(/[^a-z]+/g, "-")}`, "--allow-requests", rule),
          "ERR_POLICY_RULE_INVALID",
          2,
        );
        fails(
          ["auth", "update-policy", "--policy-id", "keys", "--deny-requests", rule],
          "ERR_POLICY_RULE_INVALID",
          2,
        );
      });
    }
    test("the policies were not written", () => {
      assert.deepEqual(
        (
          JSON.parse(ok(["auth", "list-policies", "--json"])) as {
            policy_id: string;
            version: number;
          }[]
        ).map((p) => [p.policy_id, p.version]),
        [
          ["full", 3],
          ["keys", 1],
          ["rules", 3],
          ["uses-anthropic", 1],
        ],
      );
    });
  });

  test("a token of a policy with secrets verifies; and so does one of its older version without them", () => {
    ok(create("tokens"));
    ok(["auth", "update-policy", "--policy-id", "tokens", "--secrets", "OPENAI_API_KEY"]);
    for (const version of ["1", "2"]) {
      const token = ok([
        "auth",
        "issue-token",
        "--agent-id",
        "bot",
        "--policy-id",
        "tokens",
        "--version",
        version,
      ]).trim();
      const r = cli(["auth", "verify-token", token]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`policy tokens v${version}`));
    }
  });
});

/** The CLI with `input` on stdin, not waited for: several at once. */
function cliAsync(args: string[], input: string): Promise<CliResult> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: t.env });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdin.end(input);
    child.on("close", (status) => {
      outputs.push({ args, stdout, stderr });
      done({ status, stdout, stderr });
    });
  });
}

test("six set-secret of one name at once: one stores its value, five are ERR_SECRET_EXISTS", async () => {
  const values = Array.from({ length: 6 }, (_, i) => `${VALUES.refused}-racer-${String(i)}`);
  const results = await Promise.all(
    values.map((value) =>
      cliAsync(["auth", "set-secret", "--name", "RACED", "--hosts", "api.openai.com"], value),
    ),
  );
  const winners = results.flatMap((r, i) => (r.status === 0 ? [i] : []));
  assert.equal(winners.length, 1, results.map((r) => r.stderr).join(""));
  for (const r of results.filter((r) => r.status !== 0))
    assert.equal(errorCode(r.stderr), "ERR_SECRET_EXISTS");
  const stored = JSON.parse(readFileSync(secretFile("RACED"), "utf8")) as { value: string };
  assert.equal(stored.value, values[winners[0] ?? -1]);
  assert.deepEqual(
    readdirSync(join(t.home, "secrets")).filter((f) => f.startsWith(".")),
    [],
    "no lock or temp file left",
  );
  ok(["auth", "remove-secret", "--name", "RACED"]);
});

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

test("no value is in any command's output, nor in any file of the home but its own", () => {
  assert.ok(outputs.length > 40, "the outputs of the tests above were kept");
  for (const { args, stdout, stderr } of outputs) {
    for (const value of ALL_VALUES) {
      assert.ok(!stdout.includes(value) && !stderr.includes(value), `output of ${args.join(" ")}`);
    }
  }
  const owners: Record<string, string> = {
    [VALUES.openaiRotated]: "secrets/OPENAI_API_KEY.json",
    [VALUES.github]: "secrets/GITHUB_TOKEN.json",
  };
  for (const path of filesUnder(t.home)) {
    const bytes = readFileSync(path);
    for (const value of ALL_VALUES) {
      if (!bytes.includes(value)) continue;
      assert.equal(
        relative(t.home, path),
        owners[value],
        `${relative(t.home, path)} holds a value`,
      );
    }
  }
  // The rotated-away value and the removed secret's value are gone from the disk.
  const everything = filesUnder(t.home).map((path) => readFileSync(path));
  for (const gone of [VALUES.openai, VALUES.anthropic, VALUES.refused]) {
    assert.ok(!everything.some((bytes) => bytes.includes(gone)), "a value no longer held");
  }
});
