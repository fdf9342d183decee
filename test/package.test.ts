import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";

import { spawnToEnd } from "./helpers/cli.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

/**
 * The package as a user gets it: `npm pack`, then `npm install` of the tarball into an empty
 * folder, offline, and the installed `vallignus` used from there. dist/ was built by `npm test`
 * (the pack skips its prepack build, so that dist/ does not change under the other tests).
 */

const ROOT = resolve(import.meta.dirname, "..");

interface PackageJson {
  readonly name: string;
  readonly version: string;
  readonly dependencies?: Record<string, string>;
}

interface LockEntry {
  readonly version: string;
  readonly dependencies?: Record<string, string>;
  readonly dev?: boolean;
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
  packages: Record<string, LockEntry>;
};

/** npm as a user runs it: none of the npm_* settings of an `npm test` around this test. */
function npm(args: readonly string[], cwd: string): SpawnSyncReturns<string> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_")),
  );
  return spawnSync("npm", args, { cwd, env, encoding: "utf8", timeout: 120_000 });
}

/** The runtime dependencies and theirs, with the versions our lockfile pins. */
function runtimeClosure(): Map<string, LockEntry> {
  const found = new Map<string, LockEntry>();
  const visit = (name: string) => {
    if (found.has(name)) return;
    const entry = lock.packages[`node_modules/${name}`];
    assert.ok(entry !== undefined, `${name} is in package-lock.json`);
    assert.notEqual(entry.dev, true, `${name} is not marked dev in package-lock.json`);
    found.set(name, entry);
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(dep);
  };
  for (const name of Object.keys(pkg.dependencies ?? {})) visit(name);
  return found;
}

let temp: string;
let origin: Origin;

before(async () => {
  temp = mkdtempSync(join(tmpdir(), "vallignus-package-"));
  origin = await startOrigin(["allowed.test"]);
});

after(async () => {
  await origin.close();
  rmSync(temp, { recursive: true, force: true });
});

test("npm pack ships dist/ (no tests, no source maps), README and package.json only", () => {
  const r = npm(["pack", "--dry-run", "--json", "--ignore-scripts"], ROOT);
  assert.equal(r.status, 0, r.stderr);
  const [packed] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
  const files = (packed?.files ?? []).map((f) => f.path);
  assert.ok(files.includes("dist/cli/main.js"), "the bin");
  assert.ok(files.includes("dist/run/preload.js"), "the child preload");
  assert.ok(files.includes("dist/run/netns-helper.js"), "the isolation helper");
  const others = files.filter((f) => !/^dist\/.+\.js$/.test(f) || /\.test\.|\.map$/.test(f));
  assert.deepEqual(others.sort(), ["README.md", "package.json"]);
});

test("the packed tarball installs offline with no script and runs auth init and a run", async () => {
  const packed = npm(["pack", "--json", "--ignore-scripts", "--pack-destination", temp], ROOT);
  assert.equal(packed.status, 0, packed.stderr);
  const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
  const app = join(temp, "app");
  mkdirSync(app);
  const dependencies = { [pkg.name]: `file:${join(temp, filename)}` };
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "app", version: "1.0.0", private: true, dependencies }),
  );
  // An npm cache filled by `npm ci` holds the packages' tarballs, not the registry's index of
  // their versions: the app's lockfile pins the runtime dependencies as ours does, so that the
  // install needs no network.
  const closure = runtimeClosure();
  const packages: Record<string, unknown> = { "": { name: "app", version: "1.0.0", dependencies } };
  for (const [name, entry] of closure) packages[`node_modules/${name}`] = entry;
  writeFileSync(
    join(app, "package-lock.json"),
    JSON.stringify({ name: "app", version: "1.0.0", lockfileVersion: 3, requires: true, packages }),
  );

  const install = npm(["install", "--offline", "--no-audit", "--no-fund"], app);
  assert.equal(install.status, 0, install.stderr);
  const said = `${install.stdout}\n${install.stderr}`;
  assert.doesNotMatch(said, /install-scripts|prepare|allowScripts/i, said);
  assert.doesNotMatch(said, /\bwarn\b/i, said);
  const installed = readdirSync(join(app, "node_modules")).filter((n) => !n.startsWith("."));
  assert.deepEqual(installed.sort(), [pkg.name, ...closure.keys()].sort());

  const home = join(temp, "home");
  const bin = join(app, "node_modules", ".bin", "vallignus");
  // Spawned, not spawnSync: the origin answering the run lives in this process.
  const env = { ...process.env, VALLIGNUS_HOME: home, VALLIGNUS_TOKEN: "", NO_COLOR: "1" };
  const vallignus = (...args: string[]) => spawnToEnd(bin, args, { cwd: app, env });
  const ok = async (...args: string[]) => {
    const r = await vallignus(...args);
    assert.equal(r.status, 0, `vallignus ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  assert.equal(await ok("--version"), `${pkg.version}\n`);
  assert.match(await ok("auth", "init"), /^initialized /);
  await ok("auth", "create-agent", "--agent-id", "bot", "--owner", "you@example.com");
  const allowed = `allowed.test:${origin.httpPort}`;
  // Checking the domain list loads the public suffix list from the installed dependencies.
  const policy = ["--max-spend-usd", "1", "--allowed-domains", allowed];
  assert.match(
    await ok("auth", "create-policy", "--policy-id", "p", ...policy),
    /created policy p v1/,
  );
  const token = (await ok("auth", "issue-token", "--agent-id", "bot", "--policy-id", "p")).trim();
  const url = `http://${allowed}/from-the-package`;
  const fetchScript = (target: string) =>
    `const r = await fetch(${JSON.stringify(target)}); const b = await r.json(); console.log(r.status, b.origin ?? b.decision);`;
  const resolveFlag = ["--resolve", `${allowed}:127.0.0.1`];
  const run = await vallignus(
    "run",
    "--token",
    token,
    ...resolveFlag,
    "--",
    "node",
    "-e",
    fetchScript(url),
  );
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, "200 ok\n");
  assert.ok(
    origin.hits.some((hit) => hit.endsWith(" /from-the-package")),
    "the origin was reached",
  );
  const denied = await vallignus(
    "run",
    "--token",
    token,
    "--",
    "node",
    "-e",
    fetchScript("http://x.test/"),
  );
  assert.equal(denied.status, 0, denied.stderr);
  assert.equal(denied.stdout, "403 deny\n", "a host the policy does not name is denied");
});
