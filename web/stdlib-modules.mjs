// Which files of Pyodide's python_stdlib.zip the page uses: start Pyodide (Node.js), do what the
// page's worker does (worker.py, featurize.py and detect.py on varied answers, a Python
// error on purpose), and print every module loaded from the standard library as a JSON list of
// zip member names. kd_train/bundle.py ships only those (web/stdlib-keep.json), plus a few whole packages and
// codecs it keeps to be safe (STDLIB_ALSO in kd_train/bundle.py). Re-run it when Pyodide, web/page/worker.py,
// featurize.py or detect.py change their imports; the browser tests fail when a module is missing.
//
//   node web/stdlib-modules.mjs > web/stdlib-keep.json
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pyodideDir = join(here, "node_modules", "pyodide");
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/", packages: [] });
pyodide.FS.writeFile("/featurize.py", readFileSync(join(here, "..", "kd_train", "featurize.py")));
pyodide.FS.writeFile("/detect.py", readFileSync(join(here, "..", "kd_train", "detect.py")));
pyodide.runPython(readFileSync(join(here, "page", "worker.py"), "utf8"), { filename: "worker.py" });
const scorerFor = pyodide.globals.get("scorer_for");
const config = pyodide.toPy({ version: 1, n_buckets: 2048, word_ngram_range: [1, 2], char_ngram_range: [2, 5],
  word_weight: 1.0, char_weight: 1.0, seed: 0 });
const profile = pyodide.runPython(`
import json, sys
sys.modules["detect"].fit
json.dumps(sys.modules["detect"].fit(["heat flows into the ice", "metal conducts heat", "the plate is warm"], ["Why?"]))
`);
const [run, , check] = scorerFor(config, profile).toJs();
const texts = ["", "The metal conducts heat. Die Wärme fließt. 日本語 🔥", "x".repeat(20001), "heat heat heat heat"];
run(texts);
check(texts);
scorerFor(config, "null").toJs()[0](texts);
try { run([1, 2, 3].map(() => null)); pyodide.runPython("featurize_module.featurize(3, {})"); } catch (err) { String(err); }
try { pyodide.runPython("raise ValueError('on purpose: the traceback machinery')"); } catch (err) { String(err); }
const files = pyodide.runPython(`
import json, sys
prefix = next(p for p in sys.path if p.endswith(".zip")) + "/"   # /lib/python3NN.zip: python_stdlib.zip
names = set()
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None) or ""
    if f.startswith(prefix):
        rel = f[len(prefix):]
        names.add(rel)
json.dumps({"command": "node web/stdlib-modules.mjs > web/stdlib-keep.json", "python": sys.version.split()[0],
            "files": sorted(names)}, indent=1)
`);
console.log(files);
