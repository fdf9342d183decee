import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { VallignusError, type ErrorCode } from "../errors.js";
import type { SecretPlacement } from "../secrets/index.js";
import { runChildScript, srcModule } from "../storage/run-child-script.js";
import { Home } from "./home.js";
import {
  findSecret,
  listSecrets,
  removeSecret,
  rotateSecret,
  secretReader,
  setSecret,
  type SecretSpec,
} from "./secrets.js";

const root = mkdtempSync(join(tmpdir(), "vallignus-secrets-"));
after(() => rmSync(root, { recursive: true, force: true }));

let homes = 0;
/** A home as `auth init` leaves it, or (`old`) as homes made before secrets existed. */
function freshHome(old = false): Home {
  const home = new Home(join(root, `home-${String(++homes)}`));
  home.ensureLayout();
  if (old) rmSync(home.dir("secrets"), { recursive: true });
  return home;
}

const T0 = new Date("2026-12-02T12:00:00.000Z");
const T1 = new Date("2026-12-02T13:00:00.000Z");
const BEARER: SecretPlacement = {
  kind: "header",
  name: "authorization",
  template: "Bearer {secret}",
};
const OPENAI: SecretSpec = {
  name: "OPENAI_API_KEY",
  hosts: ["api.openai.com"],
  placements: [BEARER],
};
const VALUE = "sk-proj-aaaaaaaaaaaaaaaaaaaaaaaa";
const VALUE2 = "sk-proj-bbbbbbbbbbbbbbbbbbbbbbbb";

const mode = (path: string) => statSync(path).mode & 0o777;

function throwsCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (err) => err instanceof VallignusError && err.code === code, code);
}

test("a secret is one file, 0600, in a folder 0700 made on first use in a home that lacks it", () => {
  const home = freshHome(true);
  const meta = setSecret(home, OPENAI, VALUE, T0);
  assert.equal(mode(home.dir("secrets")), 0o700);
  assert.equal(mode(home.path("secrets", "OPENAI_API_KEY.json")), 0o600);
  assert.deepEqual(
    readdirSync(home.dir("secrets")),
    ["OPENAI_API_KEY.json"],
    "no lock or temp left",
  );
  const sha = createHash("sha256").update(VALUE).digest("hex");
  assert.equal(meta.fingerprint, sha.slice(0, 8));
  assert.ok(!("value" in meta), "set-secret's answer holds no value");
  const file = JSON.parse(
    readFileSync(home.path("secrets", "OPENAI_API_KEY.json"), "utf8"),
  ) as Record<string, unknown>;
  assert.deepEqual(Object.keys(file).sort(), [
    "created_at",
    "hosts",
    "name",
    "placements",
    "rotated_at",
    "value",
  ]);
  assert.equal(findSecret(home, "OPENAI_API_KEY")?.value, VALUE);
  assert.equal(findSecret(home, "MISSING"), undefined);
});

test("set refuses a name already held and leaves its value; rotate changes the value only", () => {
  const home = freshHome();
  setSecret(home, OPENAI, VALUE, T0);
  throwsCode(() => setSecret(home, OPENAI, VALUE2, T1), "ERR_SECRET_EXISTS");
  assert.equal(findSecret(home, "OPENAI_API_KEY")?.value, VALUE);
  const before = findSecret(home, "OPENAI_API_KEY");
  const rotated = rotateSecret(home, "OPENAI_API_KEY", VALUE2, T1);
  assert.equal(rotated.rotated_at, T1.toISOString());
  assert.equal(rotated.created_at, T0.toISOString());
  assert.notEqual(rotated.fingerprint, before?.fingerprint);
  assert.deepEqual(rotated.placements, [BEARER]);
  assert.equal(findSecret(home, "OPENAI_API_KEY")?.value, VALUE2);
  assert.equal(mode(home.path("secrets", "OPENAI_API_KEY.json")), 0o600);
  throwsCode(() => rotateSecret(home, "OTHER_KEY", VALUE2, T1), "ERR_SECRET_NOT_FOUND");
  throwsCode(() => removeSecret(home, "OTHER_KEY"), "ERR_SECRET_NOT_FOUND");
  removeSecret(home, "OPENAI_API_KEY");
  assert.deepEqual(readdirSync(home.dir("secrets")), []);
  throwsCode(() => rotateSecret(home, "OPENAI_API_KEY", VALUE2, T1), "ERR_SECRET_NOT_FOUND");
});

test("list is sorted by name and carries fingerprints, never values", () => {
  const home = freshHome();
  setSecret(home, { ...OPENAI, name: "ZED_KEY" }, VALUE2, T0);
  setSecret(home, OPENAI, VALUE, T0);
  const listed = listSecrets(home);
  assert.deepEqual(
    listed.map((s) => s.name),
    ["OPENAI_API_KEY", "ZED_KEY"],
  );
  const text = JSON.stringify(listed);
  assert.ok(!text.includes(VALUE) && !text.includes(VALUE2));
  assert.deepEqual(
    secretReader(home)
      .all()
      .map((s) => s.name),
    ["OPENAI_API_KEY", "ZED_KEY"],
  );
});

describe("bad names and values are refused before anything is written", () => {
  const cases: [string, string, string, ErrorCode][] = [
    ["lower-case name", "openai_key", VALUE, "ERR_SECRET_NAME_INVALID"],
    ["name with a dot (a path)", "../KEY", VALUE, "ERR_SECRET_NAME_INVALID"],
    ["value of 15 characters", "KEY", "a".repeat(15), "ERR_SECRET_VALUE_INVALID"],
    ["value with a space", "KEY", "sk-proj aaaaaaaaaaaaaaaaaa", "ERR_SECRET_VALUE_INVALID"],
    ["value with a line break", "KEY", "sk-proj-aaaaaaaa\naaaaaaaaaa", "ERR_SECRET_VALUE_INVALID"],
    ["value over 8192", "KEY", "a".repeat(8193), "ERR_SECRET_VALUE_INVALID"],
  ];
  for (const [label, name, value, code] of cases) {
    test(label, () => {
      const home = freshHome();
      assert.throws(
        () => setSecret(home, { ...OPENAI, name }, value, T0),
        (err) => err instanceof VallignusError && err.code === code && !err.message.includes(value),
      );
      assert.deepEqual(readdirSync(home.dir("secrets")), []);
    });
  }
});

test("hosts and placements the store could not read back are refused before writing", () => {
  const home = freshHome();
  throwsCode(
    () => setSecret(home, { ...OPENAI, hosts: [] }, VALUE, T0),
    "ERR_POLICY_DOMAIN_INVALID",
  );
  throwsCode(
    () => setSecret(home, { ...OPENAI, hosts: ["API.openai.com"] }, VALUE, T0),
    "ERR_POLICY_DOMAIN_INVALID",
  );
  throwsCode(
    () => setSecret(home, { ...OPENAI, placements: [] }, VALUE, T0),
    "ERR_SECRET_PLACEMENT",
  );
  throwsCode(
    () =>
      setSecret(
        home,
        { ...OPENAI, placements: [{ kind: "header", name: "host", template: null }] },
        VALUE,
        T0,
      ),
    "ERR_SECRET_PLACEMENT",
  );
  assert.deepEqual(readdirSync(home.dir("secrets")), []);
});

describe("a file or folder that group or others may read is refused by every reader", () => {
  const readers: [string, (home: Home) => unknown][] = [
    ["findSecret", (home) => findSecret(home, "OPENAI_API_KEY")],
    ["listSecrets", (home) => listSecrets(home)],
    ["reader.read", (home) => secretReader(home).read("OPENAI_API_KEY")],
    ["reader.all", (home) => secretReader(home).all()],
    ["rotateSecret", (home) => rotateSecret(home, "OPENAI_API_KEY", VALUE2, T1)],
  ];
  for (const [label, read] of readers) {
    test(`${label}: file 0644`, () => {
      const home = freshHome();
      setSecret(home, OPENAI, VALUE, T0);
      chmodSync(home.path("secrets", "OPENAI_API_KEY.json"), 0o644);
      throwsCode(() => read(home), "ERR_HOME_INSECURE_PERMISSIONS");
    });
    test(`${label}: folder 0755`, () => {
      const home = freshHome();
      setSecret(home, OPENAI, VALUE, T0);
      chmodSync(home.dir("secrets"), 0o755);
      throwsCode(() => read(home), "ERR_HOME_INSECURE_PERMISSIONS");
    });
  }
  test("a reader that trusted the file refuses it once it is made readable", () => {
    const home = freshHome();
    setSecret(home, OPENAI, VALUE, T0);
    const reader = secretReader(home);
    assert.equal(reader.read("OPENAI_API_KEY")?.value, VALUE);
    chmodSync(home.path("secrets", "OPENAI_API_KEY.json"), 0o640);
    throwsCode(() => reader.read("OPENAI_API_KEY"), "ERR_HOME_INSECURE_PERMISSIONS");
    throwsCode(() => reader.all(), "ERR_HOME_INSECURE_PERMISSIONS");
  });
});

describe("a corrupt or mis-shaped file is refused (fail closed), never half-used", () => {
  const good = {
    name: "OPENAI_API_KEY",
    hosts: ["api.openai.com"],
    placements: [BEARER],
    created_at: T0.toISOString(),
    rotated_at: null,
    value: VALUE,
  };
  const cases: [string, string][] = [
    ["not JSON", "{"],
    ["truncated", JSON.stringify(good).slice(0, 60)],
    ["an array", "[]"],
    ["another name", JSON.stringify({ ...good, name: "OTHER" })],
    ["an extra field", JSON.stringify({ ...good, fingerprint: "00000000" })],
    ["no hosts", JSON.stringify({ ...good, hosts: [] })],
    ["a host not canonical", JSON.stringify({ ...good, hosts: ["API.openai.com"] })],
    ["no placement", JSON.stringify({ ...good, placements: [] })],
    [
      "a template without {secret}",
      JSON.stringify({ ...good, placements: [{ ...BEARER, template: "Bearer" }] }),
    ],
    [
      "a placement of no known kind",
      JSON.stringify({ ...good, placements: [{ kind: "body", name: "k" }] }),
    ],
    ["a short value", JSON.stringify({ ...good, value: "short" })],
    ["a value with a space", JSON.stringify({ ...good, value: `${VALUE} x` })],
  ];
  for (const [label, text] of cases) {
    test(label, () => {
      const home = freshHome();
      setSecret(home, OPENAI, VALUE, T0);
      const reader = secretReader(home);
      reader.all();
      writeFileSync(home.path("secrets", "OPENAI_API_KEY.json"), text, { mode: 0o600 });
      throwsCode(() => findSecret(home, "OPENAI_API_KEY"), "ERR_HOME_CORRUPT");
      throwsCode(() => reader.read("OPENAI_API_KEY"), "ERR_HOME_CORRUPT");
      throwsCode(() => reader.all(), "ERR_HOME_CORRUPT");
    });
  }
});

describe("a reader sees the files as they are now", () => {
  test("a rotation is seen by the very next read(), every time (50 rotations, same length)", () => {
    const home = freshHome();
    setSecret(home, OPENAI, VALUE, T0);
    const reader = secretReader(home);
    assert.equal(reader.read("OPENAI_API_KEY")?.value, VALUE);
    for (let i = 0; i < 50; i++) {
      // Same length every time: only the content tells the files apart.
      const next = `sk-proj-${String(i).padStart(24, "x")}`;
      rotateSecret(home, "OPENAI_API_KEY", next, T1);
      assert.equal(reader.read("OPENAI_API_KEY")?.value, next, `rotation ${String(i)}`);
      assert.equal(reader.all()[0]?.value, next, `rotation ${String(i)}, all()`);
    }
  });

  test("a file rewritten in place within one tick of the file system's clock is read again", () => {
    // Same inode, same size, and often the same mtime and ctime (the kernel's coarse clock):
    // a stamp alone cannot tell these versions apart; only their age can say "maybe changed".
    const home = freshHome();
    setSecret(home, OPENAI, VALUE, T0);
    const path = home.path("secrets", "OPENAI_API_KEY.json");
    const original = readFileSync(path, "utf8");
    const reader = secretReader(home);
    for (let i = 0; i < 200; i++) {
      const next = `sk-proj-${String(i).padStart(24, "y")}`;
      writeFileSync(path, original.replace(VALUE, next));
      assert.equal(reader.read("OPENAI_API_KEY")?.value, next, `version ${String(i)}`);
    }
  });

  test("a secret set or removed is seen by the next all() and read()", () => {
    const home = freshHome(true);
    const reader = secretReader(home);
    assert.deepEqual(reader.all(), [], "no folder yet: no secret");
    setSecret(home, OPENAI, VALUE, T0);
    assert.deepEqual(
      reader.all().map((s) => s.name),
      ["OPENAI_API_KEY"],
    );
    setSecret(home, { ...OPENAI, name: "B_KEY" }, VALUE2, T0);
    assert.deepEqual(
      reader.all().map((s) => s.name),
      ["B_KEY", "OPENAI_API_KEY"],
    );
    removeSecret(home, "OPENAI_API_KEY");
    assert.equal(reader.read("OPENAI_API_KEY"), undefined);
    assert.deepEqual(
      reader.all().map((s) => s.name),
      ["B_KEY"],
    );
  });

  test("an unchanged file that has aged is not parsed again: same object back", () => {
    const home = freshHome();
    setSecret(home, OPENAI, VALUE, T0);
    const path = home.path("secrets", "OPENAI_API_KEY.json");
    // Seen an hour after its mtime: past the racy window, so its stamp is trusted.
    const clock = () => statSync(path, { bigint: true }).mtimeNs + 3_600_000_000_000n;
    const reader = secretReader(home, clock);
    const first = reader.read("OPENAI_API_KEY");
    assert.equal(reader.read("OPENAI_API_KEY"), first, "the cached secret");
    assert.equal(reader.all()[0], first);
  });
});

describe("writes are atomic", () => {
  test("a rotation whose write fails (file size limit, like a full disk) keeps the old value and leaves no temp file", async () => {
    const home = freshHome();
    setSecret(home, OPENAI, VALUE, T0);
    // Over the limit of one block: the lock file (a line) can be written, the secret's file not.
    const long = `sk-proj-${"b".repeat(3000)}`;
    const child = runChildScript(
      `import { Home } from ${srcModule("authority/home.ts")};
import { rotateSecret } from ${srcModule("authority/secrets.ts")};
try {
  rotateSecret(new Home(${JSON.stringify(home.root)}), "OPENAI_API_KEY", ${JSON.stringify(long)}, new Date());
  console.log("written");
} catch (err) {
  console.log(err.code, err.message);
}`,
      1,
    );
    const { stdout } = await child.exited;
    assert.match(stdout, /^ERR_HOME_WRITE cannot write secret OPENAI_API_KEY: EFBIG/, stdout);
    assert.ok(!stdout.includes(long.slice(0, 20)), "the error does not show the value");
    assert.equal(findSecret(home, "OPENAI_API_KEY")?.value, VALUE);
    assert.deepEqual(readdirSync(home.dir("secrets")), ["OPENAI_API_KEY.json"]);
  });
});
