import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import {
  chmodSync,
  closeSync,
  openSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, test } from "node:test";

import { CLI } from "./helpers/cli.js";
import { waitFor } from "./helpers/processes.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

/**
 * The probe the agent runs inside `--isolate`: every way around the proxy, and the proxy
 * itself. It prints one JSON object.
 */
const PROBE = `
import { spawnSync } from "node:child_process";
import { connect } from "node:net";
import { createSocket } from "node:dgram";
import { lookup } from "node:dns/promises";
const [hostPort, udpPort, originPort] = process.argv.slice(2).map(Number);
const out = {};
const run = (cmd, args, env = process.env) => spawnSync(cmd, args, { encoding: "utf8", timeout: 8000, env });
out.uid = process.getuid();
out.curlNoProxy = run("curl", ["-s", "--noproxy", "*", "--max-time", "3", "http://127.0.0.1:" + hostPort + "/"]).status;
out.netConnect = await new Promise((done) => {
  const s = connect(hostPort, "127.0.0.1");
  s.on("connect", () => { s.destroy(); done("CONNECTED"); });
  s.on("error", (e) => done(e.code));
});
out.fetchWithoutPreload = run(process.execPath, ["-e", "fetch('http://127.0.0.1:" + hostPort + "/').then(() => console.log('REACHED'), (e) => console.log(e.cause?.code ?? e.message))"], { ...process.env, NODE_OPTIONS: "" }).stdout.trim();
out.udp = await new Promise((done) => {
  const s = createSocket("udp4");
  s.send("escape", udpPort, "127.0.0.1", (err) => { s.close(); done(err ? err.code : "sent"); });
});
out.dns = await lookup("example.com").then(() => "RESOLVED", (e) => e.code);
out.nsenter = run("nsenter", ["--net=/proc/1/ns/net", "curl", "-s", "--max-time", "3", "http://127.0.0.1:" + hostPort + "/"]).status;
out.allowed = run("curl", ["-s", "--max-time", "5", "http://allowed.test:" + originPort + "/in"]).stdout;
out.denied = run("curl", ["-s", "--max-time", "5", "http://evil.test:" + originPort + "/in"]).stdout;
console.log(JSON.stringify(out));
`;

/**
 * What a hostile agent inside `--isolate` tries against the authority, the supervisor and
 * other runs (issue 12's review). It prints one JSON object: each attempt's result or errno.
 */
const BOUNDARY_PROBE = `
import { appendFileSync, readdirSync, readFileSync, readlinkSync, writeFileSync, existsSync, watch } from "node:fs";
import { connect } from "node:net";
import { spawn } from "node:child_process";
import { dirname } from "node:path";
const [home, jti, otherSocket, outside, marker] = process.argv.slice(2);
// Resolves once ./name exists (watched, not polled), or after a generous deadline.
const appears = (name, ms = 30000) => new Promise((done) => {
  const finish = () => { watcher.close(); clearTimeout(timer); done(); };
  const watcher = watch(".", () => { if (existsSync("./" + name)) finish(); });
  const timer = setTimeout(finish, ms);
  if (existsSync("./" + name)) finish();
});
const out = {};
const attempt = (fn) => { try { const r = fn(); return r === undefined ? "OK" : r; } catch (e) { return e.code ?? e.message; } };
const reach = (path, port) => new Promise((done) => {
  const s = path ? connect(path) : connect(port, "127.0.0.1");
  s.on("connect", () => { s.destroy(); done("CONNECTED"); });
  s.on("error", (e) => done(e.code));
});
out.keys = attempt(() => readdirSync(home + "/keys").join(","));
out.home = attempt(() => readdirSync(home).join(","));
out.ledger = attempt(() => appendFileSync(home + "/ledger/" + jti + ".jsonl", "{}\\n"));
out.audit = attempt(() => appendFileSync(home + "/audit/audit.jsonl", "x"));
out.runs = attempt(() => readdirSync(dirname(dirname(otherSocket))).join(","));
out.otherRun = await reach(otherSocket);
out.hostTmp = attempt(() => readdirSync("/tmp").filter((n) => n.startsWith("vallignus-")).join(","));
out.writeOutside = attempt(() => writeFileSync(outside + "/escaped", "x"));
out.writeCwd = attempt(() => writeFileSync("./cwd-ok", "x"));
out.writeTmp = attempt(() => writeFileSync("/tmp/agent-" + marker, "x"));
await appears("supervisor.pid");
const supervisor = Number(readFileSync("./supervisor.pid", "utf8"));
out.usr1Supervisor = attempt(() => process.kill(supervisor, "SIGUSR1"));
out.killSupervisor = attempt(() => process.kill(supervisor, "SIGKILL"));
out.usr1Pid1 = attempt(() => process.kill(1, "SIGUSR1"));
// Nothing to wait for if it works: give an inspector the time it would take to open.
await new Promise((r) => setTimeout(r, 500));
out.inspector = await reach(undefined, 9229);
out.inheritedFd = attempt(() => readdirSync("/proc/self/fd/200/keys").join(","));
out.dev = readdirSync("/dev").join(",");
out.ipc = readlinkSync("/proc/self/ns/ipc");
out.uts = readlinkSync("/proc/self/ns/uts");
out.processes = readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p)).length;
// A process that leaves the group, running before the probe ends.
spawn("setsid", ["sh", "-c", "touch ./escapee-" + marker + "; exec sleep " + marker], { detached: true, stdio: "ignore" }).unref();
await appears("escapee-" + marker);
console.log(JSON.stringify(out));
`;

interface Harness {
  readonly root: string;
  readonly env: NodeJS.ProcessEnv;
  readonly asUser: string[];
  readonly cli: string;
  token: string;
  jti: string;
}

let origin: Origin;
let canary: Server;
let canaryHits = 0;
let canaryPort = 0;
let udp: ReturnType<typeof createSocket>;
let udpHits = 0;
let udpPort = 0;

function vallignus(h: Harness, args: string[], extraEnv: NodeJS.ProcessEnv = {}): string {
  const [program = process.execPath, ...rest] = [...h.asUser, process.execPath, h.cli, ...args];
  return execFileSync(program, rest, { env: { ...h.env, ...extraEnv }, encoding: "utf8" });
}

function runIsolated(
  h: Harness,
  command: string[],
  timeoutMs = 30_000,
  onSpawn?: (pid: number) => void,
  inherit?: number,
) {
  const [program = process.execPath, ...rest] = [
    ...h.asUser,
    process.execPath,
    h.cli,
    "run",
    "--isolate",
    "--resolve",
    `allowed.test:${origin.httpPort}:127.0.0.1`,
    "--",
    ...command,
  ];
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(program, rest, {
      env: { ...h.env, VALLIGNUS_TOKEN: h.token },
      cwd: h.root,
      // A descriptor the caller left open (fd 200, as a shell's `exec 200<dir` leaves it): an
      // open folder of the host. (Low numbers do not reach the command even unfixed.)
      stdio: ["pipe", "pipe", "pipe", ...Array<"ignore">(197).fill("ignore"), inherit ?? "ignore"],
    });
    onSpawn?.(child.pid ?? 0);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

/** A home and token owned by the user the run executes as. */
function makeHarness(user: "root" | "nobody"): Harness {
  const root = mkdtempSync(join(tmpdir(), `vallignus-isolate-${user}-`));
  // The working folder: a root caller's command runs as nobody and must be able to write it.
  chmodSync(root, user === "root" ? 0o777 : 0o755);
  const home = join(root, "home");
  let cli = CLI;
  const asUser: string[] = [];
  if (user === "nobody") {
    chownSync(root, 65534, 65534);
    asUser.push("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--");
    // The checkout may sit where nobody cannot read it; the CLI then runs from a copy.
    if (spawnSync("setpriv", [...asUser.slice(1, -1), "--", "test", "-r", CLI]).status !== 0) {
      // Beside the working folder: --isolate refuses one that holds vallignus itself.
      const copy = `${root}-app`;
      execFileSync("cp", ["-r", join(CLI, "../../.."), copy]);
      execFileSync("chmod", ["-R", "a+rX", copy]);
      cli = join(copy, "dist/cli/main.js");
    }
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VALLIGNUS_HOME: home,
    NO_COLOR: "1",
    // Beside the working folder, not in it: --isolate refuses to make a home folder writable.
    HOME: `${root}-home`,
  };
  delete env["VALLIGNUS_TOKEN"];
  const h: Harness = { root, env, asUser, cli, token: "", jti: "" };
  vallignus(h, ["auth", "init"]);
  vallignus(h, ["auth", "create-agent", "--agent-id", "iso", "--owner", "o"]);
  vallignus(h, [
    "auth",
    "create-policy",
    "--policy-id",
    "iso",
    "--max-spend-usd",
    "1",
    "--allowed-domains",
    `allowed.test:${origin.httpPort}`,
  ]);
  h.token = vallignus(h, ["auth", "issue-token", "--agent-id", "iso", "--policy-id", "iso"]).trim();
  h.jti = (
    JSON.parse(vallignus(h, ["auth", "inspect-token", "--json", h.token])) as {
      claims: { jti: string };
    }
  ).claims.jti;
  writeFileSync(join(root, "probe.mjs"), PROBE);
  chmodSync(join(root, "probe.mjs"), 0o644);
  writeFileSync(join(root, "boundary.mjs"), BOUNDARY_PROBE);
  chmodSync(join(root, "boundary.mjs"), 0o644);
  return h;
}

/** Live processes whose command line is exactly `argv` (zombies are gone already). */
function strays(argv: string): string[] {
  const wanted = `${argv.split(" ").join("\0")}\0`;
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return (
          readFileSync(`/proc/${p}/cmdline`, "utf8") === wanted &&
          !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, "utf8"))
        );
      } catch {
        return false;
      }
    });
}

/** Live processes whose command line mentions `marker` (zombies are gone already). */
function carrying(marker: string): string[] {
  return readdirSync("/proc").filter((p) => {
    try {
      return (
        /^\d+$/.test(p) &&
        readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker) &&
        !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, "utf8"))
      );
    } catch {
      return false;
    }
  });
}

before(async () => {
  origin = await startOrigin(["allowed.test"]);
  canary = createServer((s) => {
    canaryHits++;
    s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
  });
  await new Promise<void>((r) => canary.listen(0, "127.0.0.1", r));
  canaryPort = (canary.address() as { port: number }).port;
  udp = createSocket("udp4");
  udp.on("message", () => udpHits++);
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
  udpPort = udp.address().port;
});

after(async () => {
  await origin.close();
  await new Promise((r) => canary.close(r));
  udp.close();
});

const methods = [
  ["bwrap", /"isolation_method":"bwrap"/],
  // As root, unshare makes no user namespace (unshare-root); as nobody, it does.
  ["unshare", /"isolation_method":"unshare-(userns|root)"/],
] as const;

for (const [method, recorded] of methods)
  for (const user of ["root", "nobody"] as const) {
    describe(`--isolate with ${method}, as ${user}`, () => {
      let h: Harness;
      before(() => {
        h = makeHarness(user);
        h.env["VALLIGNUS_ISOLATE_METHOD"] = method;
      });
      after(() => {
        rmSync(h.root, { recursive: true, force: true });
        rmSync(`${h.root}-app`, { recursive: true, force: true });
      });

      test("nothing gets around the proxy; the proxy still decides", async () => {
        const hitsBefore = canaryHits;
        const r = await runIsolated(h, [
          process.execPath,
          join(h.root, "probe.mjs"),
          String(canaryPort),
          String(udpPort),
          String(origin.httpPort),
        ]);
        assert.equal(r.status, 0, r.stderr);
        const out = JSON.parse(r.stdout) as Record<string, unknown>;
        // Root's command runs as a uid no account has: host uid 0 owns the machine even
        // without capabilities, and nobody may be the host's daemons'.
        assert.equal(out["uid"], user === "root" ? 2_000_000_000 : 65534);
        assert.notEqual(out["curlNoProxy"], 0, "curl --noproxy '*' must fail");
        assert.notEqual(out["netConnect"], "CONNECTED");
        assert.notEqual(out["fetchWithoutPreload"], "REACHED");
        assert.notEqual(out["dns"], "RESOLVED");
        assert.notEqual(out["nsenter"], 0, "nsenter into the host network must fail");
        assert.equal((JSON.parse(String(out["allowed"])) as { path: string }).path, "/in");
        assert.equal(
          (JSON.parse(String(out["denied"])) as { deny_reason: string }).deny_reason,
          "domain_not_allowed",
        );
        // The probe's attempts ended before it printed; a datagram sent on the host would have
        // arrived long before the run's exit, like the probe's own to the listener.
        assert.equal(canaryHits, hitsBefore, "the host loopback listener saw no connection");
        assert.equal(udpHits, 0, "the host UDP port saw no datagram");
        const audit = readFileSync(
          join(h.env["VALLIGNUS_HOME"] ?? "", "audit", "audit.jsonl"),
          "utf8",
        );
        assert.match(audit, /"event":"run_start".*"isolated":true/);
        assert.match(audit, recorded);
        const sessions = readdirSync(join(h.env["VALLIGNUS_HOME"] ?? "", "sessions"));
        const session = JSON.parse(
          readFileSync(
            join(h.env["VALLIGNUS_HOME"] ?? "", "sessions", sessions[0] ?? "", "session.json"),
            "utf8",
          ),
        ) as Record<string, unknown>;
        assert.equal(session["isolated"], true);
        assert.match(JSON.stringify(session), recorded);
      });

      test("the command reaches neither the authority, nor the supervisor, nor other runs", async () => {
        const home = h.env["VALLIGNUS_HOME"] ?? "";
        const ledger = join(home, "ledger", `${h.jti}.jsonl`);
        // Another isolated run of the same user, whose proxy the probe tries to borrow.
        const [program, ...args] = [...h.asUser, process.execPath, h.cli, "run"];
        const other = spawn(program, [...args, "--isolate", "--", "sleep", "60"], {
          env: { ...h.env, VALLIGNUS_TOKEN: h.token },
          cwd: h.root,
          stdio: "ignore",
        });
        // Its proxy socket, wherever a run keeps it: the one its process listens on.
        const otherSockets = () => {
          const inodes = readdirSync(`/proc/${other.pid ?? 0}/fd`).map((fd) => {
            try {
              return /^socket:\[(\d+)\]$/.exec(
                readlinkSync(`/proc/${other.pid ?? 0}/fd/${fd}`),
              )?.[1];
            } catch {
              return undefined;
            }
          });
          return readFileSync("/proc/net/unix", "utf8")
            .split("\n")
            .map((line) => line.trim().split(/\s+/))
            .filter((f) => inodes.includes(f[6]) && (f[7] ?? "").endsWith("/proxy.sock"))
            .map((f) => f[7] ?? "");
        };
        await waitFor("the other run's socket", () => otherSockets().length > 0);
        // …and no TCP port on the host's loopback, which any local program could borrow.
        const otherInodes = readdirSync(`/proc/${other.pid ?? 0}/fd`).flatMap((fd) => {
          try {
            return [
              /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${other.pid ?? 0}/fd/${fd}`))?.[1],
            ];
          } catch {
            return [];
          }
        });
        const listening = ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((table) =>
          readFileSync(table, "utf8")
            .split("\n")
            .map((line) => line.trim().split(/\s+/))
            .filter((f) => f[3] === "0A" && otherInodes.includes(f[9])),
        );
        assert.deepEqual(listening, [], "an isolated run's proxy listens on no TCP port");
        const otherSocket = otherSockets()[0] ?? "";
        // A host folder anyone may write, outside the working folder and outside /tmp.
        const outside = mkdtempSync("/var/tmp/vallignus-outside-");
        chmodSync(outside, 0o777);
        const marker = `${900_000 + Math.floor(Math.random() * 1_000_000)}`;
        const ledgerBefore = existsSync(ledger) ? readFileSync(ledger, "utf8") : "";
        try {
          const homeFd = openSync(home, "r");
          const r = await runIsolated(
            h,
            [process.execPath, "boundary.mjs", home, h.jti, otherSocket, outside, marker],
            30_000,
            (pid) => writeFileSync(join(h.root, "supervisor.pid"), String(pid)),
            homeFd,
          ).finally(() => closeSync(homeFd));
          assert.equal(r.status, 0, r.stderr);
          const out = JSON.parse(r.stdout) as Record<string, unknown>;
          const refused = /^(ENOENT|EACCES|EROFS|EPERM|ESRCH)$/;
          assert.match(String(out["keys"]), refused, "the signing keys are not visible");
          assert.match(String(out["home"]), /^(ENOENT|EACCES|)$/, "the home shows nothing");
          assert.match(String(out["ledger"]), refused, "the ledger cannot be appended to");
          assert.match(String(out["audit"]), refused, "the audit log cannot be appended to");
          assert.match(String(out["runs"]), refused, "the run folders are not visible");
          assert.match(String(out["otherRun"]), /^(ENOENT|EACCES|ECONNREFUSED)$/);
          // Only the working folder (bound back in) shows in the private /tmp.
          assert.equal(out["hostTmp"], basename(h.root), "/tmp is private");
          assert.equal(out["writeOutside"], "EROFS", "the host's files are read-only");
          assert.equal(out["writeCwd"], "OK", "the working folder stays writable");
          assert.equal(out["writeTmp"], "OK", "the private /tmp is writable");
          assert.equal(out["usr1Supervisor"], "ESRCH", "the supervisor is out of sight");
          assert.equal(out["killSupervisor"], "ESRCH", "the supervisor is out of sight");
          assert.notEqual(out["inspector"], "CONNECTED", "no inspector opened inside");
          assert.match(
            String(out["inheritedFd"]),
            /^(ENOENT|EBADF|EACCES)$/,
            "no inherited folder",
          );
          assert.ok(Number(out["processes"]) < 10, `${String(out["processes"])} processes seen`);
          // A /dev of its own: none of the host's terminals, disks or consoles.
          const devices = String(out["dev"]).split(",");
          const harmless =
            /^(null|zero|full|random|urandom|tty|pts|ptmx|shm|fd|stdin|stdout|stderr|core|mqueue)$/;
          assert.deepEqual(
            devices.filter((name) => !harmless.test(name)),
            [],
            String(out["dev"]),
          );
          // System V IPC and the hostname are its own.
          assert.notEqual(out["ipc"], readlinkSync("/proc/self/ns/ipc"));
          assert.notEqual(out["uts"], readlinkSync("/proc/self/ns/uts"));
          // What the probe tried left no trace on the host.
          assert.equal(existsSync(join(outside, "escaped")), false);
          assert.equal(existsSync(join(tmpdir(), `agent-${marker}`)), false);
          assert.equal(existsSync(join(h.root, "cwd-ok")), true);
          assert.equal(existsSync(ledger) ? readFileSync(ledger, "utf8") : "", ledgerBefore);
          vallignus(h, ["audit", "verify"]);
          assert.match(r.stderr, /^$/, "the supervisor printed nothing (no inspector, no crash)");
          // A process that left the group with setsid ends with the run's pid namespace.
          assert.equal(existsSync(join(h.root, `escapee-${marker}`)), true, "the escapee ran");
          await waitFor("the setsid escapee to end", () => strays(`sleep ${marker}`).length === 0);
        } finally {
          other.kill("SIGTERM");
          await new Promise((done) => other.once("close", done));
          rmSync(outside, { recursive: true, force: true });
        }
      });

      test("exit codes and signals pass through", async () => {
        assert.equal((await runIsolated(h, ["sh", "-c", "exit 7"])).status, 7);
        assert.equal((await runIsolated(h, ["sh", "-c", "kill -TERM $$"])).status, 143);
      });

      test("live revocation stops the isolated run with 4 and leaves nothing running", async () => {
        // Unique, so a concurrent run of this suite cannot be mistaken for ours.
        const marker = `sleep ${300 + Math.floor(Math.random() * 1_000_000)}`;
        const running = runIsolated(h, ["sh", "-c", `${marker} & while true; do sleep 0.1; done`]);
        await waitFor("the isolated command to start", () => strays(marker).length > 0);
        vallignus(h, ["auth", "revoke-token", "--jti", h.jti]);
        const r = await running;
        assert.equal(r.status, 4, `${r.stderr} // ${r.stdout}`);
        await waitFor("the isolated command to end", () => strays(marker).length === 0);
        assert.deepEqual(
          readdirSync("/proc").filter((p) => {
            try {
              // The namespace helper carries the command (and so the marker) in its config.
              const cmdline = readFileSync(`/proc/${p}/cmdline`, "utf8");
              return (
                /^\d+$/.test(p) && cmdline.includes("netns-helper") && cmdline.includes(marker)
              );
            } catch {
              return false;
            }
          }),
          [],
        );
      });

      test("kill -9 of vallignus leaves nothing of the isolated command, grandchild included", async () => {
        // Unique, so a concurrent run of this suite cannot be mistaken for ours.
        const marker = `${700_000 + Math.floor(Math.random() * 1_000_000)}`;
        const beat = join(h.root, `beat-${marker}`);
        const [program, ...rest] = [
          ...h.asUser,
          process.execPath,
          h.cli,
          "run",
          "--isolate",
          "--",
          "sh",
          "-c",
          `(while :; do date > ${beat}; sleep 0.1; done) & sleep ${marker}`,
        ];
        // The revocation test above revoked the harness's token.
        const token = vallignus(h, [
          "auth",
          "issue-token",
          "--agent-id",
          "iso",
          "--policy-id",
          "iso",
        ]);
        const child = spawn(program, rest, {
          env: { ...h.env, VALLIGNUS_TOKEN: token.trim() },
          stdio: "ignore",
          cwd: h.root,
        });
        const closed = new Promise((done) => child.on("close", done));
        await waitFor("the isolated command and its grandchild", () => existsSync(beat));
        await waitFor("the command's processes", () => carrying(marker).length >= 3);
        // setpriv execs vallignus: this pid is vallignus itself.
        const killedAt = Date.now();
        child.kill("SIGKILL");
        await closed;
        await waitFor("every process of the command to end", () => carrying(marker).length === 0);
        const elapsed = Date.now() - killedAt;
        assert.ok(elapsed < 1500, `the command outlived vallignus by ${elapsed} ms`);
      });
    });
  }

test("--isolate refuses to run, naming the cause, when it cannot isolate", () => {
  const h = makeHarness("root");
  try {
    const bin = join(h.root, "bin");
    execFileSync("mkdir", [bin]);
    // Tool folders with sh but no bwrap, unshare or ip.
    execFileSync("ln", ["-s", "/bin/sh", join(bin, "sh")]);
    const marker = join(h.root, "started");
    const r = spawnSync(process.execPath, [h.cli, "run", "--isolate", "--", "touch", marker], {
      env: { ...h.env, VALLIGNUS_TOKEN: h.token, VALLIGNUS_TOOL_PATH: bin },
      encoding: "utf8",
      cwd: h.root,
    });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /^vallignus: --isolate needs bubblewrap, or unshare, ip.*nothing was started \[ERR_ISOLATE_UNAVAILABLE\]\n$/,
    );
    assert.throws(() => readFileSync(marker));
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
});

test("--isolate takes its tools from the system's folders, not from the caller's PATH", () => {
  const h = makeHarness("root");
  try {
    // A folder an agent could have written, first on PATH, with tools of its own.
    const bin = join(h.root, "bin");
    execFileSync("mkdir", [bin]);
    const planted = join(h.root, "planted-ran");
    for (const tool of ["bwrap", "unshare", "setpriv", "ip", "mount", "sh"]) {
      writeFileSync(join(bin, tool), `#!/bin/sh\necho ${tool} >> ${planted}\nexit 1\n`);
      chmodSync(join(bin, tool), 0o755);
    }
    for (const method of ["bwrap", "unshare"]) {
      const r = spawnSync(process.execPath, [h.cli, "run", "--isolate", "--", "true"], {
        env: {
          ...h.env,
          VALLIGNUS_TOKEN: h.token,
          VALLIGNUS_ISOLATE_METHOD: method,
          PATH: `${bin}:${h.env["PATH"] ?? ""}`,
        },
        encoding: "utf8",
        cwd: h.root,
      });
      assert.equal(r.status, 0, `${method}: ${r.stderr}`);
    }
    assert.equal(existsSync(planted), false, "no planted tool ran");
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
});

test("--isolate refuses working folders it cannot protect", () => {
  const h = makeHarness("root");
  try {
    const refused = (cwd: string, env: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, [h.cli, "run", "--isolate", "--", "true"], {
        env: { ...h.env, VALLIGNUS_TOKEN: h.token, ...env },
        encoding: "utf8",
        cwd,
      });
    // /tmp itself would be bound back writable: the host's /tmp, its sockets and run folders.
    assert.match(refused("/tmp").stderr, /holds \/tmp.*\[ERR_ISOLATE_UNAVAILABLE\]/);
    // A shared temporary folder: other users' files.
    assert.match(refused("/var/tmp").stderr, /writable by everyone/);
    // stdin an open folder of the host (`run --isolate … < $VALLIGNUS_HOME`).
    const folder = openSync(h.env["VALLIGNUS_HOME"] ?? "", "r");
    try {
      const r = spawnSync(process.execPath, [h.cli, "run", "--isolate", "--", "true"], {
        env: { ...h.env, VALLIGNUS_TOKEN: h.token },
        encoding: "utf8",
        cwd: h.root,
        stdio: [folder, "pipe", "pipe"],
      });
      assert.match(r.stderr, /descriptor 0 is an open folder.*\[ERR_ISOLATE_UNAVAILABLE\]/);
    } finally {
      closeSync(folder);
    }
    // The user's home: its startup files run outside the isolation.
    const home = join(h.root, "user-home");
    execFileSync("mkdir", ["-p", home]);
    assert.match(refused(home, { HOME: home }).stderr, /holds your home folder/);
    // $VALLIGNUS_HOME given through a symlink inside the working folder.
    const link = join(h.root, "vh-link");
    execFileSync("ln", ["-s", h.env["VALLIGNUS_HOME"] ?? "", link]);
    assert.match(
      refused(h.root, { VALLIGNUS_HOME: link }).stderr,
      /reached through a symlink inside the working folder/,
    );
  } finally {
    rmSync(h.root, { recursive: true, force: true });
  }
});
