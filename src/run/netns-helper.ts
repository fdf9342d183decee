/**
 * Runs inside the agent's new namespaces, where the only interface is `lo`. Under unshare it
 * brings `lo` up and lays out the filesystem (read-only, private /tmp, vallignus's state
 * hidden); bwrap has done both already. It listens on 127.0.0.1:<port> (and [::1]) and pipes
 * every connection to the Vallignus proxy's unix socket, and only then starts the command —
 * without capabilities — so its first request cannot race the bridge.
 *
 * Invoked as: node netns-helper.js '<json config>'. Exit 70 means the namespace could not be
 * set up; nothing of the command ran.
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { constants } from "node:os";

import { handBackFromHelper } from "./child-env.js";
import { mountPointsOf, mountScript, type MountStep } from "./isolation-layout.js";

interface HelperConfig {
  readonly socket: string;
  readonly port: number;
  /** The filesystem to lay out, when the launcher (bwrap) has not done it. */
  readonly mounts: readonly MountStep[];
  /** False when the launcher (bwrap) already brought `lo` up and laid out the mounts. */
  readonly setupInside: boolean;
  /** Runs the command with no capabilities: a nested user namespace or setpriv. */
  readonly dropPrefix: readonly string[];
  readonly command: readonly string[];
  /** The working folder, looked up again after the mounts. */
  readonly cwd: string;
  /** The system folders the setup's tools (ip, sh, mount, mkdir) are taken from. */
  readonly toolPath: string;
}

// Under unshare this helper holds the namespaces' capabilities (all of them, for root without a
// user namespace); SIGUSR1 from the command would open a Node inspector on its loopback, and
// with it a way to run code here. A listener of our own replaces that behaviour.
process.on("SIGUSR1", () => undefined);

function fail(message: string): never {
  process.stderr.write(`vallignus: isolation setup failed: ${message} [ERR_ISOLATE_SETUP]\n`);
  process.exit(70);
}

const config = JSON.parse(process.argv[2] ?? "{}") as HelperConfig;

function firstLine(err: unknown): string {
  if (err instanceof Error && "stderr" in err && String(err.stderr).trim() !== "")
    return String(err.stderr).trim().split("\n")[0] ?? "";
  return err instanceof Error ? (err.message.split("\n")[0] ?? "") : String(err);
}

function setUp(): void {
  // Not the command's PATH, which may name a folder the agent can write.
  const tools = { PATH: config.toolPath };
  try {
    execFileSync("ip", ["link", "set", "lo", "up"], {
      stdio: ["ignore", "ignore", "pipe"],
      env: tools,
    });
  } catch (err) {
    fail(`cannot bring up lo (${firstLine(err)})`);
  }
  const script = mountScript(
    config.mounts,
    mountPointsOf(readFileSync("/proc/self/mountinfo", "utf8")),
  );
  try {
    execFileSync("sh", ["-c", script], { stdio: ["ignore", "ignore", "pipe"], env: tools });
  } catch (err) {
    fail(`cannot lay out the filesystem (${firstLine(err)})`);
  }
}

if (config.setupInside) setUp();

function bridge(client: Socket): void {
  const upstream = connect(config.socket);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
  client.pipe(upstream).pipe(client);
}

function listen(host: string): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer(bridge);
    server.once("error", () => resolve(undefined));
    server.listen(config.port, host, () => resolve(server));
  });
}

const v4 = await listen("127.0.0.1");
if (v4 === undefined) fail(`cannot listen on 127.0.0.1:${config.port}`);
await listen("::1");

const env = handBackFromHelper(process.env);

const [program, ...args] = [...config.dropPrefix, ...config.command];
if (program === undefined) fail("no command");
// A fresh lookup of the working folder: the cwd this helper was started in is the host's folder
// under the mounts, where the hidden folders would still show.
const child = spawn(program, args, { stdio: "inherit", env, cwd: config.cwd });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => child.kill(signal));
}
child.on("error", (err) => fail(`cannot start ${program}: ${err.message}`));
child.on("exit", (code, signal) => {
  if (signal !== null) {
    // As pid 1 of its namespace (unshare --pid) a signal to itself is ignored: say it instead.
    if (process.pid === 1) process.exit(128 + constants.signals[signal]);
    // Die of the same signal, so the exit status outside says what happened.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(128 + constants.signals[signal]), 100);
    return;
  }
  process.exit(code ?? 1);
});
