// Run a Python driver inside real Pyodide (Node.js), for the parity tests (tests/pyodide_support.py).
//
//   node tests/pyodide_run.mjs <driver.py> <output> <file>...
//
// Each <file> is copied into Pyodide's in-memory file system as /<its name>; the driver runs there and
// writes /out.jsonl, copied to <output>. Bytes go through the file system, never through JS strings.
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [driverPath, outputPath, ...files] = process.argv.slice(2);
if (!outputPath) {
  console.error("usage: node tests/pyodide_run.mjs <driver.py> <output> <file>...");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const pyodideDir = join(here, "..", "web", "node_modules", "pyodide");
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);

const t0 = Date.now();
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/", packages: [] });
console.log(`pyodide loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
for (const file of files) pyodide.FS.writeFile(`/${basename(file)}`, readFileSync(file));
pyodide.runPython(readFileSync(driverPath, "utf8"));
writeFileSync(outputPath, pyodide.FS.readFile("/out.jsonl"));
console.log(`ran in Pyodide, total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
