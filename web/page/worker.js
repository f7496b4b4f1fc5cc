// The scoring engine, in a Web Worker so that the page never freezes.
//
// featurize.py, wordpiece.py (a transformer scorer's tokenizer) and detect.py (the flags for answers the
// scorer should not judge) run in Pyodide (CPython compiled to WebAssembly) through worker.py, model.onnx in onnxruntime-web. In a bundle
// built with a start-up snapshot (the default), Python is restored from it: Pyodide started and
// worker.py run at build time (web/make-snapshot.mjs), with the sha256 of the four Python files
// recorded and checked here; otherwise Python starts and runs them now, which takes seconds.
// Every file the scores depend on (the snapshot or the four Python files, scorer.json, model.onnx,
// onnxruntime's WebAssembly) and every script the worker runs (Pyodide's pyodide.mjs and pyodide.asm.mjs,
// onnxruntime-web's module: imported from the checked bytes through blob: URLs) is checked against
// manifest.json with Web Crypto before it is used. The page runs this file itself from bytes it checked.
// Nothing is sent anywhere and nothing is stored.
//
// Protocol: the page posts {id, type, ...}; the worker answers {id, ok: true, ...} or
// {id, ok: false, error}. Progress while starting: {type: "progress", step, text}.
//   init      {digest, version, base}  check manifest.json against the pinned digest; load both engines,
//                                featurize.py, detect.py and wordpiece.py (base: the bundle's URL, needed
//                                when this file runs from a blob: URL)
//   load      {item}             load one item's scorer (done on first use anyway)
//   score     {item, texts}      -> {probs: Float32Array (texts.length x n_classes), scoreValues,
//                                    cutpoints (scorer.json's decision rule, null: the most probable score),
//                                    flags: [[code, ...] per text], reasons: {code: sentence}}
//   featurize {item, texts}      -> {offsets: Int32Array, idx: Int32Array, val: Float64Array, flags}
//   flags     {item, texts}      -> {flags}: detect.py alone

let BASE = null;   // the bundle's folder: this file's, or init's base when it runs from a blob: URL
try {
  if (!import.meta.url.startsWith("blob:")) BASE = new URL("./", import.meta.url);
} catch { /* set by init */ }
const SNAPSHOT = "vendor/pyodide/snapshot.bin";   // in bundles built with a start-up snapshot
// The files Pyodide fetches for itself: the worker answers those fetches with checked bytes.
const PYODIDE_FETCHES = ["vendor/pyodide/pyodide.asm.wasm", "vendor/pyodide/python_stdlib.zip",
  "vendor/pyodide/pyodide-lock.json"];
const networkFetch = globalThis.fetch.bind(globalThis);
const PYTHON_FILES = ["featurize.py", "detect.py", "wordpiece.py", "worker.py"];
const url = (path) => new URL(path, BASE).href;

let manifest = null;
let pyodide = null;
let ort = null;
let scorerFor = null;
const scorers = new Map();   // item -> {info, session, run, check, reasons}

function progress(step, text) {
  postMessage({ type: "progress", step, text });
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A bundle file by its content: "?h=<its sha256 in manifest.json>". The URL names the bytes, so two builds
// never mix, the service worker and the HTTP cache keep one copy of a file that several builds share, and a
// server may let browsers cache it for ever (kd-train serve does: Cache-Control immutable).
const addressed = (path, sha256) => `${url(path)}?h=${sha256}`;

async function fetchBytes(path) {
  const response = await networkFetch(addressed(path, manifest.files[path].sha256));
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

// A JavaScript module of the bundle, run from the bytes checked against manifest.json (a blob: URL, which
// the page's Content-Security-Policy allows for this).
async function importChecked(path) {
  const blobUrl = URL.createObjectURL(new Blob([await verifiedBytes(path)], { type: "text/javascript" }));
  try {
    return await import(blobUrl);
  } finally {
    URL.revokeObjectURL(blobUrl);
  }
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
async function init({ digest, version, base }) {
  if (base) BASE = new URL(base);
  progress(1, "Checking the files…");
  if (!/^[0-9a-f]{64}$/.test(digest || "")) throw new Error("The page did not give the bundle's digest; reload it.");
  const response = await fetch(addressed("manifest.json", digest));
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
  const ortStarted = startOrt(verifiedBytes("vendor/ort/ort-wasm-simd-threaded.wasm"));
  ortStarted.catch(() => {});   // a failure is reported where it is awaited, not as unhandled
  if (SNAPSHOT in manifest.files) {
    await startFromSnapshot();
  } else {
    await startPython();
  }
  scorerFor = pyodide.globals.get("scorer_for");
  progress(3, "Starting the model engine…");
  await ortStarted;
  return { items: manifest.items };
}

// Python started as Pyodide starts it, then worker.py (which loads the other Python files), all checked.
async function startPython() {
  const sources = PYTHON_FILES.map(verifiedBytes);
  sources.forEach((p) => p.catch(() => {}));
  progress(2, "Starting Python (this takes a few seconds)…");
  pyodide = await loadPyodide();
  const bytes = (await Promise.all(sources)).map((b) => new Uint8Array(b));
  PYTHON_FILES.forEach((name, i) => { if (name !== "worker.py") pyodide.FS.writeFile(`/${name}`, bytes[i]); });
  pyodide.runPython(new TextDecoder().decode(bytes[PYTHON_FILES.indexOf("worker.py")]), { filename: "worker.py" });
}

// Python restored from the start-up snapshot the build made (web/make-snapshot.mjs: Pyodide started,
// worker.py run, the other Python files loaded), checked like every other file; it records the
// sha256 of the four files it ran, which must be this bundle's.
async function startFromSnapshot() {
  progress(2, "Starting Python…");
  const snapshot = verifiedBytes(SNAPSHOT).then((b) => expandSnapshot(new Uint8Array(b)));
  snapshot.catch(() => {});
  pyodide = await loadPyodide({ _loadSnapshot: snapshot });
  const builtFrom = JSON.parse(pyodide.globals.get("built_from") ?? "{}");
  for (const path of PYTHON_FILES) {
    if (builtFrom[path] !== manifest.files[path]?.sha256) {
      throw new Error(`The start-up snapshot was not made from this bundle's ${path} (manifest.json), so the page ` +
        "refuses to score with it. Rebuild the bundle.");
    }
  }
}

// The snapshot file without its zero pages (layout in web/make-snapshot.mjs) -> the memory snapshot.
function expandSnapshot(file) {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (new TextDecoder().decode(file.subarray(0, 8)) !== "KDSNAP01") throw new Error("The start-up snapshot is not in the format this page reads. Rebuild the bundle.");
  const [length, page, count] = [view.getUint32(8, true), view.getUint32(12, true), view.getUint32(16, true)];
  const memory = new Uint8Array(length);
  let at = 20 + Math.ceil(Math.ceil(count / 8) / 8) * 8;
  for (let i = 0; i < count; i++) {
    if (file[20 + (i >> 3)] & (1 << (i & 7))) {
      const size = Math.min(page, length - i * page);
      memory.set(file.subarray(at, at + size), i * page);
      at += size;
    }
  }
  return memory;
}

// Pyodide with its own fetches (its WebAssembly, standard library and lock file) answered by checked
// bytes. Pyodide waits for ever when its WebAssembly cannot be instantiated, so a file that fails its
// check ends the start here, with the check's message.
async function loadPyodide(options = {}) {
  let refuse;
  const refused = new Promise((_, reject) => { refuse = reject; });
  globalThis.fetch = async (input, init) => {
    const target = new URL(input instanceof Request ? input.url : String(input), BASE);   // a string or a URL
    const path = target.pathname.slice(BASE.pathname.length);
    if (target.origin !== BASE.origin || !PYODIDE_FETCHES.includes(path)) return networkFetch(input, init);
    try {
      const type = path.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
      return new Response(await verifiedBytes(path), { headers: { "Content-Type": type } });
    } catch (err) {
      refuse(err);
      throw err;
    }
  };
  try {
    const [pyodideModule, asm] = await Promise.all([importChecked("vendor/pyodide/pyodide.mjs"),
      importChecked("vendor/pyodide/pyodide.asm.mjs")]);
    return await Promise.race([refused, pyodideModule.loadPyodide({
      indexURL: url("vendor/pyodide/"), packageBaseUrl: url("vendor/pyodide/"), packages: [], fullStdLib: false,
      createPyodideModule: asm.default, ...options,
    })]);
  } finally {
    globalThis.fetch = networkFetch;
  }
}

// onnxruntime-web, given its WebAssembly as checked bytes (it fetches nothing itself), and the first
// item's model session, which compiles that WebAssembly: started beside Python, not after it.
async function startOrt(wasmBytes) {
  ort = await importChecked("vendor/ort/ort.wasm.bundle.min.mjs");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = new Uint8Array(await wasmBytes);
  // A damaged model is reported when its item is loaded (then loaded again), not here: other items still work.
  if (manifest.items.length) await modelSession(manifest.items[0]).catch(() => {});
}

// {info, session, vocab} of an item's scorer.json and model.onnx (and a transformer scorer's vocabulary, its
// text), all checked; made once per item.
const sessions = new Map();
function modelSession(item) {
  if (!sessions.has(item)) {
    const made = (async () => {
      const dir = `scorers/${manifest.folders[item]}/`;   // a safe folder name for any item id
      const info = JSON.parse(new TextDecoder().decode(await verifiedBytes(dir + "scorer.json")));
      const modelBytes = await verifiedBytes(dir + info.model.file);
      const vocab = info.featurizer.kind === "wordpiece"
        ? new TextDecoder("utf-8", { fatal: true }).decode(await verifiedBytes(dir + info.featurizer.vocab_file)) : null;
      const session = await ort.InferenceSession.create(new Uint8Array(modelBytes), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      return { info, session, vocab };
    })();
    made.catch(() => sessions.delete(item));   // a failed load is tried again next time, and reported there
    sessions.set(item, made);
  }
  return sessions.get(item);
}

async function loadScorer(item) {
  if (scorers.has(item)) return scorers.get(item);
  if (!scorerFor || !ort) throw new Error("The scoring engine has not started (send init first).");
  if (!manifest.items.includes(item)) throw new Error(`There is no scorer for question ${item} in this bundle.`);
  const { info, session, vocab } = await modelSession(item);
  const config = pyodide.toPy(info.featurizer);
  const made = scorerFor(config, JSON.stringify(info.detectors ?? null), vocab);
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

// The bag scorer's input: featurize.py's sparse vectors made dense, float32 [answers, n_buckets].
function featureTensor(offsets, idx, val, rows, nBuckets) {
  const dense = new Float32Array(rows * nBuckets);
  for (let row = 0; row < rows; row++) {
    for (let k = offsets[row]; k < offsets[row + 1]; k++) dense[row * nBuckets + idx[k]] = val[k];
  }
  return new ort.Tensor("float32", dense, [rows, nBuckets]);
}

// The sequence scorer's input: featurize.token_ids of each answer, padded with 0, int32 [answers, longest].
function tokenTensor(offsets, idx, rows) {
  let length = 1;
  for (let row = 0; row < rows; row++) length = Math.max(length, offsets[row + 1] - offsets[row]);
  const ids = new Int32Array(rows * length);
  for (let row = 0; row < rows; row++) ids.set(idx.subarray(offsets[row], offsets[row + 1]), row * length);
  return new ort.Tensor("int32", ids, [rows, length]);
}

// The transformer scorer (the teacher, int8): one answer per run, as kd-train predict runs it (its dynamic
// quantization scales each run's activations by their range, so answers in one batch would change each
// other's probabilities). An answer with no ids (refused as over-long) gets probabilities of 0.
async function scoreOneByOne(info, session, offsets, idx, rows) {
  const probs = new Float32Array(rows * info.score_values.length);
  for (let row = 0; row < rows; row++) {
    const ids = idx.slice(offsets[row], offsets[row + 1]);
    if (!ids.length) continue;
    const input = new ort.Tensor("int32", ids, [1, ids.length]);
    const output = await session.run({ [info.model.input]: input });
    probs.set(output[info.model.output].data, row * info.score_values.length);
    input.dispose?.();
  }
  return probs;
}

async function score(item, texts) {
  const scorer = await loadScorer(item);
  const { info, session } = scorer;
  const { offsets, idx, val, flags } = featurize(scorer, texts);
  if (info.model.input === "input_ids") {
    return { probs: await scoreOneByOne(info, session, offsets, idx, texts.length), scoreValues: info.score_values,
      cutpoints: info.cutpoints ?? null, flags, reasons: scorer.reasons };
  }
  const input = info.model.input === "token_ids" ? tokenTensor(offsets, idx, texts.length)
    : featureTensor(offsets, idx, val, texts.length, info.featurizer.n_buckets);
  const output = await session.run({ [info.model.input]: input });
  const probs = output[info.model.output].data;
  input.dispose?.();
  return { probs: Float32Array.from(probs), scoreValues: info.score_values, cutpoints: info.cutpoints ?? null, flags,
    reasons: scorer.reasons };
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
