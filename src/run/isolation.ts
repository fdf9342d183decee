import { spawnSync } from "node:child_process";
import {
  existsSync,
  fstatSync,
  lstatSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
} from "node:fs";
import { homedir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { VallignusError } from "../errors.js";
import {
  bwrapMountArgs,
  isolationLayout,
  isUnder,
  refuseWorkingFolder,
  type LayoutInput,
  type MountStep,
} from "./isolation-layout.js";

/** How the agent was isolated, as the session and the `run_start` audit event record it. */
export type IsolationMethod = "bwrap" | "unshare-userns" | "unshare-root";

export interface IsolationPlan {
  readonly method: IsolationMethod;
  /** The namespace launcher, up to and including "--"; the helper and its config follow. */
  readonly launcher: readonly string[];
  /** How the helper runs the command without capabilities. */
  readonly dropPrefix: readonly string[];
  /** Whether the helper itself brings `lo` up and mounts the masks (bwrap does both). */
  readonly setupInside: boolean;
}

/** dist/run/netns-helper.js, named from the parent folder for the reason given for PRELOAD_PATH. */
export const HELPER_PATH = fileURLToPath(new URL("../run/netns-helper.js", import.meta.url));

/** Vallignus's package folder (dist/ and the node_modules beside it, or around it). */
const OWN_CODE = dirname(dirname(dirname(HELPER_PATH)));

/** The port the bridge listens on inside the namespace; nothing else is there to collide with. */
export const INNER_PROXY_PORT = 3128;

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * Where the isolation tools are looked up: the system's own folders, never the caller's PATH,
 * which may hold a folder an agent wrote (a `bwrap` of its own would run unisolated, and under
 * the root recipe the helper runs `mount` and `ip` as root). VALLIGNUS_TOOL_PATH overrides it,
 * for tests; whoever sets vallignus's environment could as well set its NODE_OPTIONS.
 */
const SYSTEM_TOOL_DIRS = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function toolPath(env: NodeJS.ProcessEnv = process.env): string {
  return env["VALLIGNUS_TOOL_PATH"] ?? SYSTEM_TOOL_DIRS;
}

/** The tool's absolute path in the tool folders, or undefined. */
function findTool(tool: string, env: NodeJS.ProcessEnv): string | undefined {
  return toolPath(env)
    .split(":")
    .filter((dir) => dir.startsWith("/"))
    .map((dir) => `${dir}/${tool}`)
    .find((path) => existsSync(path));
}

/**
 * What the probe does inside: bring `lo` up and mount a private /tmp, as a run would. Only a
 * real probe proves the recipe works here.
 */
const UNSHARE_CHECK = "ip link set lo up && mount -t tmpfs tmpfs /tmp";
const BWRAP_CHECK = [
  "--ro-bind",
  "/",
  "/",
  "--dev",
  "/dev",
  "--proc",
  "/proc",
  "--tmpfs",
  "/tmp",
  "--",
];

function probe(
  launcher: readonly string[],
  env: NodeJS.ProcessEnv,
  check = UNSHARE_CHECK,
): string | undefined {
  const [program, ...args] = launcher;
  const r = spawnSync(
    program ?? "unshare",
    [...args, findTool("sh", env) ?? "/bin/sh", "-c", check],
    {
      encoding: "utf8",
      timeout: 5000,
      env: { PATH: toolPath(env) },
    },
  );
  return r.status === 0
    ? undefined
    : (r.stderr || r.error?.message || `exit ${String(r.status)}`).trim();
}

/** Names the cause of a failed probe, and the fix, from what the kernel exposes. */
function diagnose(detail: string): string {
  if (readSysctl("/proc/sys/user/max_user_namespaces") === "0") {
    return "user namespaces are disabled (sysctl user.max_user_namespaces=0); enable them with `sysctl -w user.max_user_namespaces=15000`";
  }
  if (readSysctl("/proc/sys/kernel/unprivileged_userns_clone") === "0") {
    return "unprivileged user namespaces are disabled; enable them with `sysctl -w kernel.unprivileged_userns_clone=1`";
  }
  if (readSysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") === "1") {
    return "AppArmor restricts unprivileged user namespaces (Ubuntu 24.04 and later); allow them with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile granting `userns`";
  }
  if (/Operation not permitted|EPERM/.test(detail)) {
    return `the kernel refused to create the namespaces (${detail}); in a container this is usually its seccomp profile: run the container with user namespaces allowed`;
  }
  return `the namespaces could not be created (${detail})`;
}

/**
 * The uid a root caller's command runs as. Root, even without capabilities, owns the host: it
 * may write /proc/sys (kernel.core_pattern runs a program as root in the host's namespaces),
 * make setuid-root files in the working folder, write /dev/kmsg. So the command never runs as
 * host uid 0. Not as nobody either, which the host's own daemons may be (its files, its user
 * keyring, a setuid-nobody file left in the working folder would be theirs): as a uid that no
 * account has and that owns nothing, with no capabilities.
 */
export const ROOT_COMMAND_UID = 2_000_000_000;

/** The helper's last step for a root caller: become nobody, keep no capability, gain none. */
function dropRoot(setpriv: string): string[] {
  return [
    setpriv,
    `--reuid=${ROOT_COMMAND_UID}`,
    `--regid=${ROOT_COMMAND_UID}`,
    "--clear-groups",
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--no-new-privs",
    "--",
  ];
}

/** Namespaces beyond network, mount and pid: System V IPC, hostname, cgroup. */
const BWRAP_EXTRA = ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"];
const UNSHARE_NAMESPACES = [
  "--net",
  "--mount",
  "--pid",
  "--ipc",
  "--uts",
  "--cgroup",
  "--fork",
  "--mount-proc",
  "--kill-child",
  "--",
];

/**
 * bubblewrap: it brings `lo` up itself and lays out the filesystem from its arguments (the
 * run's mounts are added per run, see launcherArgv). Its pid namespace dies with it
 * (--die-with-parent), and with it every process inside. An unprivileged caller's command keeps
 * its uid in a user namespace, without capabilities; a root caller's runs bwrap without a user
 * namespace, keeping for the helper only what it needs to become nobody.
 */
function bwrapPlan(
  bwrap: string,
  setpriv: string | undefined,
  uid: number,
): IsolationPlan | undefined {
  const common = [bwrap, "--unshare-net", "--unshare-pid", ...BWRAP_EXTRA, "--die-with-parent"];
  if (uid !== 0)
    return {
      method: "bwrap",
      launcher: [...common, "--unshare-user", "--cap-drop", "ALL"],
      dropPrefix: [],
      setupInside: false,
    };
  if (setpriv === undefined) return undefined;
  const keep = ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"].flatMap((cap) => ["--cap-add", cap]);
  return {
    method: "bwrap",
    launcher: [...common, "--cap-drop", "ALL", ...keep],
    dropPrefix: dropRoot(setpriv),
    setupInside: false,
  };
}

/**
 * util-linux unshare. The helper is pid 1 of a new pid namespace (--pid --kill-child): when
 * unshare dies it is killed, and every process in the namespace with it. An unprivileged
 * caller's command gets its own uid back in a nested user namespace that owns none of the
 * namespaces around it: it cannot bring `lo` down, unmount the masks, or setns out. A root
 * caller's runs without a user namespace, and its command as nobody without capabilities.
 */
function unsharePlan(
  tools: Readonly<Record<string, string>>,
  uid: number,
  gid: number,
): IsolationPlan | undefined {
  const unshare = tools["unshare"] ?? "unshare";
  if (uid !== 0)
    return {
      method: "unshare-userns",
      launcher: [unshare, "--user", "--map-root-user", ...UNSHARE_NAMESPACES],
      dropPrefix: [unshare, "--user", `--map-user=${uid}`, `--map-group=${gid}`, "--"],
      setupInside: true,
    };
  const setpriv = tools["setpriv"];
  if (setpriv === undefined) return undefined;
  return {
    method: "unshare-root",
    launcher: [unshare, ...UNSHARE_NAMESPACES],
    dropPrefix: dropRoot(setpriv),
    setupInside: true,
  };
}

/**
 * Finds a recipe that really isolates on this machine, or refuses with the cause and the fix.
 * There is no fallback to an unisolated run.
 */
export function planIsolation(env: NodeJS.ProcessEnv = process.env): IsolationPlan {
  if (process.platform !== "linux") {
    throw new VallignusError(
      "ERR_ISOLATE_UNSUPPORTED",
      `--isolate is supported on Linux only (this is ${process.platform}); nothing was started`,
    );
  }
  // For tests and troubleshooting: pick one of the (equally strict) recipes: bwrap or unshare.
  const forced = env["VALLIGNUS_ISOLATE_METHOD"];
  const uid = process.getuid?.() ?? 0;
  const problems: string[] = [];
  const tools = Object.fromEntries(
    ["bwrap", "unshare", "setpriv", "ip", "mount", "sh"].flatMap((tool) => {
      const path = findTool(tool, env);
      return path === undefined ? [] : [[tool, path]];
    }),
  ) as Record<string, string>;

  const bwrap = tools["bwrap"];
  if ((forced === undefined || forced === "bwrap") && bwrap !== undefined) {
    const plan = bwrapPlan(bwrap, tools["setpriv"], uid);
    const problem =
      plan === undefined
        ? "setpriv (util-linux) is missing"
        : probe([...plan.launcher, ...BWRAP_CHECK], env, "true");
    if (plan !== undefined && problem === undefined) return plan;
    problems.push(`bwrap: ${problem ?? ""}`);
  } else if (forced === "bwrap") {
    problems.push("bwrap is not installed");
  }

  if (forced === undefined || forced === "unshare") {
    const needed = ["unshare", "ip", "mount", "sh", ...(uid === 0 ? ["setpriv"] : [])];
    const missing = needed.filter((tool) => tools[tool] === undefined);
    if (missing.length > 0) {
      throw new VallignusError(
        "ERR_ISOLATE_UNAVAILABLE",
        `--isolate needs bubblewrap, or ${missing.join(", ")} (Debian: apt-get install bubblewrap, or util-linux iproute2 mount); nothing was started`,
      );
    }
    const plan = unsharePlan(tools, uid, process.getgid?.() ?? 0);
    const problem = plan === undefined ? "setpriv is missing" : probe(plan.launcher, env);
    if (plan !== undefined && problem === undefined) return plan;
    problems.push(problem ?? "");
  }
  throw new VallignusError(
    "ERR_ISOLATE_UNAVAILABLE",
    `--isolate cannot isolate here: ${diagnose(problems.join("; ") || `unknown method ${forced ?? ""}`)}; nothing was started`,
  );
}

/** Filesystem sockets that would be a way around the network namespace (if not covered). */
export function isolationMaskFiles(env: NodeJS.ProcessEnv): string[] {
  const files = ["/var/run/docker.sock", "/run/docker.sock"];
  const agent = env["SSH_AUTH_SOCK"];
  if (agent !== undefined && agent !== "") files.push(agent);
  return files;
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function isRealDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Where a run's files are, on the host. */
export interface RunPaths {
  /** $VALLIGNUS_HOME. */
  readonly home: string;
  /** This user's run folders (every run's CA bundle and socket). */
  readonly runsBase: string;
  /** This run's folder; empty while only the working folder is checked. */
  readonly runDir: string;
}

function layoutInput(paths: RunPaths, env: NodeJS.ProcessEnv): LayoutInput {
  const given = [paths.home, join(homedir(), ".vallignus"), paths.runsBase];
  return {
    cwd: realpathOr(process.cwd()),
    runDir: paths.runDir,
    // Vallignus itself (dist/ and the node_modules its CLI loads) and node's own folder,
    // wherever they are installed: read-only, so that no agent changes what runs next time.
    keep: [OWN_CODE, dirname(process.execPath)].map(realpathOr),
    ownCode: realpathOr(OWN_CODE),
    isShared: (path) => {
      try {
        return (statSync(path).mode & 0o1002) === 0o1002;
      } catch {
        return false;
      }
    },
    hide: [...new Set(given.map(realpathOr))],
    given,
    userHome: realpathOr(homedir()),
    maskFiles: isolationMaskFiles(env),
    memoryBytes: totalmem(),
    isDirectory: isRealDirectory,
    exists: existsSync,
  };
}

/**
 * What stdin, stdout or stderr may not be for an isolated command: a folder (an open folder
 * reaches around every mount: `run --isolate … < $VALLIGNUS_HOME`), or a file in one of the
 * folders it must not see.
 */
function refuseStdio(hidden: readonly string[]): string | undefined {
  for (const fd of [0, 1, 2]) {
    let target: string;
    try {
      if (fstatSync(fd).isDirectory()) return `descriptor ${fd} is an open folder`;
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    const secret = hidden.find((dir) => target.startsWith("/") && isUnder(target, dir));
    if (secret !== undefined) return `descriptor ${fd} is a file in ${secret}`;
  }
  return undefined;
}

/** Refuses, before anything starts, a working folder the isolated command cannot have. */
export function checkIsolatedWorkingFolder(paths: RunPaths, env = process.env): void {
  const input = layoutInput(paths, env);
  const stdio = refuseStdio(input.hide);
  const refusal =
    refuseWorkingFolder(input) ??
    (stdio === undefined ? undefined : `${stdio}, which the isolated command would inherit`);
  if (refusal !== undefined)
    throw new VallignusError(
      "ERR_ISOLATE_UNAVAILABLE",
      `--isolate: ${refusal}; nothing was started`,
    );
}

/** The filesystem the command sees: read-only, its own /tmp, and none of vallignus's state. */
export function isolationMounts(paths: RunPaths, env = process.env): MountStep[] {
  return isolationLayout(layoutInput(paths, env));
}

/**
 * The launcher's argv up to the helper: bubblewrap lays the mounts out itself, the unshare
 * recipes' helper applies them from its config.
 */
export function launcherArgv(plan: IsolationPlan, mounts: readonly MountStep[]): string[] {
  if (plan.setupInside) return [...plan.launcher];
  return [...plan.launcher, ...bwrapMountArgs(mounts), "--"];
}
