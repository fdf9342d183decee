import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

import { VallignusError } from "../errors.js";
import { isProcessAlive, OWN_PROCESS, type ProcessStamp } from "../storage/index.js";

/** The file in a run folder that names the `vallignus run` process it belongs to. */
const OWNER_FILE = "owner.json";

/**
 * A folder being made has no owner file for an instant; one without it is left alone until it
 * is this old, so a cleaner never removes a run that is still starting.
 */
const UNOWNED_GRACE_MS = 60_000;

/**
 * Where this user's run folders live: `/tmp/vallignus-<uid>`, mode 0700, whatever TMPDIR says.
 * One fixed place under /tmp, which every isolated command gets private and empty: no run's
 * folder (and socket) can be where another isolated run would see it, as one under a TMPDIR
 * inside that run's working folder would be. The folder is made once and then only checked: one
 * of that name that is a symlink, or not ours, or open to others, could be another user's trap
 * (the shared /tmp), so the run refuses rather than use it.
 */
export function runsBase(parent = "/tmp"): string {
  const uid = process.getuid?.() ?? 0;
  const base = join(parent, `vallignus-${uid}`);
  try {
    mkdirSync(base, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST")
      throw new VallignusError(
        "ERR_RUN_FOLDER",
        `run: cannot make ${base} (${(err as Error).message})`,
      );
  }
  const stat = lstatSync(base);
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o077) !== 0)
    throw new VallignusError(
      "ERR_RUN_FOLDER",
      `run: ${base} is not a folder of yours with mode 0700; remove it (another user may have made it)`,
    );
  return base;
}

function ownerOf(dir: string): ProcessStamp | undefined {
  try {
    const stamp = JSON.parse(readFileSync(join(dir, OWNER_FILE), "utf8")) as ProcessStamp;
    return typeof stamp.pid === "number" ? stamp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the folders of runs whose process is gone (crashed, killed with its watchdog, a
 * reboot), with their CA bundle and socket. A folder whose owner may still be alive is kept.
 */
export function removeStaleRunFolders(base: string, now = Date.now()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(base)) {
    if (!name.startsWith("run-")) continue;
    const dir = join(base, name);
    const owner = ownerOf(dir);
    let stale: boolean;
    if (owner !== undefined) stale = !isProcessAlive(owner);
    else {
      try {
        stale = now - lstatSync(dir).mtimeMs > UNOWNED_GRACE_MS;
      } catch {
        continue;
      }
    }
    if (!stale) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** A new run folder under `base`, stamped with this process as its owner. */
export function makeRunFolder(base: string): string {
  const dir = mkdtempSync(join(base, "run-"));
  // Readable inside the namespaces, where a root caller's command runs as nobody and reads the
  // CA bundle; on the host the base (0700) keeps everyone else out.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, OWNER_FILE), `${JSON.stringify(OWN_PROCESS)}\n`, {
    mode: 0o644,
    flag: "wx",
  });
  return dir;
}
