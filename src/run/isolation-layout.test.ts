import assert from "node:assert/strict";
import { test } from "node:test";

import {
  bwrapMountArgs,
  INNER_RUN_DIR,
  isolationLayout,
  mountPointsOf,
  mountScript,
  refuseWorkingFolder,
  type LayoutInput,
} from "./isolation-layout.js";

const DIRS = new Set(["/tmp", "/run", "/dev/shm", "/home/ann/.vallignus", "/srv/home"]);

function input(over: Partial<LayoutInput> = {}): LayoutInput {
  return {
    cwd: "/home/ann/project",
    runDir: "/tmp/vallignus-1000/run-abc",
    keep: ["/usr/lib/node_modules/vallignus/dist", "/usr/bin"],
    hide: ["/home/ann/.vallignus", "/tmp/vallignus-1000"],
    maskFiles: ["/run/docker.sock", "/home/ann/agent.sock"],
    userHome: "/home/ann",
    ownCode: "/usr/lib/node_modules/vallignus",
    isShared: (p) => p === "/var/tmp",
    memoryBytes: 8 * 2 ** 30,
    given: ["/home/ann/.vallignus", "/tmp/vallignus-1000"],
    isDirectory: (p) => DIRS.has(p),
    exists: (p) => p === "/home/ann/agent.sock" || p === "/run/docker.sock",
    ...over,
  };
}

test("the layout: private folders, the run folder, the working folder, then what is hidden", () => {
  assert.deepEqual(isolationLayout(input()), [
    // Bounded: a quarter of memory, a tenth, 16 MiB.
    { kind: "tmpfs", path: "/tmp", mode: 0o1777, bytes: 2 * 2 ** 30 },
    { kind: "tmpfs", path: "/run", mode: 0o755, bytes: 16 * 2 ** 20 },
    { kind: "dev" },
    { kind: "tmpfs", path: "/dev/shm", mode: 0o1777, bytes: Math.floor((8 * 2 ** 30) / 10) },
    { kind: "bind", source: "/tmp/vallignus-1000/run-abc", target: INNER_RUN_DIR, writable: false },
    { kind: "bind", source: "/home/ann/project", target: "/home/ann/project", writable: true },
    // The run folders under the private /tmp are already out of sight: no step for them.
    { kind: "hide", path: "/home/ann/.vallignus" },
    // Docker's socket is under the private /run; the agent socket in the home is not.
    { kind: "null", path: "/home/ann/agent.sock" },
  ]);
});

const cases: readonly {
  name: string;
  over: Partial<LayoutInput>;
  has: object[];
  not?: object[];
}[] = [
  {
    name: "a home inside the working folder is hidden after the folder is bound",
    over: { cwd: "/srv", hide: ["/srv/home"] },
    has: [{ kind: "hide", path: "/srv/home" }],
  },
  {
    name: "a working folder under /tmp is bound back into the private /tmp",
    over: { cwd: "/tmp/work" },
    has: [{ kind: "bind", source: "/tmp/work", target: "/tmp/work", writable: true }],
  },
  {
    name: "vallignus's code under the working folder stays read-only",
    over: { cwd: "/usr/lib/node_modules" },
    has: [
      {
        kind: "bind",
        source: "/usr/lib/node_modules/vallignus/dist",
        target: "/usr/lib/node_modules/vallignus/dist",
        writable: false,
      },
    ],
  },
  {
    name: "vallignus installed under /tmp is bound back read-only",
    over: { keep: ["/tmp/app/dist"] },
    has: [{ kind: "bind", source: "/tmp/app/dist", target: "/tmp/app/dist", writable: false }],
  },
  {
    name: "a working folder of / makes nothing writable",
    over: { cwd: "/" },
    has: [],
    not: [{ kind: "bind", source: "/", target: "/", writable: true }],
  },
];

for (const c of cases)
  test(c.name, () => {
    const steps = isolationLayout(input(c.over));
    for (const step of c.has)
      assert.ok(steps.some((s) => JSON.stringify(s) === JSON.stringify(step)));
    for (const step of c.not ?? [])
      assert.ok(!steps.some((s) => JSON.stringify(s) === JSON.stringify(step)));
  });

test("working folders the isolated command cannot have are refused", () => {
  assert.match(
    refuseWorkingFolder(input({ cwd: "/home/ann/.vallignus/audit" })) ?? "",
    /inside \/home\/ann\/\.vallignus/,
  );
  assert.match(refuseWorkingFolder(input({ cwd: "/var" })) ?? "", /holds \/var\/run/);
  assert.match(refuseWorkingFolder(input({ cwd: "/tmp" })) ?? "", /holds \/tmp/);
  assert.match(refuseWorkingFolder(input({ cwd: "/home/ann" })) ?? "", /your home folder/);
  assert.match(refuseWorkingFolder(input({ cwd: "/home" })) ?? "", /your home folder/);
  assert.match(
    refuseWorkingFolder(input({ cwd: "/home/ann/.config/git" })) ?? "",
    /settings folder/,
  );
  assert.match(refuseWorkingFolder(input({ cwd: "/usr/lib" })) ?? "", /holds vallignus itself/);
  assert.match(refuseWorkingFolder(input({ cwd: "/var/tmp" })) ?? "", /writable by everyone/);
  assert.equal(refuseWorkingFolder(input({ cwd: "/home/ann/src/app" })), undefined);
  assert.match(
    refuseWorkingFolder(input({ cwd: "/usr/lib/node_modules/vallignus/dist/run" })) ?? "",
    /inside \/usr\/lib\/node_modules\/vallignus\/dist/,
  );
  assert.match(
    refuseWorkingFolder(input({ cwd: "/srv/p", given: ["/srv/p/vh"], hide: ["/data/vh"] })) ?? "",
    /\/srv\/p\/vh is reached through a symlink/,
  );
  assert.equal(refuseWorkingFolder(input({ cwd: "/" })), undefined);
  assert.equal(refuseWorkingFolder(input()), undefined);
});

test("bwrap gets the layout as arguments, in order, over a read-only root", () => {
  const args = bwrapMountArgs(isolationLayout(input()));
  assert.deepEqual(args.slice(0, 9), [
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--remount-ro",
    "/dev",
    "--proc",
    "/proc",
  ]);
  const at = (flag: string, path: string) =>
    args.findIndex((a, i) => a === flag && args[i + 1] === path);
  assert.ok(at("--tmpfs", "/tmp") < at("--bind", "/home/ann/project"));
  assert.ok(at("--bind", "/home/ann/project") < at("--tmpfs", "/home/ann/.vallignus"));
  assert.ok(at("--remount-ro", "/home/ann/.vallignus") > 0);
});

test("bwrap makes the folders above a bind in a private tmpfs passable (0755)", () => {
  const args = bwrapMountArgs(isolationLayout(input({ cwd: "/tmp/ci/main/work" })));
  const made = args.flatMap((a, i) =>
    a === "--dir" ? [`${args[i - 1] ?? ""} ${args[i + 1] ?? ""}`] : [],
  );
  assert.deepEqual(made, ["0755 /tmp/ci", "0755 /tmp/ci/main"]);
});

test("the unshare script opens every bind source before any tmpfs covers it", () => {
  const script = mountScript(isolationLayout(input({ cwd: "/tmp/it's" })), ["/", "/proc", "/sys"]);
  const lines = script.split("\n");
  const firstTmpfs = lines.findIndex((l) => l.startsWith("mount -t tmpfs"));
  assert.ok(lines.indexOf(`exec 4<'/tmp/it'\\''s'`) < firstTmpfs, script);
  assert.ok(lines.includes("mount -c -o remount,bind,ro '/'"));
  assert.ok(lines.includes("mount -c -o remount,bind,ro '/sys'"));
  assert.ok(!lines.some((l) => l.includes("remount,bind,ro '/proc'")));
  assert.ok(lines.includes("mount -c -o remount,bind,rw '/tmp/it'\\''s'"));
});

test("mount points are read from mountinfo with their escapes decoded", () => {
  const info = [
    "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
    "40 26 0:40 / /mnt/my\\040disk rw - tmpfs tmpfs rw",
    "",
  ].join("\n");
  assert.deepEqual(mountPointsOf(info), ["/", "/mnt/my disk"]);
});
