import { isAbsolute, relative } from "node:path";

/**
 * The filesystem the isolated command sees, as a list of mounts applied in order over a
 * read-only view of the host's root. bubblewrap takes it as arguments; the unshare recipes'
 * helper runs it as one shell script. Both come from this one list so they cannot drift.
 */
export type MountStep =
  /** An empty, private, writable tmpfs (the command's own /tmp, /run, /dev/shm). */
  | { readonly kind: "tmpfs"; readonly path: string; readonly mode: number }
  /** An empty, read-only tmpfs laid over a folder the command must not see. */
  | { readonly kind: "hide"; readonly path: string }
  | {
      readonly kind: "bind";
      readonly source: string;
      readonly target: string;
      readonly writable: boolean;
    }
  /** A file (a unix socket) covered by /dev/null. */
  | { readonly kind: "null"; readonly path: string };

/** Where the command finds its own run folder (CA bundle, proxy socket) inside. */
export const INNER_RUN_DIR = "/run/vallignus";

/**
 * Folders every command gets empty and private: its /tmp (not the host's, where other runs and
 * other programs keep sockets), and /run, /var/run and /dev/shm, which hold the host's sockets
 * (Docker, D-Bus, systemd) and shared memory.
 */
const PRIVATE_DIRS: readonly (readonly [string, number])[] = [
  ["/tmp", 0o1777],
  ["/dev/shm", 0o1777],
  ["/run", 0o755],
  ["/var/run", 0o755],
];

export interface LayoutInput {
  /** The working folder: the only host folder the command may write. "/" binds nothing. */
  readonly cwd: string;
  /** This run's folder on the host, bound read-only at INNER_RUN_DIR. */
  readonly runDir: string;
  /** Host folders the helper and the command need to run (vallignus's dist/, node's bin/). */
  readonly keep: readonly string[];
  /** Folders hidden whole: $VALLIGNUS_HOME, ~/.vallignus, every run folder. */
  readonly hide: readonly string[];
  /** Filesystem sockets that would be a way out (Docker's, the SSH agent's). */
  readonly maskFiles: readonly string[];
  /** Whether a path is a real folder (not a symlink) on the host. */
  readonly isDirectory: (path: string) => boolean;
  readonly exists: (path: string) => boolean;
}

export function isUnder(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** Why the command cannot run from `cwd` under --isolate, or undefined when it can. */
export function refuseWorkingFolder(input: LayoutInput): string | undefined {
  const secret = input.hide.find((folder) => isUnder(input.cwd, folder));
  if (secret !== undefined)
    return `the working folder is inside ${secret}, which the isolated command must not see; run it from another folder`;
  if (input.cwd === "/") return undefined;
  const covered = PRIVATE_DIRS.find(([dir]) => dir !== input.cwd && isUnder(dir, input.cwd));
  if (covered !== undefined)
    return `the working folder ${input.cwd} holds ${covered[0]}, which the isolated command gets empty; run it from another folder`;
  return undefined;
}

/**
 * The mounts, in order. The private folders come first; then what must show through them (the
 * run folder, the working folder, read-only keeps after it so that vallignus's own code stays
 * read-only even when the agent works in its checkout); then the hidden folders and masked
 * sockets, last, so that nothing bound earlier shows them again.
 */
export function isolationLayout(input: LayoutInput): MountStep[] {
  const privateDirs = PRIVATE_DIRS.filter(([dir]) => input.isDirectory(dir));
  const covered = (path: string) => privateDirs.some(([dir]) => isUnder(path, dir));
  const writable = input.cwd === "/" ? [] : [input.cwd];
  const shown = [...writable, ...input.keep];
  const visible = (path: string) => !covered(path) || shown.some((dir) => isUnder(path, dir));
  const steps: MountStep[] = privateDirs.map(([path, mode]) => ({ kind: "tmpfs", path, mode }));
  steps.push({ kind: "bind", source: input.runDir, target: INNER_RUN_DIR, writable: false });
  for (const dir of writable)
    steps.push({ kind: "bind", source: dir, target: dir, writable: true });
  for (const dir of input.keep)
    if (covered(dir) || writable.some((w) => isUnder(dir, w)))
      steps.push({ kind: "bind", source: dir, target: dir, writable: false });
  for (const dir of input.hide)
    if (input.isDirectory(dir) && visible(dir)) steps.push({ kind: "hide", path: dir });
  for (const file of input.maskFiles)
    if (input.exists(file) && visible(file)) steps.push({ kind: "null", path: file });
  return steps;
}

/** bubblewrap's arguments for the layout (it resolves every source on the host). */
export function bwrapMountArgs(steps: readonly MountStep[]): string[] {
  const args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"];
  for (const step of steps) {
    if (step.kind === "tmpfs")
      args.push("--perms", step.mode.toString(8).padStart(4, "0"), "--tmpfs", step.path);
    else if (step.kind === "hide")
      args.push("--perms", "0000", "--tmpfs", step.path, "--remount-ro", step.path);
    else if (step.kind === "bind")
      args.push(step.writable ? "--bind" : "--ro-bind", step.source, step.target);
    else args.push("--ro-bind", "/dev/null", step.path);
  }
  return args;
}

function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The same layout as a POSIX shell script for the unshare recipes, run by the helper as root of
 * its namespaces. Every existing mount (but /proc) is first made read-only. A bind's source may
 * lie under a folder that a tmpfs then covers: each is opened first (fd 3 onwards) and bound
 * from /proc/self/fd, which still reaches it (`mount -c`: not canonicalized, which would
 * resolve the path again, to the empty tmpfs).
 */
export function mountScript(steps: readonly MountStep[], mountPoints: readonly string[]): string {
  const lines = ["set -e"];
  const binds = steps.filter((s) => s.kind === "bind");
  binds.forEach((step, i) => lines.push(`exec ${i + 3}<${quote(step.source)}`));
  for (const point of mountPoints)
    if (!isUnder(point, "/proc")) lines.push(`mount -c -o remount,bind,ro ${quote(point)}`);
  for (const step of steps) {
    if (step.kind === "tmpfs")
      lines.push(`mount -t tmpfs -o mode=${step.mode.toString(8)} tmpfs ${quote(step.path)}`);
    else if (step.kind === "hide")
      lines.push(
        `if [ -d ${quote(step.path)} ]; then mount -t tmpfs -o ro,mode=0,size=4k tmpfs ${quote(step.path)}; fi`,
      );
    else if (step.kind === "bind") {
      const fd = binds.indexOf(step) + 3;
      const target = quote(step.target);
      lines.push(`mkdir -p ${target}`, `mount -c --bind /proc/self/fd/${fd} ${target}`);
      lines.push(`mount -c -o remount,bind,${step.writable ? "rw" : "ro"} ${target}`);
    } else
      lines.push(
        `if [ -e ${quote(step.path)} ]; then mount -c --bind /dev/null ${quote(step.path)}; fi`,
      );
  }
  binds.forEach((_, i) => lines.push(`exec ${i + 3}<&-`));
  return `${lines.join("\n")}\n`;
}

/** The mount points listed in a /proc/<pid>/mountinfo text (octal escapes decoded). */
export function mountPointsOf(mountinfo: string): string[] {
  return mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((field): field is string => field !== undefined && field !== "")
    .map((field) =>
      field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))),
    );
}
