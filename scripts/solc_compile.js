// Runs solcjs on a standard-JSON input file and writes the standard-JSON output file.
// Usage: node solc_compile.js <input.json> <output.json> <import-root>
// Files are used instead of pipes because solcjs may print to stdout on its own and large piped
// writes are truncated if the process exits early.
"use strict";
const fs = require("fs");
const path = require("path");

const [inputPath, outputPath, importRoot] = process.argv.slice(2);
const solc = require(path.join(importRoot, "node_modules", "solc"));

function findImports(importPath) {
  const full = path.resolve(importRoot, importPath);
  if (!full.startsWith(path.resolve(importRoot) + path.sep)) {
    return { error: `import outside the project: ${importPath}` };
  }
  try {
    return { contents: fs.readFileSync(full, "utf8") };
  } catch (err) {
    return { error: `cannot read ${importPath}: ${err.message}` };
  }
}

const input = fs.readFileSync(inputPath, "utf8");
const output = solc.compile(input, { import: findImports });
fs.writeFileSync(outputPath, JSON.stringify({ version: solc.version(), output: JSON.parse(output) }));
process.exitCode = 0;
