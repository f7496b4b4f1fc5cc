// The scoring engine, in a Web Worker so that the page never freezes.
//
// featurize.py runs in Pyodide (CPython compiled to WebAssembly), model.onnx in onnxruntime-web.
// Every file the scores depend on (featurize.py, scorer.json, model.onnx) is checked against
// manifest.json with Web Crypto before it is used. Nothing is sent anywhere and nothing is stored.
//
// Protocol: the page posts {id, type, ...}; the worker answers {id, ok: true, ...} or
// {id, ok: false, error}. Progress while starting: {type: "progress", step, text}.
//   init                         load both engines and featurize.py
//   load      {item}             load one item's scorer (done on first use anyway)
//   score     {item, texts}      -> {probs: Float32Array (texts.length x n_classes), scores}
//   featurize {item, texts}      -> {offsets: Int32Array, idx: Int32Array, val: Float64Array}

const BASE = new URL("./", import.meta.url);
const url = (path) => new URL(path, BASE).href;

let manifest = null;
let pyodide = null;
let ort = null;
let featurizerFor = null;
const scorers = new Map();   // item -> {info, session, featurizeBatch}

const PY_GLUE = `
import array, importlib.util, sys

spec = importlib.util.spec_from_file_location("featurize", "/featurize.py")
featurize_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(featurize_module)
sys.modules["featurize"] = featurize_module

def featurizer_for(config):
    config = dict(config)                    # a copy made once per scorer, not once per call
    featurize = featurize_module.featurize

    def featurize_batch(texts):
        offsets, idx, val = array.array("i", [0]), array.array("i"), array.array("d")
        for text in texts:
            for bucket, value in featurize(str(text), config):
                idx.append(bucket)
                val.append(value)
            offsets.append(len(idx))
        return offsets.tobytes(), idx.tobytes(), val.tobytes()

    return featurize_batch

featurizer_for
`;

function progress(step, text) {
  postMessage({ type: "progress", step, text });
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchBytes(path) {
  const response = await fetch(url(path));
  if (!response.ok) throw new Error(`${path} could not be loaded (HTTP ${response.status}).`);
  return response.arrayBuffer();
}

// The bytes of a bundle file, after checking them against manifest.json.
async function verifiedBytes(path) {
  const entry = manifest.files[path];
  if (!entry) throw new Error(`${path} is not listed in manifest.json, so it cannot be checked; the page will not use it. Rebuild the bundle.`);
  const bytes = await fetchBytes(path);
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256 || bytes.byteLength !== entry.bytes) {
    throw new Error(`${path} does not match manifest.json (expected sha256 ${entry.sha256.slice(0, 12)}…, ` +
      `got ${actual.slice(0, 12)}…): the file was changed or damaged, so the page refuses to score with it. ` +
      `Rebuild or re-download the bundle.`);
  }
  return bytes;
}

async function init() {
  progress(1, "Checking the files…");
  const response = await fetch(url("manifest.json"));
  if (!response.ok) throw new Error(`manifest.json could not be loaded (HTTP ${response.status}).`);
  manifest = await response.json();
  const featurizeBytes = new Uint8Array(await verifiedBytes("featurize.py"));

  progress(2, "Starting Python (this takes a few seconds)…");
  const { loadPyodide } = await import("./vendor/pyodide/pyodide.mjs");
  pyodide = await loadPyodide({
    indexURL: url("vendor/pyodide/"), packageBaseUrl: url("vendor/pyodide/"), packages: [], fullStdLib: false,
  });
  pyodide.FS.writeFile("/featurize.py", featurizeBytes);
  featurizerFor = pyodide.runPython(PY_GLUE);

  progress(3, "Starting the model engine…");
  ort = await import("./vendor/ort/ort.wasm.bundle.min.mjs");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = { wasm: url("vendor/ort/ort-wasm-simd-threaded.wasm") };
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
  const featurizeBatch = featurizerFor(config);
  config.destroy();
  const scorer = { info, session, featurizeBatch };
  scorers.set(item, scorer);
  return scorer;
}

function featurize({ featurizeBatch }, texts) {
  const result = featurizeBatch(texts);
  const [offsets, idx, val] = result.toJs();
  result.destroy();
  return {
    offsets: new Int32Array(offsets.buffer, offsets.byteOffset, offsets.byteLength / 4),
    idx: new Int32Array(idx.buffer, idx.byteOffset, idx.byteLength / 4),
    val: new Float64Array(val.buffer.slice(val.byteOffset, val.byteOffset + val.byteLength)),
  };
}

async function score(item, texts) {
  const scorer = await loadScorer(item);
  const { info, session } = scorer;
  const nBuckets = info.featurizer.n_buckets;
  const { offsets, idx, val } = featurize(scorer, texts);
  const dense = new Float32Array(texts.length * nBuckets);
  for (let row = 0; row < texts.length; row++) {
    for (let k = offsets[row]; k < offsets[row + 1]; k++) dense[row * nBuckets + idx[k]] = val[k];
  }
  const input = new ort.Tensor("float32", dense, [texts.length, nBuckets]);
  const output = await session.run({ [info.model.input]: input });
  const probs = output[info.model.output].data;
  input.dispose?.();
  return { probs: Float32Array.from(probs), scoreValues: info.score_values };
}

const handlers = {
  init: () => init(),
  load: async ({ item }) => { await loadScorer(item); return {}; },
  score: ({ item, texts }) => score(item, texts),
  featurize: async ({ item, texts }) => featurize(await loadScorer(item), texts),
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
