// The scoring engine, in a Web Worker so that the page never freezes.
//
// featurize.py and detect.py (the flags for answers the scorer should not judge) run in Pyodide
// (CPython compiled to WebAssembly), model.onnx in onnxruntime-web.
// Every file the scores depend on (featurize.py, detect.py, scorer.json, model.onnx, onnxruntime's
// WebAssembly) is checked against
// manifest.json with Web Crypto before it is used. Nothing is sent anywhere and nothing is stored.
//
// Protocol: the page posts {id, type, ...}; the worker answers {id, ok: true, ...} or
// {id, ok: false, error}. Progress while starting: {type: "progress", step, text}.
//   init      {digest, version}  check manifest.json against the pinned digest; load both engines,
//                                featurize.py and detect.py
//   load      {item}             load one item's scorer (done on first use anyway)
//   score     {item, texts}      -> {probs: Float32Array (texts.length x n_classes), scoreValues,
//                                    flags: [[code, ...] per text], reasons: {code: sentence}}
//   featurize {item, texts}      -> {offsets: Int32Array, idx: Int32Array, val: Float64Array, flags}
//   flags     {item, texts}      -> {flags}: detect.py alone

const BASE = new URL("./", import.meta.url);
const url = (path) => new URL(path, BASE).href;

let manifest = null;
let pyodide = null;
let ort = null;
let scorerFor = null;
const scorers = new Map();   // item -> {info, session, run, check, reasons}

const PY_GLUE = `
import array, importlib.util, json, sys

def load(name):
    spec = importlib.util.spec_from_file_location(name, "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module               # detect.py imports featurize by this name
    spec.loader.exec_module(module)
    return module

featurize_module = load("featurize")
detect_module = load("detect")

def scorer_for(config, profile_json):
    config = dict(config)                    # a copy made once per scorer, not once per call
    profile = json.loads(profile_json)       # None for a scorer written before the detectors
    featurize, flags = featurize_module.featurize, detect_module.flags
    reasons = json.dumps({code: detect_module.reason(code, profile) for code in detect_module.REASONS})

    def run(texts):
        offsets, idx, val, found = array.array("i", [0]), array.array("i"), array.array("d"), []
        for text in texts:
            text = str(text)
            codes = flags(text, profile)
            found.append(codes)
            if codes != ["refused"]:         # an over-long answer is not featurized
                for bucket, value in featurize(text, config):
                    idx.append(bucket)
                    val.append(value)
            offsets.append(len(idx))
        return offsets.tobytes(), idx.tobytes(), val.tobytes(), json.dumps(found)

    def check(texts):                        # the flags alone (what the detectors cost, measured)
        return json.dumps([flags(str(text), profile) for text in texts])

    return run, reasons, check

scorer_for
`;

function progress(step, text) {
  postMessage({ type: "progress", step, text });
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A bundle file of the build this worker started with: "?v=" makes the service worker answer from
// that build's cache even after a newer build has taken over (sw.js), so two builds never mix.
const versioned = (path) => `${url(path)}?v=${encodeURIComponent(manifest.version)}`;

async function fetchBytes(path) {
  const response = await fetch(versioned(path));
  if (!response.ok) throw new Error(`${path} could not be loaded (HTTP ${response.status}).`);
  return response.arrayBuffer();
}

// Why a file does not match manifest.json: a newer build replaced the one this page started with
// (then a reload fixes it), or the file was changed or damaged.
async function mismatchMessage(path, entry, actual) {
  try {
    const latest = await (await fetch(url("manifest.json"), { cache: "no-store" })).json();
    if (latest.version && latest.version !== manifest.version) {
      return `This page was updated while it was open (${path} belongs to the new version). Reload the page to use the new version.`;
    }
  } catch { /* no newer manifest to compare with: report the mismatch itself */ }
  return `${path} does not match manifest.json (expected sha256 ${entry.sha256.slice(0, 12)}…, ` +
    `got ${actual.slice(0, 12)}…): the file was changed or damaged, so the page refuses to score with it. ` +
    `Rebuild or re-download the bundle.`;
}

// The bytes of a bundle file, after checking them against manifest.json.
async function verifiedBytes(path) {
  const entry = manifest.files[path];
  if (!entry) throw new Error(`${path} is not listed in manifest.json, so it cannot be checked; the page will not use it. Rebuild the bundle.`);
  const bytes = await fetchBytes(path);
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256 || bytes.byteLength !== entry.bytes) throw new Error(await mismatchMessage(path, entry, actual));
  return bytes;
}

// manifest.json, after checking that its sha256 is the digest index.html pins (the root of trust: every
// other file is checked against manifest.json). `version` picks that build's files (see fetchBytes).
async function init({ digest, version }) {
  progress(1, "Checking the files…");
  if (!/^[0-9a-f]{64}$/.test(digest || "")) throw new Error("The page did not give the bundle's digest; reload it.");
  const response = await fetch(`${url("manifest.json")}?v=${encodeURIComponent(version || "")}`);
  if (!response.ok) throw new Error(`manifest.json could not be loaded (HTTP ${response.status}).`);
  const bytes = await response.arrayBuffer();
  const actual = await sha256Hex(bytes);
  if (actual !== digest) {
    throw new Error(`manifest.json does not match the digest this page pins (expected ${digest.slice(0, 16)}…, got ` +
      `${actual.slice(0, 16)}…): the bundle was changed, damaged or mixed with another build, so the page refuses ` +
      "to score. Reload the page; if this stays, ask whoever hosts it to rebuild it.");
  }
  manifest = JSON.parse(new TextDecoder().decode(bytes));
  // Fetched and checked while Pyodide starts, not one after the other before it (start-up time).
  const checked = ["featurize.py", "detect.py", "vendor/ort/ort-wasm-simd-threaded.wasm"].map(verifiedBytes);
  checked.forEach((p) => p.catch(() => {}));   // a failure is reported where it is awaited, not as unhandled
  const [featurizeBytes, detectBytes] = (await Promise.all(checked.slice(0, 2))).map((b) => new Uint8Array(b));

  progress(2, "Starting Python (this takes a few seconds)…");
  const { loadPyodide } = await import("./vendor/pyodide/pyodide.mjs");
  pyodide = await loadPyodide({
    indexURL: url("vendor/pyodide/"), packageBaseUrl: url("vendor/pyodide/"), packages: [], fullStdLib: false,
  });
  pyodide.FS.writeFile("/featurize.py", featurizeBytes);
  pyodide.FS.writeFile("/detect.py", detectBytes);
  scorerFor = pyodide.runPython(PY_GLUE);

  progress(3, "Starting the model engine…");
  ort = await import(versioned("vendor/ort/ort.wasm.bundle.min.mjs"));
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // The model engine's WebAssembly is handed over as checked bytes, not fetched by onnxruntime-web itself.
  ort.env.wasm.wasmBinary = new Uint8Array(await checked[2]);
  return { items: manifest.items };
}

async function loadScorer(item) {
  if (scorers.has(item)) return scorers.get(item);
  if (!ort) throw new Error("The scoring engine has not started (send init first).");
  if (!manifest.items.includes(item)) throw new Error(`There is no scorer for question ${item} in this bundle.`);
  const dir = `scorers/${manifest.folders[item]}/`;   // a safe folder name for any item id
  const infoBytes = await verifiedBytes(dir + "scorer.json");
  const info = JSON.parse(new TextDecoder().decode(infoBytes));
  const modelBytes = await verifiedBytes(dir + info.model.file);
  const session = await ort.InferenceSession.create(new Uint8Array(modelBytes), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const config = pyodide.toPy(info.featurizer);
  const made = scorerFor(config, JSON.stringify(info.detectors ?? null));
  config.destroy();
  const [run, reasons, check] = made.toJs();
  made.destroy();
  const scorer = { info, session, run, check, reasons: JSON.parse(reasons) };
  scorers.set(item, scorer);
  return scorer;
}

// featurize.py's vectors and detect.py's flags for a list of answers, in one call into Python.
function featurize({ run }, texts) {
  const result = run(texts);
  const [offsets, idx, val, flags] = result.toJs();
  result.destroy();
  return {
    offsets: new Int32Array(offsets.buffer, offsets.byteOffset, offsets.byteLength / 4),
    idx: new Int32Array(idx.buffer, idx.byteOffset, idx.byteLength / 4),
    val: new Float64Array(val.buffer.slice(val.byteOffset, val.byteOffset + val.byteLength)),
    flags: JSON.parse(flags),
  };
}

async function score(item, texts) {
  const scorer = await loadScorer(item);
  const { info, session } = scorer;
  const nBuckets = info.featurizer.n_buckets;
  const { offsets, idx, val, flags } = featurize(scorer, texts);
  const dense = new Float32Array(texts.length * nBuckets);
  for (let row = 0; row < texts.length; row++) {
    for (let k = offsets[row]; k < offsets[row + 1]; k++) dense[row * nBuckets + idx[k]] = val[k];
  }
  const input = new ort.Tensor("float32", dense, [texts.length, nBuckets]);
  const output = await session.run({ [info.model.input]: input });
  const probs = output[info.model.output].data;
  input.dispose?.();
  return { probs: Float32Array.from(probs), scoreValues: info.score_values, flags, reasons: scorer.reasons };
}

const handlers = {
  init: (data) => init(data),
  load: async ({ item }) => { await loadScorer(item); return {}; },
  score: ({ item, texts }) => score(item, texts),
  featurize: async ({ item, texts }) => featurize(await loadScorer(item), texts),
  flags: async ({ item, texts }) => ({ flags: JSON.parse((await loadScorer(item)).check(texts)) }),
};

// Calls run one at a time, in order.
let queue = Promise.resolve();
self.addEventListener("message", (event) => {
  const { id, type } = event.data;
  queue = queue.then(async () => {
    try {
      const result = await handlers[type](event.data);
      postMessage({ id, ok: true, ...result });
    } catch (err) {
      postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) });
    }
  });
});

self.addEventListener("securitypolicyviolation", (event) => {
  postMessage({ type: "csp-violation", directive: event.violatedDirective, blocked: event.blockedURI });
});
