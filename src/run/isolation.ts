import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { VallignusError } from "../errors.js";
import {
  bwrapMountArgs,
  isolationLayout,
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

/** The port the bridge listens on inside the namespace; nothing else is there to collide with. */
export const INNER_PROXY_PORT = 3128;

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

function onPath(tool: string): boolean {
  return (process.env["PATH"] ?? "")
    .split(":")
    .some((dir) => dir !== "" && existsSync(`${dir}/${tool}`));
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

function probe(launcher: readonly string[], check = UNSHARE_CHECK): string | undefined {
  const [program, ...args] = launcher;
  const r = spawnSync(program ?? "unshare", [...args, "sh", "-c", check], {
    encoding: "utf8",
    timeout: 5000,
  });
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
 * bubblewrap: it brings `lo` up itself, drops every capability and lays out the filesystem from
 * its arguments (the run's mounts are added per run, see launchArgv). Its pid namespace dies
 * with it (--die-with-parent), and with it every process inside.
 */
const BWRAP_PLAN: IsolationPlan = {
  method: "bwrap",
  launcher: [
    "bwrap",
    "--unshare-user",
    "--unshare-net",
    "--unshare-pid",
    "--die-with-parent",
    "--cap-drop",
    "ALL",
  ],
  dropPrefix: [],
  setupInside: false,
};

/**
 * util-linux unshare. The helper is pid 1 of a new pid namespace (--pid --kill-child): when
 * unshare dies it is killed, and every process in the namespace with it.
 */
function unsharePlans(uid: number, gid: number): IsolationPlan[] {
  // The command gets its own uid back, in a nested user namespace that owns none of the
  // namespaces around it: it cannot bring `lo` down, unmount the masks, or setns out.
  const userns: IsolationPlan = {
    method: "unshare-userns",
    launcher: [
      "unshare",
      "--user",
      "--map-root-user",
      "--net",
      "--mount",
      "--pid",
      "--fork",
      "--mount-proc",
      "--kill-child",
      "--",
    ],
    dropPrefix: ["unshare", "--user", `--map-user=${uid}`, `--map-group=${gid}`, "--"],
    setupInside: true,
  };
  if (uid !== 0) return [userns];
  // Root without a working user namespace (no CAP_SETFCAP): new net, mount and pid namespaces,
  // and the command runs with every capability dropped, so it cannot nsenter back out.
  const root: IsolationPlan = {
    method: "unshare-root",
    launcher: [
      "unshare",
      "--net",
      "--mount",
      "--pid",
      "--fork",
      "--mount-proc",
      "--kill-child",
      "--",
    ],
    dropPrefix: [
      "setpriv",
      "--bounding-set=-all",
      "--inh-caps=-all",
      "--ambient-caps=-all",
      "--no-new-privs",
      "--",
    ],
    setupInside: true,
  };
  return [userns, root];
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
  // For tests and troubleshooting: pick one of the (equally strict) recipes.
  const forced = env["VALLIGNUS_ISOLATE_METHOD"];
  const problems: string[] = [];

  if ((forced === undefined || forced === "bwrap") && onPath("bwrap")) {
    const problem = probe([...BWRAP_PLAN.launcher, ...BWRAP_CHECK], "true");
    if (problem === undefined) return BWRAP_PLAN;
    problems.push(`bwrap: ${problem}`);
  } else if (forced === "bwrap") {
    problems.push("bwrap is not installed");
  }

  if (forced === undefined || forced === "unshare") {
    const missing = ["unshare", "ip", "mount"].filter((tool) => !onPath(tool));
    if (missing.length > 0) {
      throw new VallignusError(
        "ERR_ISOLATE_UNAVAILABLE",
        `--isolate needs bubblewrap, or ${missing.join(", ")} (Debian: apt-get install bubblewrap, or util-linux iproute2 mount); nothing was started`,
      );
    }
    for (const plan of unsharePlans(process.getuid?.() ?? 0, process.getgid?.() ?? 0)) {
      if (plan.method === "unshare-root" && !onPath("setpriv")) continue;
      const problem = probe(plan.launcher);
      if (problem === undefined) return plan;
      // The root recipe only runs when the user namespace failed: that failure is the cause.
      if (plan.method === "unshare-userns") problems.push(problem);
    }
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
  const hide = [paths.home, join(homedir(), ".vallignus"), paths.runsBase].map(realpathOr);
  return {
    cwd: realpathOr(process.cwd()),
    runDir: paths.runDir,
    // The helper and the preload (dist/), and node itself, wherever they are installed.
    keep: [dirname(dirname(HELPER_PATH)), dirname(process.execPath)].map(realpathOr),
    hide: [...new Set(hide)],
    maskFiles: isolationMaskFiles(env),
    isDirectory: isRealDirectory,
    exists: existsSync,
  };
}

/** Refuses, before anything starts, a working folder the isolated command cannot have. */
export function checkIsolatedWorkingFolder(paths: RunPaths, env = process.env): void {
  const refusal = refuseWorkingFolder(layoutInput(paths, env));
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
