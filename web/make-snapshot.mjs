// Python's memory after the page's start-up, saved at build time so that the page restores it instead
// of starting Python (kd_train/bundle.py runs this; the page's worker hands it to loadPyodide).
//
//   node web/make-snapshot.mjs PYODIDE_DIR STDLIB_ZIP PY_FILE... OUT
//
// PYODIDE_DIR: the npm package pyodide; STDLIB_ZIP: the standard library the page ships (the
// snapshot remembers its zip index, so it must be the very same bytes); PY_FILE...: the bundle's
// Python files (featurize.py, detect.py, wordpiece.py and worker.py, each known by its file name);
// OUT: the snapshot file.
//
// What is in it: Python as Pyodide starts it, then worker.py run (it loads the other Python files),
// exactly what the page does without a snapshot; and ``built_from``, the sha256 of each Python file,
// which the worker checks against manifest.json before it scores anything.
//
// Reproducible: the same Pyodide and standard library give the same bytes. While it runs, the clock
// reads 0 and randomness comes from a fixed seed (Python's hash seed, random's state and every
// other random byte Pyodide asks for at start-up), and sys.executable is "python", so nothing
// of the machine that built it (time, paths, entropy) is in the file.
import { createRequire } from "node:module";
import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, stdlibZip, ...rest] = process.argv.slice(2);
const out = rest.pop();
const pyFiles = rest;
const workerPy = pyFiles.find((path) => basename(path) === "worker.py");
if (!out || !workerPy) {
  console.error("usage: node web/make-snapshot.mjs PYODIDE_DIR STDLIB_ZIP PY_FILE... OUT (one of them worker.py)");
  process.exit(2);
}

let state = 1;   // a linear congruential generator: reproducible bytes, nothing secret depends on them
function fill(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  for (let i = 0; i < bytes.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    bytes[i] = state >>> 16;
  }
  return view;
}
const nodeCrypto = createRequire(import.meta.url)("node:crypto");
globalThis.crypto.getRandomValues = fill;
nodeCrypto.randomFillSync = fill;
nodeCrypto.randomBytes = (n) => fill(Buffer.alloc(n));
Date.now = () => 0;
performance.now = () => 0;

const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const pyodide = await loadPyodide({
  indexURL: `${pyodideDir}/`, stdLibURL: stdlibZip, packages: [], fullStdLib: false,
  _makeSnapshot: true, _sysExecutable: "python", env: { PYTHONHASHSEED: "0" },
});
const sources = Object.fromEntries(pyFiles.map((path) => [basename(path), path]));
const builtFrom = {};
for (const [name, path] of Object.entries(sources)) {
  const bytes = readFileSync(path);
  builtFrom[name] = createHash("sha256").update(bytes).digest("hex");
  if (name !== "worker.py") pyodide.FS.writeFile(`/${name}`, bytes);   // where worker.py loads them from
}
pyodide.runPython(readFileSync(workerPy, "utf8"), { filename: "worker.py" });
pyodide.globals.set("built_from", JSON.stringify(builtFrom));
const snapshot = pyodide.makeMemorySnapshot();
const packed = sparse(snapshot);
writeFileSync(`${out}.tmp`, packed);
renameSync(`${out}.tmp`, out);
console.log(`${out}: ${packed.length} bytes (a ${snapshot.length}-byte memory snapshot without its zero pages)`);

// Half of the memory is zero pages: the file leaves them out (worker.js expands it), so the page
// fetches and hashes half the bytes. Layout: "KDSNAP01", then little-endian uint32 total length,
// page size, page count; a bitmap of the pages present (bit i of byte i >> 3 = page i); padding
// to a multiple of 8; the present pages in order (the last one may be short).
function sparse(memory) {
  const page = 65536;
  const count = Math.ceil(memory.length / page);
  const present = [];
  for (let i = 0; i < count; i++) {
    if (memory.subarray(i * page, (i + 1) * page).some((b) => b !== 0)) present.push(i);
  }
  const head = 8 + 12 + Math.ceil(Math.ceil(count / 8) / 8) * 8;
  const body = present.reduce((n, i) => n + Math.min(page, memory.length - i * page), 0);
  const file = new Uint8Array(head + body);
  file.set(new TextEncoder().encode("KDSNAP01"));
  new DataView(file.buffer).setUint32(8, memory.length, true);
  new DataView(file.buffer).setUint32(12, page, true);
  new DataView(file.buffer).setUint32(16, count, true);
  let at = head;
  for (const i of present) {
    file[20 + (i >> 3)] |= 1 << (i & 7);
    const chunk = memory.subarray(i * page, (i + 1) * page);
    file.set(chunk, at);
    at += chunk.length;
  }
  return file;
}
