// Builds dist/ as an ESM bundle: Node loads a handful of files instead of ~200 small modules,
// which was most of the CLI's start-up time. `tsc` only type-checks (npm run typecheck).
import { chmodSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { build } from "esbuild";

/** The package's folder: every path below is relative to it, wherever this is started from. */
const root = join(import.meta.dirname, "..");

/** `vallignus --version` prints this, inlined so that it reads no file at start-up. */
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

/**
 * CommonJS packages that src/ loads with `import()` (undici, in src/proxy/server.ts). Node's
 * loader gives such an import the package's named exports; a bundle would give only `default`.
 * Each gets an ES facade that re-exports the names the package has.
 */
const COMMONJS_IMPORTED_LAZILY = new Set(["undici"]);

const commonJsFacades = {
  name: "commonjs-facades",
  setup(builder) {
    const require = createRequire(import.meta.url);
    builder.onResolve({ filter: /^[^./]/ }, (args) =>
      args.kind === "dynamic-import" && COMMONJS_IMPORTED_LAZILY.has(args.path)
        ? { path: args.path, namespace: "commonjs-facade" }
        : undefined,
    );
    builder.onLoad({ filter: /./, namespace: "commonjs-facade" }, (args) => {
      const names = Object.keys(require(args.path)).filter(
        (name) => name !== "default" && /^[A-Za-z_$][\w$]*$/.test(name),
      );
      const from = JSON.stringify(args.path);
      return {
        contents: `import cjs from ${from};\nexport const { ${names.join(", ")} } = cjs;\nexport default cjs;\n`,
        resolveDir: root,
      };
    });
  },
};

rmSync(join(root, "dist"), { recursive: true, force: true });
await build({
  absWorkingDir: root,
  // Files that must exist on disk: the bin, and what `run` hands to a child process by path.
  entryPoints: ["src/cli/main.ts", "src/run/preload.ts", "src/run/netns-helper.ts"],
  outbase: "src",
  outdir: "dist",
  entryNames: "[dir]/[name]",
  // One level below dist/, like the entry points: src/run/ names its siblings as ../run/…, which
  // then holds from any output file.
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  // The command groups main.ts imports on demand stay separate chunks, loaded only when used.
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // A package's ES build where it has one (@peculiar/x509, loaded with import()): see above.
  mainFields: ["module", "main"],
  plugins: [commonJsFacades],
  define: { __VALLIGNUS_VERSION__: JSON.stringify(version) },
  sourcemap: "linked",
  logLevel: "warning",
  // Bundled CommonJS dependencies require() Node built-ins; an ES module has no require of its own.
  banner: {
    js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
  },
});
chmodSync(join(root, "dist/cli/main.js"), 0o755);
