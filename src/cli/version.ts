import { createRequire } from "node:module";

// Inlined from package.json by scripts/build.mjs, so that `--version` reads no file.
declare const __VALLIGNUS_VERSION__: string | undefined;

function versionFromPackageJson(): string {
  const pkg: unknown = createRequire(import.meta.url)("../../package.json");
  return typeof pkg === "object" &&
    pkg !== null &&
    "version" in pkg &&
    typeof pkg.version === "string"
    ? pkg.version
    : "unknown";
}

/** The package's version (read from package.json when run from src/, as the tests do). */
export const VERSION: string =
  typeof __VALLIGNUS_VERSION__ === "string" ? __VALLIGNUS_VERSION__ : versionFromPackageJson();
