// Prints the longest functions in src/ and fails when one is longer than the limit, unless a
// comment on the line before it says why (`// long-function: <reason>`): a table, a state machine.
// Uses the TypeScript compiler's own parser, so arrow functions, methods and nested functions
// count alike. Usage: node scripts/longest-functions.mjs [--limit 80] [--top 15]
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";

import ts from "typescript";

const { values } = parseArgs({
  options: { limit: { type: "string", default: "80" }, top: { type: "string", default: "15" } },
});
const limit = Number(values.limit);
const top = Number(values.top);
const root = join(import.meta.dirname, "..");

function sourceFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

function functionName(node) {
  if (node.name !== undefined) return node.name.getText();
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))
    return parent.name.getText();
  return "(anonymous)";
}

const found = [];
for (const path of sourceFiles(join(root, "src"))) {
  const text = readFileSync(path, "utf8");
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const lines = text.split("\n");
  const visit = (node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
      const first = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
      const last = file.getLineAndCharacterOfPosition(node.getEnd()).line;
      const excused = /long-function:/.test(lines[first - 1] ?? "");
      found.push({
        where: `${relative(root, path)}:${first + 1}`,
        name: functionName(node),
        length: last - first + 1,
        excused,
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

found.sort((a, b) => b.length - a.length);
for (const f of found.slice(0, top)) {
  const mark = f.length > limit ? (f.excused ? " (excused)" : " OVER") : "";
  console.log(`${String(f.length).padStart(5)}  ${f.name}  ${f.where}${mark}`);
}
const over = found.filter((f) => f.length > limit && !f.excused);
if (over.length > 0) {
  console.error(
    `${over.length} function(s) in src/ are longer than ${limit} lines; split them, or say why on the line before: // long-function: <reason>`,
  );
  process.exit(1);
}
