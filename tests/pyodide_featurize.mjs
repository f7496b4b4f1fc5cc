// Run kd_train/featurize.py inside real Pyodide (Node.js) over a corpus, for the parity test.
//
//   node tests/pyodide_featurize.mjs <featurize.py> <input.jsonl> <output.jsonl>
//
// input.jsonl: line 1 {"config": {...}, "tokens": {...}}; then one string per line as a JSON list of code points
// (lone surrogates cannot cross JSON/UTF-8/JS strings unchanged; code points always can).
// output.jsonl: line 1 {"python": ..., "unicode": ..., "seconds": ...}; then one line per string:
// {"i": [bucket, ...], "d": base64 of the values as little-endian float64,
//  "f": base64 of the values as little-endian float32, "t": token_ids(string, tokens) or null}.
// Bytes go through Pyodide's in-memory file system, never through JS strings.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [featurizePath, inputPath, outputPath] = process.argv.slice(2);
if (!outputPath) {
  console.error("usage: node tests/pyodide_featurize.mjs <featurize.py> <input.jsonl> <output.jsonl>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const pyodideDir = join(here, "..", "web", "node_modules", "pyodide");
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);

const t0 = Date.now();
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/", packages: [] });
console.log(`pyodide loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
pyodide.FS.writeFile("/featurize.py", readFileSync(featurizePath));
pyodide.FS.writeFile("/in.jsonl", readFileSync(inputPath));
pyodide.runPython(`
import base64, importlib.util, json, struct, sys, time, unicodedata

spec = importlib.util.spec_from_file_location("featurize", "/featurize.py")
fz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fz)

with open("/in.jsonl", encoding="ascii") as f:
    header = json.loads(f.readline())
    config, tokens = header["config"], header.get("tokens")
    texts = ["".join(map(chr, json.loads(line))) for line in f]
t = time.perf_counter()
outs = [fz.featurize(text, config) for text in texts]
seconds = time.perf_counter() - t
ids = [fz.token_ids(text, tokens) if tokens else None for text in texts]
with open("/out.jsonl", "w", encoding="ascii") as f:
    f.write(json.dumps({"python": sys.version, "unicode": unicodedata.unidata_version,
                        "n": len(texts), "seconds": seconds}) + "\\n")
    for out, t_ids in zip(outs, ids):
        idx = [b for b, _ in out]
        val = [v for _, v in out]
        f.write(json.dumps({
            "i": idx,
            "d": base64.b64encode(struct.pack("<%dd" % len(val), *val)).decode(),
            "f": base64.b64encode(struct.pack("<%df" % len(val), *val)).decode(),
            "t": t_ids,
        }) + "\\n")
`);
writeFileSync(outputPath, pyodide.FS.readFile("/out.jsonl"));
console.log(`featurized in Pyodide, total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
