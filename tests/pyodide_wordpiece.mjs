// Run kd_train/wordpiece.py inside real Pyodide (Node.js) over a corpus, for the parity test.
//
//   node tests/pyodide_wordpiece.mjs <wordpiece.py> <vocab.txt> <input.jsonl> <output.jsonl>
//
// input.jsonl: line 1 {"configs": [config, ...]}; then one string per line as a JSON list of code points.
// output.jsonl: line 1 {"python": ..., "unicode": ..., "n": ..., "seconds": ...}; then one line per string:
// a list with encode(string, vocab, config) for each config.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [wordpiecePath, vocabPath, inputPath, outputPath] = process.argv.slice(2);
if (!outputPath) {
  console.error("usage: node tests/pyodide_wordpiece.mjs <wordpiece.py> <vocab.txt> <input.jsonl> <output.jsonl>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const pyodideDir = join(here, "..", "web", "node_modules", "pyodide");
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);

const t0 = Date.now();
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/", packages: [] });
pyodide.FS.writeFile("/wordpiece.py", readFileSync(wordpiecePath));
pyodide.FS.writeFile("/vocab.txt", readFileSync(vocabPath));
pyodide.FS.writeFile("/in.jsonl", readFileSync(inputPath));
pyodide.runPython(`
import importlib.util, json, sys, time, unicodedata

spec = importlib.util.spec_from_file_location("wordpiece", "/wordpiece.py")
wp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wp)

with open("/vocab.txt", encoding="utf-8") as f:
    vocab = wp.read_vocab(f.read())
with open("/in.jsonl", encoding="ascii") as f:
    configs = json.loads(f.readline())["configs"]
    texts = ["".join(map(chr, json.loads(line))) for line in f]
t = time.perf_counter()
outs = [[wp.encode(text, vocab, c) for c in configs] for text in texts]
seconds = time.perf_counter() - t
with open("/out.jsonl", "w", encoding="ascii") as f:
    f.write(json.dumps({"python": sys.version, "unicode": unicodedata.unidata_version,
                        "n": len(texts), "seconds": seconds}) + "\\n")
    for out in outs:
        f.write(json.dumps(out) + "\\n")
`);
writeFileSync(outputPath, pyodide.FS.readFile("/out.jsonl"));
console.log(`encoded in Pyodide, total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
