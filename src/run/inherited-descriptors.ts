import { closeSync, readdirSync, readFileSync } from "node:fs";

/** O_CLOEXEC as /proc/<pid>/fdinfo prints it (octal flags). */
const O_CLOEXEC = 0o2000000;

/**
 * Closes the descriptors above stderr that this process inherited open across exec (a shell's
 * `exec 200</some/dir`), before the isolated command is started: every child would inherit
 * them too, and an open folder of the host is a way around every mount (/proc/self/fd/200/…).
 * Node opens its own with close-on-exec, so those are left alone, and so is the IPC channel of
 * a parent Node process. Linux only: without /proc nothing is closed.
 */
export function closeInheritedDescriptors(): number[] {
  let names: string[];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    return [];
  }
  const channel = Number(process.env["NODE_CHANNEL_FD"] ?? -1);
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2 || fd === channel) continue;
    let flags: string | undefined;
    try {
      flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
    } catch {
      continue;
    }
    if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // Gone already.
    }
  }
  return closed;
}
