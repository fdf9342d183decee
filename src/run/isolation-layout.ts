import { isAbsolute, join, relative } from "node:path";

/**
 * The filesystem the isolated command sees, as a list of mounts applied in order over a
 * read-only view of the host's root. bubblewrap takes it as arguments; the unshare recipes'
 * helper runs it as one shell script. Both come from this one list so they cannot drift.
 */
export type MountStep =
  /** An empty, private, writable tmpfs (the command's own /tmp, /run, /dev/shm), bounded. */
  | { readonly kind: "tmpfs"; readonly path: string; readonly mode: number; readonly bytes: number }
  /** An empty, read-only tmpfs laid over a folder the command must not see. */
  | { readonly kind: "hide"; readonly path: string }
  | {
      readonly kind: "bind";
      readonly source: string;
      readonly target: string;
      readonly writable: boolean;
    }
  /** A folder inside the working folder bound onto itself, so that it cannot be renamed. */
  | { readonly kind: "pin"; readonly path: string }
  /**
   * A /dev of its own: the harmless devices and a new pty instance, not the host's terminals
   * and disks (bwrap's --dev; the script makes the same).
   */
  | { readonly kind: "dev" }
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

/**
 * A tmpfs is memory: unbounded, each would take up to half of it (the kernel's default), and an
 * agent filling three would starve the host. /tmp gets a quarter of memory, /dev/shm a tenth,
 * /run and /var/run (where nothing of the command's belongs) 16 MiB.
 */
function tmpfsBytes(path: string, memoryBytes: number): number {
  if (path === "/tmp") return Math.floor(memoryBytes / 4);
  if (path === "/dev/shm") return Math.floor(memoryBytes / 10);
  return 16 * 1024 * 1024;
}

/** The size of a tmpfs that only hides a folder: it holds nothing. */
const HIDE_BYTES = 4096;

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
  /** The machine's memory, which bounds the private tmpfs folders. */
  readonly memoryBytes: number;
  /** The user's home folder: its startup files must not be writable by the command. */
  readonly userHome: string;
  /** Vallignus's own package folder: the code the next `vallignus` runs. */
  readonly ownCode: string;
  /** Whether a folder is writable by everyone (a shared temp folder such as /var/tmp). */
  readonly isShared: (path: string) => boolean;
  /**
   * Protected paths as they were given, before symlinks were resolved ($VALLIGNUS_HOME): one
   * that goes through a symlink the command could replace would lead vallignus elsewhere.
   */
  readonly given: readonly string[];
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
  const { cwd } = input;
  const secret = [...input.hide, ...input.keep].find((folder) => isUnder(cwd, folder));
  if (secret !== undefined)
    return `the working folder is inside ${secret}, which the isolated command must not see or change; run it from another folder`;
  if (cwd === "/") return undefined;
  // Bound back writable, /tmp (or a folder above it) would be the host's, sockets and all.
  const covered = PRIVATE_DIRS.find(([dir]) => isUnder(dir, cwd));
  if (covered !== undefined)
    return `the working folder ${cwd} holds ${covered[0]}, which the isolated command must get private and empty; run it from another folder`;
  if (input.userHome !== "/" && isUnder(input.userHome, cwd))
    return `the working folder ${cwd} holds your home folder, whose startup files (.bashrc, .profile) would run what the agent writes there outside the isolation; run it from a project folder`;
  // ~/.config, ~/.local, ~/.ssh…: settings and programs that your own tools run later.
  if (isUnder(cwd, input.userHome) && relative(input.userHome, cwd).startsWith("."))
    return `the working folder ${cwd} is a settings folder of your home, whose files your own programs (git, your shell) read and run later; run it from a project folder`;
  if (isUnder(input.ownCode, cwd))
    return `the working folder ${cwd} holds vallignus itself (${input.ownCode}, with the modules it loads): the agent could change the code vallignus runs next time; install vallignus outside the project, or run from another folder`;
  if (input.isShared(cwd))
    return `the working folder ${cwd} is writable by everyone (a shared temporary folder): other users' files there are not the agent's to change; run it from a project folder`;
  const swappable = input.given.find((path) => isUnder(path, cwd) && !input.hide.includes(path));
  if (swappable !== undefined)
    return `${swappable} is reached through a symlink inside the working folder, which the agent could replace; give its real path`;
  return undefined;
}

/**
 * The folders between `cwd` and a protected path below it, bound onto themselves: a mount point
 * cannot be renamed or removed (EBUSY), so the agent cannot move a parent aside and put a
 * folder of its own where vallignus, its state or node will be looked up next time.
 */
function pins(cwd: string, protectedPaths: readonly string[]): string[] {
  const pinned = new Set<string>();
  for (const path of protectedPaths) {
    if (path === cwd || !isUnder(path, cwd)) continue;
    const parts = relative(cwd, path).split("/").slice(0, -1);
    for (let i = 1; i <= parts.length; i++) pinned.add(join(cwd, ...parts.slice(0, i)));
  }
  return [...pinned].sort();
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
  const steps: MountStep[] = [];
  for (const [path, mode] of privateDirs) {
    // /dev is replaced right after /run exists (the script stages the host's devices there),
    // and before /dev/shm is mounted in it.
    if (path === "/dev/shm") continue;
    steps.push({ kind: "tmpfs", path, mode, bytes: tmpfsBytes(path, input.memoryBytes) });
    if (path === "/run") steps.push({ kind: "dev" });
  }
  if (privateDirs.some(([dir]) => dir === "/dev/shm"))
    steps.push({
      kind: "tmpfs",
      path: "/dev/shm",
      mode: 0o1777,
      bytes: tmpfsBytes("/dev/shm", input.memoryBytes),
    });
  steps.push({ kind: "bind", source: input.runDir, target: INNER_RUN_DIR, writable: false });
  for (const dir of writable)
    steps.push({ kind: "bind", source: dir, target: dir, writable: true });
  if (writable.length > 0)
    for (const path of pins(input.cwd, [...input.keep, ...input.hide]))
      steps.push({ kind: "pin", path });
  for (const dir of input.keep)
    if (covered(dir) || writable.some((w) => isUnder(dir, w)))
      steps.push({ kind: "bind", source: dir, target: dir, writable: false });
  for (const dir of input.hide)
    if (input.isDirectory(dir) && visible(dir)) steps.push({ kind: "hide", path: dir });
  for (const file of input.maskFiles)
    if (input.exists(file) && visible(file)) steps.push({ kind: "null", path: file });
  return steps;
}

/**
 * The folders bwrap must make in a private tmpfs before binding `target` there: made with
 * mode 0755 (bwrap's own default is 0700, which a root caller's command, running as nobody,
 * could not pass through).
 */
function parentsToMake(target: string, tmpfs: readonly string[]): string[] {
  const base = tmpfs.find((dir) => target !== dir && isUnder(target, dir));
  if (base === undefined) return [];
  const parts = relative(base, target).split("/").slice(0, -1);
  return parts.map((_, i) => join(base, ...parts.slice(0, i + 1)));
}

/** bubblewrap's arguments for the layout (it resolves every source on the host). */
export function bwrapMountArgs(steps: readonly MountStep[]): string[] {
  // bwrap's /dev is a tmpfs it cannot bound (--size is for --tmpfs only): read-only, then, its
  // devices still usable; /dev/shm is mounted over it, bounded.
  const args = ["--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc"];
  const tmpfs: string[] = [];
  const makeParents = (target: string) => {
    for (const dir of parentsToMake(target, tmpfs)) args.push("--perms", "0755", "--dir", dir);
  };
  for (const step of steps) {
    if (step.kind === "tmpfs") {
      const mode = step.mode.toString(8).padStart(4, "0");
      args.push("--perms", mode, "--size", String(step.bytes), "--tmpfs", step.path);
      tmpfs.push(step.path);
    } else if (step.kind === "hide") {
      args.push("--perms", "0000", "--size", String(HIDE_BYTES), "--tmpfs", step.path);
      args.push("--remount-ro", step.path);
    } else if (step.kind === "bind") {
      makeParents(step.target);
      args.push(step.writable ? "--bind" : "--ro-bind", step.source, step.target);
    } else if (step.kind === "pin") args.push("--bind", step.path, step.path);
    else if (step.kind === "null") args.push("--ro-bind", "/dev/null", step.path);
    // "dev": bwrap's own --dev /dev, above.
  }
  return args;
}

function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The devices a program may expect; never the host's disks, terminals or consoles. */
const DEVICES = ["null", "zero", "full", "random", "urandom", "tty"];

/**
 * /dev made anew, for the unshare recipes: the host's /dev is bound aside under the private
 * /run, its harmless devices bound into an empty tmpfs, a new pty instance mounted, the aside
 * unmounted.
 */
function devLines(): string[] {
  const aside = "/run/.vallignus-host-dev";
  return [
    `mkdir ${aside}`,
    // Recursive: in a user namespace /dev's submounts are locked to it.
    `mount -c --rbind /dev ${aside}`,
    "mount -t tmpfs -o mode=755,size=65536 tmpfs /dev",
    ...DEVICES.flatMap((name) => [
      `touch /dev/${name}`,
      `mount -c --bind ${aside}/${name} /dev/${name}`,
    ]),
    `umount -l ${aside}`,
    `rmdir ${aside}`,
    "mkdir /dev/pts /dev/shm",
    "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts",
    "ln -s pts/ptmx /dev/ptmx",
    "ln -s /proc/self/fd /dev/fd",
    ...["stdin", "stdout", "stderr"].map((name, fd) => `ln -s /proc/self/fd/${fd} /dev/${name}`),
    "mount -o remount,ro,bind /dev",
  ];
}

/**
 * The same layout as a POSIX shell script for the unshare recipes, run by the helper as root of
 * its namespaces. Every existing mount (but /proc) is first made read-only. A bind's source may
 * lie under a folder that a tmpfs then covers: each is opened first (fd 3 to 9: dash has no
 * more) and bound from /proc/self/fd, which still reaches it (`mount -c`: not canonicalized,
 * which would resolve the path again, to the empty tmpfs). Pins need no descriptor: they lie
 * in the working folder, bound by then.
 */
export function mountScript(steps: readonly MountStep[], mountPoints: readonly string[]): string {
  const lines = ["set -e"];
  const binds = steps.filter((s) => s.kind === "bind");
  if (binds.length > 7) throw new Error(`${binds.length} folders to bind: at most 7 fit`);
  binds.forEach((step, i) => lines.push(`exec ${i + 3}<${quote(step.source)}`));
  for (const point of mountPoints)
    if (!isUnder(point, "/proc")) lines.push(`mount -c -o remount,bind,ro ${quote(point)}`);
  for (const step of steps) {
    if (step.kind === "tmpfs") {
      const options = `mode=${step.mode.toString(8)},size=${step.bytes}`;
      lines.push(`mount -t tmpfs -o ${options} tmpfs ${quote(step.path)}`);
    } else if (step.kind === "hide") {
      const path = quote(step.path);
      const options = `ro,mode=0,size=${HIDE_BYTES}`;
      lines.push(`if [ -d ${path} ]; then mount -t tmpfs -o ${options} tmpfs ${path}; fi`);
    } else if (step.kind === "bind") {
      const target = quote(step.target);
      lines.push(`mkdir -p ${target}`);
      lines.push(`mount -c --bind /proc/self/fd/${binds.indexOf(step) + 3} ${target}`);
      lines.push(`mount -c -o remount,bind,${step.writable ? "rw" : "ro"} ${target}`);
    } else if (step.kind === "pin") {
      lines.push(`mount -c --bind ${quote(step.path)} ${quote(step.path)}`);
    } else if (step.kind === "dev") lines.push(...devLines());
    else {
      const path = quote(step.path);
      lines.push(`if [ -e ${path} ]; then mount -c --bind /dev/null ${path}; fi`);
    }
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
