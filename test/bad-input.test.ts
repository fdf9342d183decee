import assert from "node:assert/strict";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, relative } from "node:path";
import { after, test } from "node:test";

import { errorCode, makeQuickstartHome, makeTempHome, type TempHome } from "./helpers/cli.js";

/**
 * Bad input to `vallignus auth`: each case is one line on stderr with a stable code and the
 * documented exit status, and leaves the home exactly as it was. Then the inputs that look odd
 * but are valid, and what `auth init` guarantees about the files it writes.
 */

type Snapshot = Record<string, string>;

/** Every path under the home with its mode, and for files their bytes. */
function snapshot(root: string): Snapshot {
  const out: Snapshot = {};
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const key = relative(root, path);
      const mode = (statSync(path).mode & 0o777).toString(8);
      if (entry.isDirectory()) {
        out[`${key}/`] = mode;
        walk(path);
      } else {
        out[key] = `${mode} ${readFileSync(path).toString("base64")}`;
      }
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Runs a command that must fail cleanly, and checks that it changed nothing in the home. */
function assertRefusedCleanly(t: TempHome, args: readonly string[], code: string, status: number) {
  const before = snapshot(t.home);
  const r = t.run(...args);
  assert.equal(r.status, status, `exit status of vallignus ${args.join(" ")}: ${r.stderr}`);
  assert.equal(errorCode(r.stderr), code, `one line ending [${code}], got: ${r.stderr}`);
  assert.equal(r.stdout, "", "nothing on stdout");
  assert.deepEqual(snapshot(t.home), before, "the home is unchanged");
}

const home = makeQuickstartHome();
home.ok("auth", "create-agent", "--agent-id", "off-bot", "--owner", "off@example.com");
home.ok("auth", "disable-agent", "--agent-id", "off-bot");
after(() => {
  home.cleanup();
});

const POLICY = ["--max-spend-usd", "5", "--allowed-domains", "example.com"];

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly code: string;
  readonly status: number;
}

const badIds = ["Bad", "-x", "a/b", "..", ".hidden", "x".repeat(65), ""];
const badSpends = ["-1", "abc", "1.0000000001", "1e9", "2000000", ""];
const badDomains = [
  "*",
  "*.com",
  "*.co.uk",
  "com",
  "co.uk",
  "*.github.io",
  "*.internal",
  "a..b.com",
  "xn--zz.com",
  "example.com:0",
  "example.com:70000",
  "ex ample.com",
  "example.com,*",
];

const cases: Case[] = [
  ...badIds.flatMap((id): Case[] => [
    {
      name: `create-agent with invalid id ${JSON.stringify(id)}`,
      args: ["auth", "create-agent", `--agent-id=${id}`, "--owner", "o@example.com"],
      code: "ERR_ID_INVALID",
      status: 2,
    },
    {
      name: `create-policy with invalid id ${JSON.stringify(id)}`,
      args: ["auth", "create-policy", `--policy-id=${id}`, ...POLICY],
      code: "ERR_ID_INVALID",
      status: 2,
    },
  ]),
  {
    name: "issue-token with an invalid agent id",
    args: ["auth", "issue-token", "--agent-id", "../agents/support-bot", "--policy-id", "support"],
    code: "ERR_ID_INVALID",
    status: 2,
  },
  {
    name: "revoke-token with an invalid jti",
    args: ["auth", "revoke-token", "--jti", "../keys/active"],
    code: "ERR_ID_INVALID",
    status: 2,
  },
  {
    name: "create-agent with an empty owner",
    args: ["auth", "create-agent", "--agent-id", "new-bot", "--owner", "  "],
    code: "ERR_AGENT_OWNER_INVALID",
    status: 2,
  },
  ...badSpends.map((spend): Case => ({
    name: `create-policy --max-spend-usd ${JSON.stringify(spend)}`,
    args: [
      "auth",
      "create-policy",
      "--policy-id",
      "spend",
      "--max-spend-usd",
      spend,
      "--allowed-domains",
      "example.com",
    ],
    code: "ERR_POLICY_SPEND_INVALID",
    status: 2,
  })),
  {
    name: "update-policy --max-spend-usd -1",
    args: ["auth", "update-policy", "--policy-id", "support", "--max-spend-usd", "-1"],
    code: "ERR_POLICY_SPEND_INVALID",
    status: 2,
  },
  ...badDomains.map((domain): Case => ({
    name: `create-policy --allowed-domains ${JSON.stringify(domain)}`,
    args: [
      "auth",
      "create-policy",
      "--policy-id",
      "domains",
      "--max-spend-usd",
      "5",
      "--allowed-domains",
      domain,
    ],
    code: "ERR_POLICY_DOMAIN_INVALID",
    status: 2,
  })),
  {
    name: "create-policy --denied-domains *.com",
    args: [
      "auth",
      "create-policy",
      "--policy-id",
      "domains",
      ...POLICY,
      "--denied-domains",
      "*.com",
    ],
    code: "ERR_POLICY_DOMAIN_INVALID",
    status: 2,
  },
  {
    name: "update-policy --add-domains co.uk",
    args: ["auth", "update-policy", "--policy-id", "support", "--add-domains", "co.uk"],
    code: "ERR_POLICY_DOMAIN_INVALID",
    status: 2,
  },
  {
    name: "update-policy --allowed-domains *",
    args: ["auth", "update-policy", "--policy-id", "support", "--allowed-domains", "*"],
    code: "ERR_POLICY_DOMAIN_INVALID",
    status: 2,
  },
  {
    name: "update-policy --remove-domains of a domain not in the list",
    args: ["auth", "update-policy", "--policy-id", "support", "--remove-domains", "example.org"],
    code: "ERR_POLICY_DOMAIN_ABSENT",
    status: 2,
  },
  // Not found, disabled, already exists: failures, exit 1.
  {
    name: "issue-token for an unknown agent",
    args: ["auth", "issue-token", "--agent-id", "ghost", "--policy-id", "support"],
    code: "ERR_AGENT_NOT_FOUND",
    status: 1,
  },
  {
    name: "issue-token for an unknown policy",
    args: ["auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "ghost"],
    code: "ERR_POLICY_NOT_FOUND",
    status: 1,
  },
  {
    name: "issue-token for an unknown policy version",
    args: [
      "auth",
      "issue-token",
      "--agent-id",
      "support-bot",
      "--policy-id",
      "support",
      "--version",
      "7",
    ],
    code: "ERR_POLICY_VERSION_NOT_FOUND",
    status: 1,
  },
  {
    name: "issue-token for a disabled agent",
    args: ["auth", "issue-token", "--agent-id", "off-bot", "--policy-id", "support"],
    code: "ERR_AGENT_DISABLED",
    status: 1,
  },
  {
    name: "show-policy of an unknown policy",
    args: ["auth", "show-policy", "--policy-id", "ghost"],
    code: "ERR_POLICY_NOT_FOUND",
    status: 1,
  },
  {
    name: "show-policy of an unknown version",
    args: ["auth", "show-policy", "--policy-id", "support", "--version", "2"],
    code: "ERR_POLICY_VERSION_NOT_FOUND",
    status: 1,
  },
  {
    name: "update-policy of an unknown policy",
    args: ["auth", "update-policy", "--policy-id", "ghost", "--max-spend-usd", "1"],
    code: "ERR_POLICY_NOT_FOUND",
    status: 1,
  },
  {
    name: "disable-agent of an unknown agent",
    args: ["auth", "disable-agent", "--agent-id", "ghost"],
    code: "ERR_AGENT_NOT_FOUND",
    status: 1,
  },
  {
    name: "duplicate create-agent",
    args: ["auth", "create-agent", "--agent-id", "support-bot", "--owner", "else@example.com"],
    code: "ERR_AGENT_EXISTS",
    status: 1,
  },
  {
    name: "duplicate create-policy",
    args: ["auth", "create-policy", "--policy-id", "support", ...POLICY],
    code: "ERR_POLICY_EXISTS",
    status: 1,
  },
  // Usage.
  { name: "unknown command", args: ["frobnicate"], code: "ERR_CLI_UNKNOWN_COMMAND", status: 2 },
  {
    name: "unknown auth command",
    args: ["auth", "frobnicate"],
    code: "ERR_CLI_UNKNOWN_COMMAND",
    status: 2,
  },
  { name: "auth without a command", args: ["auth"], code: "ERR_CLI_UNKNOWN_COMMAND", status: 2 },
  {
    name: "unknown flag",
    args: ["auth", "list-agents", "--bogus"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  {
    name: "flag without its value",
    args: ["auth", "create-agent", "--owner", "o@example.com", "--agent-id"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  {
    name: "create-agent without --owner",
    args: ["auth", "create-agent", "--agent-id", "new-bot"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  {
    name: "create-policy without --max-spend-usd",
    args: ["auth", "create-policy", "--policy-id", "p2", "--allowed-domains", "example.com"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  {
    name: "issue-token without --policy-id",
    args: ["auth", "issue-token", "--agent-id", "support-bot"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  {
    name: "revoke-token with neither --jti nor --token",
    args: ["auth", "revoke-token"],
    code: "ERR_CLI_USAGE",
    status: 2,
  },
  ...["0", "abc", "31d", "-5"].map((ttl): Case => ({
    name: `issue-token --ttl ${JSON.stringify(ttl)}`,
    args: [
      "auth",
      "issue-token",
      "--agent-id",
      "support-bot",
      "--policy-id",
      "support",
      "--ttl",
      ttl,
    ],
    code: "ERR_TOKEN_TTL",
    status: 2,
  })),
];

for (const c of cases) {
  test(`refused, nothing written: ${c.name}`, () => {
    assertRefusedCleanly(home, c.args, c.code, c.status);
  });
}

test("every auth command before `auth init` fails with ERR_HOME_NOT_INITIALIZED and creates nothing", () => {
  const fresh = makeTempHome();
  try {
    const commands: string[][] = [
      ["create-agent", "--agent-id", "a", "--owner", "o@example.com"],
      ["list-agents"],
      ["list-agents", "--json"],
      ["disable-agent", "--agent-id", "a"],
      ["enable-agent", "--agent-id", "a"],
      ["create-policy", "--policy-id", "p", ...POLICY],
      ["update-policy", "--policy-id", "p", "--max-spend-usd", "1"],
      ["show-policy", "--policy-id", "p"],
      ["list-policies"],
      ["issue-token", "--agent-id", "a", "--policy-id", "p"],
      ["inspect-token", "aaaa.bbbb.cccc"],
      ["verify-token", "aaaa.bbbb.cccc"],
      ["revoke-token", "--jti", "0123456789abcdef0123456789abcdef"],
      ["rotate-key"],
      ["list-keys"],
    ];
    for (const command of commands) {
      const r = fresh.run("auth", ...command);
      assert.equal(r.status, 1, `auth ${command.join(" ")}: ${r.stderr}`);
      assert.equal(errorCode(r.stderr), "ERR_HOME_NOT_INITIALIZED", r.stderr);
      assert.equal(r.stdout, "");
    }
    assert.equal(existsSync(fresh.home), false, "no command but init creates the home");

    // An existing but empty folder is not a home either, and stays empty.
    mkdirSync(fresh.home, { mode: 0o700 });
    const r = fresh.run("auth", "create-agent", "--agent-id", "a", "--owner", "o@example.com");
    assert.equal(r.status, 1);
    assert.equal(errorCode(r.stderr), "ERR_HOME_NOT_INITIALIZED");
    assert.deepEqual(readdirSync(fresh.home), []);
  } finally {
    fresh.cleanup();
  }
});

test("a truncated agent file is reported as ERR_HOME_CORRUPT, never guessed at", () => {
  const agentFile = join(home.home, "agents", "support-bot.json");
  const original = readFileSync(agentFile);
  try {
    writeFileSync(agentFile, original.subarray(0, 20));
    assertRefusedCleanly(home, ["auth", "list-agents"], "ERR_HOME_CORRUPT", 1);
    assertRefusedCleanly(home, ["auth", "list-agents", "--json"], "ERR_HOME_CORRUPT", 1);
    assertRefusedCleanly(
      home,
      ["auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support"],
      "ERR_HOME_CORRUPT",
      1,
    );
    // Verification fails closed: the token is not accepted while its agent cannot be read.
    const r = home.run("auth", "verify-token", home.token);
    assert.notEqual(r.status, 0);
    assert.ok(r.status === 1 || r.status === 3, `exit status ${String(r.status)}`);
    assert.match(errorCode(r.stderr) ?? "", /^ERR_(HOME_CORRUPT|TOKEN_[A-Z_]+)$/, r.stderr);
    assert.equal(r.stdout, "");

    writeFileSync(agentFile, "[]\n");
    assertRefusedCleanly(home, ["auth", "list-agents"], "ERR_HOME_CORRUPT", 1);
  } finally {
    writeFileSync(agentFile, original);
  }
  home.ok("auth", "list-agents");
});

test("a signing key readable by others is refused with ERR_HOME_INSECURE_PERMISSIONS", () => {
  const kid = readFileSync(join(home.home, "keys", "active"), "utf8").trim();
  const keyFile = join(home.home, "keys", `${kid}.json`);
  try {
    chmodSync(keyFile, 0o644);
    assertRefusedCleanly(
      home,
      ["auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support"],
      "ERR_HOME_INSECURE_PERMISSIONS",
      1,
    );
    assertRefusedCleanly(
      home,
      ["auth", "verify-token", home.token],
      "ERR_HOME_INSECURE_PERMISSIONS",
      1,
    );
    assertRefusedCleanly(home, ["auth", "list-keys"], "ERR_HOME_INSECURE_PERMISSIONS", 1);
  } finally {
    chmodSync(keyFile, 0o600);
  }
  assert.equal(home.run("auth", "verify-token", home.token).status, 0);
});

test("a home folder readable by others is refused with ERR_HOME_INSECURE_PERMISSIONS", () => {
  try {
    chmodSync(home.home, 0o755);
    assertRefusedCleanly(home, ["auth", "list-agents"], "ERR_HOME_INSECURE_PERMISSIONS", 1);
    assertRefusedCleanly(
      home,
      ["auth", "verify-token", home.token],
      "ERR_HOME_INSECURE_PERMISSIONS",
      1,
    );
  } finally {
    chmodSync(home.home, 0o700);
  }
});

test("keys/active readable by others is refused, as the README says", () => {
  const active = join(home.home, "keys", "active");
  try {
    chmodSync(active, 0o644);
    assertRefusedCleanly(
      home,
      ["auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support"],
      "ERR_HOME_INSECURE_PERMISSIONS",
      1,
    );
  } finally {
    chmodSync(active, 0o600);
  }
});

test("valid odd input: IDNs in punycode, case and one trailing dot normalized, 64-char id", () => {
  const created = JSON.parse(
    home.ok(
      "auth",
      "create-policy",
      "--policy-id",
      "idn",
      "--max-spend-usd",
      "0.000000001",
      "--allowed-domains",
      "bücher.example, Example.COM.,*.Sub.Example.org,api.example.net:8443",
      "--denied-domains",
      "BAD.example.com",
      "--json",
    ),
  ) as Record<string, unknown>;
  assert.deepEqual(created["allowed_domains"], [
    "*.sub.example.org",
    "api.example.net:8443",
    "example.com",
    "xn--bcher-kva.example",
  ]);
  assert.deepEqual(created["denied_domains"], ["bad.example.com"]);
  assert.equal(created["max_spend_usd"], "0.000000001");
  const onDisk = JSON.parse(
    readFileSync(join(home.home, "policies", "idn", "v0001.json"), "utf8"),
  ) as Record<string, unknown>;
  assert.deepEqual(onDisk["allowed_domains"], created["allowed_domains"]);

  const longId = `a${"b".repeat(63)}`;
  home.ok("auth", "create-agent", "--agent-id", longId, "--owner", "o@example.com");
  assert.ok(existsSync(join(home.home, "agents", `${longId}.json`)));
  const spent = JSON.parse(
    home.ok(
      "auth",
      "create-policy",
      "--policy-id",
      "max-spend",
      "--max-spend-usd",
      "1000000",
      "--allowed-domains",
      "",
      "--json",
    ),
  ) as Record<string, unknown>;
  assert.equal(spent["max_spend_usd"], "1000000");
  assert.deepEqual(spent["allowed_domains"], []);
});

test("update-policy --add-domains/--remove-domains write new versions; v1 never changes", () => {
  home.ok(
    "auth",
    "create-policy",
    "--policy-id",
    "web",
    "--max-spend-usd",
    "5",
    "--allowed-domains",
    "a.example.com,b.example.com",
  );
  const v1Path = join(home.home, "policies", "web", "v0001.json");
  const v1Bytes = readFileSync(v1Path);
  const show = (...extra: string[]) =>
    JSON.parse(home.ok("auth", "show-policy", "--policy-id", "web", "--json", ...extra)) as {
      version: number;
      max_spend_usd: string;
      allowed_domains: string[];
    };

  home.ok("auth", "update-policy", "--policy-id", "web", "--add-domains", "C.example.com");
  assert.deepEqual(show().allowed_domains, ["a.example.com", "b.example.com", "c.example.com"]);
  home.ok("auth", "update-policy", "--policy-id", "web", "--remove-domains", "a.example.com");
  assert.deepEqual(show().allowed_domains, ["b.example.com", "c.example.com"]);
  home.ok("auth", "update-policy", "--policy-id", "web", "--max-spend-usd", "7.5");
  const latest = show();
  assert.equal(latest.version, 4);
  assert.equal(latest.max_spend_usd, "7.5");
  assert.deepEqual(latest.allowed_domains, ["b.example.com", "c.example.com"]);

  assert.deepEqual(readFileSync(v1Path), v1Bytes, "v1 is byte-for-byte unchanged");
  const v1 = show("--version", "1");
  assert.equal(v1.version, 1);
  assert.equal(v1.max_spend_usd, "5");
  assert.deepEqual(v1.allowed_domains, ["a.example.com", "b.example.com"]);
  const text = home.ok("auth", "show-policy", "--policy-id", "web", "--version", "1");
  assert.match(text, /web v1/);
  assert.match(text, /a\.example\.com, b\.example\.com/);
  assert.deepEqual(readdirSync(join(home.home, "policies", "web")).sort(), [
    "v0001.json",
    "v0002.json",
    "v0003.json",
    "v0004.json",
  ]);

  // A token for v1 still verifies after the updates, and names v1.
  const v1Token = home
    .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "web", "--version", "1")
    .trim();
  assert.match(home.ok("auth", "verify-token", v1Token), /policy web v1,/);
  const listed = JSON.parse(home.ok("auth", "list-policies", "--json")) as {
    policy_id: string;
    versions: number;
  }[];
  assert.equal(listed.find((p) => p.policy_id === "web")?.versions, 4);
});

test("file modes: folders 0700; signing keys, keys/active and the CA key 0600", () => {
  const modes = snapshot(home.home);
  assert.equal(modeOf(home.home), 0o700);
  for (const path of Object.keys(modes)) {
    const full = join(home.home, path);
    const mode = modeOf(full);
    if (path.endsWith("/")) assert.equal(mode, 0o700, `${path} is ${mode.toString(8)}`);
    else assert.equal(mode & 0o022, 0, `${path} is ${mode.toString(8)}: writable by others`);
  }
  const keys = readdirSync(join(home.home, "keys"));
  assert.ok(keys.includes("active"));
  assert.ok(keys.filter((k) => k.endsWith(".json")).length >= 1);
  for (const name of keys) {
    assert.equal(modeOf(join(home.home, "keys", name)), 0o600, `keys/${name}`);
  }
  assert.equal(modeOf(join(home.home, "ca", "ca-key.pem")), 0o600);
  assert.ok(existsSync(join(home.home, "ca", "ca-cert.pem")));
  for (const sub of [
    "agents",
    "policies",
    "keys",
    "revoked",
    "ca",
    "ledger",
    "audit",
    "sessions",
  ]) {
    assert.equal(modeOf(join(home.home, sub)), 0o700, sub);
  }
});

test("`auth init` twice changes nothing: key and CA byte-identical", () => {
  const before = snapshot(home.home);
  const out = home.ok("auth", "init");
  assert.match(out, /already initialized/);
  assert.deepEqual(snapshot(home.home), before);
});

test("`auth init --force` replaces the key (old tokens refused) and the CA", () => {
  const forced = makeQuickstartHome();
  try {
    const kidBefore = readFileSync(join(forced.home, "keys", "active"), "utf8");
    const caBefore = readFileSync(join(forced.home, "ca", "ca-key.pem"), "utf8");
    const caCertBefore = readFileSync(join(forced.home, "ca", "ca-cert.pem"), "utf8");
    forced.ok("auth", "init", "--force");
    assert.notEqual(readFileSync(join(forced.home, "keys", "active"), "utf8"), kidBefore);
    assert.notEqual(readFileSync(join(forced.home, "ca", "ca-key.pem"), "utf8"), caBefore);
    assert.notEqual(readFileSync(join(forced.home, "ca", "ca-cert.pem"), "utf8"), caCertBefore);
    assert.equal(modeOf(join(forced.home, "ca", "ca-key.pem")), 0o600);

    const r = forced.run("auth", "verify-token", forced.token);
    assert.equal(r.status, 3);
    assert.equal(errorCode(r.stderr), "ERR_TOKEN_KEY_REVOKED", r.stderr);
    // Agents and policies survive; new tokens work.
    const fresh = forced
      .ok("auth", "issue-token", "--agent-id", "support-bot", "--policy-id", "support")
      .trim();
    assert.equal(forced.run("auth", "verify-token", fresh).status, 0);
  } finally {
    forced.cleanup();
  }
});

test("rotate-key --revoke-previous that fails leaves the active key as it was", () => {
  const kid = readFileSync(join(home.home, "keys", "active"), "utf8").trim();
  const rotated = JSON.parse(home.ok("auth", "rotate-key", "--json")) as { kid: string };
  const oldKey = join(home.home, "keys", `${kid}.json`);
  try {
    chmodSync(oldKey, 0o644);
    assertRefusedCleanly(
      home,
      ["auth", "rotate-key", "--revoke-previous"],
      "ERR_HOME_INSECURE_PERMISSIONS",
      1,
    );
    assert.equal(readFileSync(join(home.home, "keys", "active"), "utf8").trim(), rotated.kid);
  } finally {
    chmodSync(oldKey, 0o600);
  }
});
