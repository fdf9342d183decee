/**
 * Runs inside the agent's new network namespace, where the only interface is `lo`. It brings
 * `lo` up, hides filesystem sockets that would be a way out, listens on 127.0.0.1:<port> (and
 * [::1]) and pipes every connection to the Vallignus proxy's unix socket, and only then starts
 * the command — without capabilities — so its first request cannot race the bridge.
 *
 * Invoked as: node netns-helper.js '<json config>'. Exit 70 means the namespace could not be
 * set up; nothing of the command ran.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { constants } from "node:os";

interface HelperConfig {
  readonly socket: string;
  readonly port: number;
  /** Directories to cover with an empty tmpfs, files to cover with /dev/null. */
  readonly maskDirs: readonly string[];
  readonly maskFiles: readonly string[];
  /** False when the launcher (bwrap) already brought `lo` up and mounted the masks. */
  readonly setupInside: boolean;
  /** Runs the command with no capabilities: a nested user namespace or setpriv. */
  readonly dropPrefix: readonly string[];
  readonly command: readonly string[];
}

function fail(message: string): never {
  process.stderr.write(`vallignus: isolation setup failed: ${message} [ERR_ISOLATE_SETUP]\n`);
  process.exit(70);
}

const config = JSON.parse(process.argv[2] ?? "{}") as HelperConfig;

function setUp(): void {
  try {
    execFileSync("ip", ["link", "set", "lo", "up"], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    fail(`cannot bring up lo (${err instanceof Error ? err.message.split("\n")[0] : String(err)})`);
  }
  mask();
}

function mask(): void {
  for (const dir of config.maskDirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", dir], {
        stdio: "ignore",
      });
    } catch {
      fail(`cannot mask ${dir}`);
    }
  }
  for (const file of config.maskFiles) {
    if (!existsSync(file)) continue;
    try {
      execFileSync("mount", ["--bind", "/dev/null", file], { stdio: "ignore" });
    } catch {
      fail(`cannot mask ${file}`);
    }
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

// The command's Node options were set aside so this helper starts without the preload.
const env = { ...process.env };
const nodeOptions = env["VALLIGNUS_CHILD_NODE_OPTIONS"];
delete env["VALLIGNUS_CHILD_NODE_OPTIONS"];
if (nodeOptions !== undefined) env["NODE_OPTIONS"] = nodeOptions;

const [program, ...args] = [...config.dropPrefix, ...config.command];
if (program === undefined) fail("no command");
const child = spawn(program, args, { stdio: "inherit", env });
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
