// The page: a student's single answer and a teacher's batch file, scored by worker.js.
// Answers stay in memory on this device: nothing is sent, stored or logged.
import { decodeBytes, printable, readAnswers, toCsv } from "./csv.js";

const $ = (id) => document.getElementById(id);
const LOW = 0.6;      // below this probability of the score given, an answer is flagged for review (unless the scorer sets its own)
const HIGH = 0.8;     // from this top probability the confidence is called high
const CHUNK = 50;     // answers per worker call in batch mode (keeps the page responsive)
const SHOWN = 1000;
// A start slower than this is treated as failed (a loaded Chromebook takes ~15 s). Tests set a shorter
// limit through globalThis.kdStartLimitS before the page runs.
const START_LIMIT_S = Number(globalThis.kdStartLimitS) > 0 ? Number(globalThis.kdStartLimitS) : 120;   // rows of the results table drawn in the page (the CSV has all)

// ---- the files this page runs, checked -----------------------------------------------------
// index.html pins manifest.json's sha256 (and main.js, csv.js and style.css by Subresource Integrity); the
// page checks manifest.json against that pin, then every script it runs against manifest.json before
// running it: worker.js here (run from the checked bytes, through a blob: URL), sw.js before registering
// it; the worker checks the rest (Pyodide's and onnxruntime-web's modules included) the same way.
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content;
const DIGEST = meta("kd-bundle-digest");
const VERSION = meta("kd-bundle-version");
// "?h=<sha256>": every file by its content (see worker.js), so that two builds never mix (sw.js).
const addressed = (path, sha256) => `${new URL(path, document.baseURI).href}?h=${sha256}`;

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchChecked(path, sha256, size, what) {
  const response = await fetch(addressed(path, sha256));
  if (!response.ok) throw new Error(`${path} could not be loaded (HTTP ${response.status}).`);
  const bytes = await response.arrayBuffer();
  const actual = await sha256Hex(bytes);
  if (actual !== sha256 || (size !== undefined && bytes.byteLength !== size)) {
    throw new Error(`${path} does not match ${what} (expected sha256 ${sha256.slice(0, 12)}…, got ${actual.slice(0, 12)}…): ` +
      "the file was changed or damaged, so the page refuses to run it. Reload the page; if this stays, ask whoever " +
      "hosts it to rebuild it.");
  }
  return bytes;
}

async function checkedFile(manifest, path) {
  const entry = manifest.files[path];
  if (!entry) throw new Error(`${path} is not listed in manifest.json, so the page refuses to run it. Rebuild the bundle.`);
  return fetchChecked(path, entry.sha256, entry.bytes, "manifest.json");
}

// The version shown beside each question: a hash of every file of its scorer (kd_train/bundle.py's
// scorer_version), computed again here from the checked manifest.json; a page that shows another one was changed.
async function scorerVersion(manifest, folder) {
  const prefix = `scorers/${folder}/`;
  const lines = Object.keys(manifest.files).filter((p) => p.startsWith(prefix)).sort()
    .map((p) => `${p}\0${manifest.files[p].sha256}\n`).join("");
  return (await sha256Hex(new TextEncoder().encode(lines))).slice(0, 12);
}

async function checkScorerVersions(manifest) {
  for (const question of document.querySelectorAll(".question")) {
    const item = question.dataset.item;
    const shown = question.querySelector(".model-version code")?.textContent;
    const actual = manifest.folders?.[item] !== undefined ? await scorerVersion(manifest, manifest.folders[item]) : "none";
    if (shown !== actual) {
      throw new Error(`The page refused question ${item}'s scorer: the page shows version ${shown}, but its files ` +
        `(scorers/…/ in manifest.json) are version ${actual}, so this page was changed after it was built. Ask ` +
        "whoever hosts it to rebuild it, and check it with kd-train verify and the published digest.");
    }
  }
}

const manifestReady = (async () => {
  if (!/^[0-9a-f]{64}$/.test(DIGEST || "")) throw new Error("The page does not pin the bundle's digest; reload it.");
  const bytes = await fetchChecked("manifest.json", DIGEST, undefined, "the digest this page pins");
  const manifest = JSON.parse(new TextDecoder().decode(bytes));
  await checkScorerVersions(manifest);
  return manifest;
})();

// ---- the worker and its calls -------------------------------------------------------------
const pending = new Map();
let nextId = 1;

const workerReady = manifestReady.then(async (manifest) => {
  const source = await checkedFile(manifest, "worker.js");
  const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })),
    { type: "module", name: "worker.js" });
  worker.addEventListener("message", ({ data }) => {
    if (data.type === "progress") return showProgress(data.step, data.text);
    if (data.type === "csp-violation") return console.error(`CSP violation in the worker: ${data.directive} ${data.blocked}`);
    const waiter = pending.get(data.id);
    if (!waiter) return;
    pending.delete(data.id);
    if (data.ok) waiter.resolve(data);
    else waiter.reject(new Error(data.error));
  });
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    failStart(new Error(`The scoring engine could not start (${event.message || "the worker script failed to load"}).`));
  });
  return worker;
});

function call(type, data = {}) {
  return workerReady.then((worker) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, type, ...data });
  }));
}
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation in the page: ${e.violatedDirective} ${e.blockedURI}`);
});

// ---- start-up ------------------------------------------------------------------------------
const started = performance.now();
let ticker = null;
let startLimit = null;
let stepText = "";

function showProgress(step, text) {
  stepText = text;
  $("engine-progress").value = step;
  tick();
}

function tick() {
  const seconds = Math.round((performance.now() - started) / 1000);
  $("engine-text").textContent = `${stepText} (${seconds} s) You can already type your answer.`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function failStart(err) {
  if (document.body.dataset.engine === "error") return;
  clearInterval(ticker);
  clearTimeout(startLimit);
  document.body.dataset.engine = "error";
  $("engine-progress").hidden = true;
  $("engine-text").textContent = "The scorer could not start.";
  showError(err.message);
}

document.body.dataset.engine = "loading";
ticker = setInterval(tick, 1000);
// A start that never ends (a damaged or blocked engine file can leave WebAssembly waiting) ends in a
// message instead of a progress bar that runs forever.
startLimit = setTimeout(() => failStart(new Error(
  `The scoring engine did not start within ${START_LIMIT_S} s. The device may be very busy, or a file of this page ` +
  "may be damaged or blocked. Reload the page; if this happens again, ask whoever hosts it to rebuild it.")),
START_LIMIT_S * 1000);

const ready = call("init", { digest: DIGEST, version: VERSION, base: new URL("./", document.baseURI).href }).then(async () => {
  showProgress(4, "Loading the scorer…");
  await call("load", { item: currentItem() });
  clearTimeout(startLimit);
  if (document.body.dataset.engine === "error") throw new Error("The scoring engine did not start in time.");
  clearInterval(ticker);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  $("engine-progress").value = $("engine-progress").max;
  $("engine-progress").hidden = true;
  $("engine-text").textContent = `Ready (started in ${seconds} s).`;
  document.body.dataset.engine = "ready";
  performance.mark("kd-ready");           // first score possible (read by bench/browser.py)
  registerServiceWorker(await manifestReady);
});
ready.catch(failStart);

function offlineOff(text) {
  $("offline").textContent = `Offline use is off: ${text}`;
  $("offline").hidden = false;
  document.body.dataset.offline = "off";
}

// sw.js is registered only when its bytes match manifest.json; a service worker already registered with
// other bytes is removed. (The browser fetches the script again itself when it registers it; that copy
// cannot be read, so a host that answers the two fetches differently is caught by kd-train verify only.)
async function registerServiceWorker(manifest) {
  if (!("serviceWorker" in navigator)) return;
  try {
    await checkedFile(manifest, "sw.js");
  } catch (err) {
    const registration = await navigator.serviceWorker.getRegistration().catch(() => null);
    if (registration) await registration.unregister().catch(() => {});
    const why = err.message.match(/^sw\.js does not match manifest\.json (\([^)]*\))/);
    offlineOff(why ? `sw.js did not match manifest.json ${why[1]}, so this page did not install it: it was changed ` +
      "or damaged. The page works only while the server can be reached."
      : `sw.js could not be checked (${err.message}), so this page did not install it.`);
    return;
  }
  try {
    const registration = await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    // register() of a script already registered does not look for a newer one; the browser's own check
    // after a navigation can be late or skipped on a busy device. Asking here makes a rebuilt page's
    // service worker install while this page is open (this page then says a new version is ready).
    registration.update().catch(() => {});
    $("engine-text").textContent += " It works offline from now on.";
    document.body.dataset.offline = "on";
  } catch (err) {
    offlineOff(`the service worker sw.js could not be installed (${err.message}).`);
  }
}

// A page of one build controlled by the service worker of a newer one (it took over while this page
// started, or while it was open) keeps using the build it started with (never a mix, never a reload while
// an answer is typed) and says that a new version is ready. The service worker tells its build's version.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", ({ data }) => {
    if (!data?.kdVersion || data.kdVersion === VERSION || document.body.dataset.update) return;
    $("update").textContent = "A new version of this page is ready. This page keeps using the version it " +
      "started with; the new one is used the next time you open the page.";
    $("update").hidden = false;
    document.body.dataset.update = "ready";
  });
  const ask = () => navigator.serviceWorker.controller?.postMessage("version");
  navigator.serviceWorker.addEventListener("controllerchange", ask);
  navigator.serviceWorker.startMessages();
  ask();
}

// ---- one answer ------------------------------------------------------------------------------
// The answer box is a plain-text contenteditable, not a <textarea>: Chromium asks Google's autofill
// server about every page with a textarea (even with autocomplete="off"), and a classroom page must
// not make the browser contact anyone (tests/test_web.py::test_the_browser_sends_nothing_for_the_page).
function answerText() {
  return $("answer").innerText.replace(/\n$/, "");
}

function currentItem() {
  return $("item").value;
}

// The scorer's own review line (scorer.json review_threshold: calibrated so that it flags a stated
// share of its validation answers), else LOW.
function reviewBelow() {
  const question = document.querySelector(`.question[data-item="${CSS.escape(currentItem())}"]`);
  const own = question ? Number(question.dataset.review) : NaN;
  return Number.isFinite(own) && own > 0 ? own : LOW;
}

function confidence(top) {
  if (top >= Math.max(HIGH, reviewBelow())) return { level: "high", text: "high. The scorer is fairly sure of this score." };
  if (top >= reviewBelow()) return { level: "medium", text: "medium. This score is likely, but another one is possible." };
  return { level: "low", text: "low. The scorer is unsure; a teacher should review this answer." };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const percent = (p) => `${Math.round(p * 100)}%`;

// The index of the score given for these probabilities. The expected index is summed from 0 up in
// float64, as kd_train/metrics.py's decide() sums it, so the page and kd-train predict agree.
function decide(probs, cuts) {
  let best = 0;
  if (!cuts) {
    for (let j = 1; j < probs.length; j++) if (probs[j] > probs[best]) best = j;
    return best;
  }
  let expected = 0;
  for (let j = 0; j < probs.length; j++) expected += probs[j] * j;
  for (const c of cuts) if (expected > c) best++;
  return best;
}

// {score, top, probs, flags, reasons} of row `row` of a worker "score" result. The score follows the
// scorer's own rule (res.cutpoints, from its verified scorer.json). `flags` are detect.py's codes for
// an answer the scorer should not judge ([] when none); `reasons` their plain sentences. `top` is the
// probability of the score given. A "refused" answer (too long to score) has no score at all.
function rowResult(res, row) {
  const k = res.scoreValues.length;
  const flags = res.flags[row];
  const reasons = flags.map((code) => res.reasons[code] ?? code);
  if (flags.includes("refused")) return { score: "", top: 0, probs: [], flags, reasons };
  const probs = Array.from(res.probs.subarray(row * k, row * k + k));
  const best = decide(probs, res.cutpoints);
  return { score: res.scoreValues[best], top: probs[best], probs, flags, reasons };
}

// A flagged answer's score is withheld from the student: a score for a list of key words would teach
// students to game the scorer, and a "0, confidence high" for gibberish or another question's answer
// says something the scorer cannot know. The teacher's CSV keeps the model's output, marked flagged.
function showFlagged(r) {
  const box = $("result");
  box.replaceChildren(el("p", "score withheld", "Not scored: this answer needs a teacher."));
  const list = el("ul", "reasons");
  r.reasons.forEach((text) => list.append(el("li", null, text)));
  box.append(list, el("p", "flag", "Flagged for teacher review"));
}

function showResult(r, scoreValues) {
  const box = $("result");
  box.replaceChildren();
  const conf = confidence(r.top);
  const range = `${scoreValues[0]} to ${scoreValues[scoreValues.length - 1]}`;
  const score = el("p", "score", "Suggested score: ");
  score.append(el("strong", null, String(r.score)), el("span", "range", ` (possible scores ${range})`));
  box.append(score, el("p", `confidence ${conf.level}`, `Confidence: ${conf.text}`));
  if (conf.level === "low") box.append(el("p", "flag", "Flagged for teacher review"));
  const list = el("ul", "probs");
  list.setAttribute("aria-label", "Probability of each score");
  scoreValues.forEach((v, j) => {
    const li = el("li");
    const bar = el("span", "bar");
    const fill = el("span", v === r.score ? "fill best" : "fill");
    fill.style.width = `${(r.probs[j] * 100).toFixed(1)}%`;
    bar.append(fill);
    bar.setAttribute("aria-hidden", "true");
    li.append(el("span", "label", `Score ${v}`), bar, el("span", "pct", percent(r.probs[j])));
    list.append(li);
  });
  box.append(list);
}

function showMessage(box, text, className = "note") {
  box.replaceChildren(el("p", className, text));
}

async function scoreOne(event) {
  event.preventDefault();
  const text = answerText();
  if (!text.trim()) {
    showMessage($("result"), "Type an answer first.");
    $("answer").focus();
    return;
  }
  const item = currentItem();
  const button = $("score-button");
  button.disabled = true;
  if (document.body.dataset.engine !== "ready") {
    showMessage($("result"), "The scorer is still starting; your answer will be scored as soon as it is ready.");
  }
  try {
    await ready;
    const res = await call("score", { item, texts: [text] });
    const r = rowResult(res, 0);
    if (r.flags.length) showFlagged(r);
    else showResult(r, res.scoreValues);
  } catch (err) {
    showMessage($("result"), `Could not score the answer: ${err.message}`, "error-text");
  } finally {
    button.disabled = false;
  }
}

function chooseItem() {
  const item = currentItem();
  for (const q of document.querySelectorAll(".question")) q.hidden = q.dataset.item !== item;
  $("result").replaceChildren();
  ready.then(() => call("load", { item })).catch((err) => showError(err.message));
}

// ---- a file of answers -----------------------------------------------------------------------
let lastCsv = null;

async function scoreFile(event) {
  event.preventDefault();
  const file = $("csv-file").files[0];
  const text = $("batch-text");
  text.className = "";
  if (!file) {
    text.textContent = "Choose a file of answers first.";
    return;
  }
  $("batch-results").hidden = true;         // a new file: the previous results go away, whatever happens next
  lastCsv = null;
  $("batch-notes").replaceChildren();
  let answers, notes;
  try {
    const { text: content, encoding } = decodeBytes(await file.arrayBuffer());
    ({ answers, notes } = readAnswers(content, file.name, encoding));
  } catch (err) {
    text.className = "error-text";
    text.textContent = `Could not read the file: ${err.message}`;
    return;
  }
  if (answers.length === 0) {
    text.textContent = `${printable(file.name)} has a header row but no answers.`;
    return;
  }
  notes.forEach((note) => $("batch-notes").append(el("li", null, note)));
  await runBatch(answers, currentItem());
}

async function runBatch(answers, item) {
  const button = $("batch-button");
  const bar = $("batch-progress");
  const text = $("batch-text");
  button.disabled = true;
  $("batch-results").hidden = true;
  bar.hidden = false;
  bar.max = answers.length;
  bar.value = 0;
  text.textContent = document.body.dataset.engine === "ready"
    ? `Scoring ${answers.length} ${answers.length === 1 ? "answer" : "answers"}…` : "The scorer is still starting; the file will be scored as soon as it is ready.";
  const t0 = performance.now();
  const results = [];
  let scoreValues = [];
  try {
    await ready;
    for (let start = 0; start < answers.length; start += CHUNK) {
      const chunk = answers.slice(start, start + CHUNK);
      const res = await call("score", { item, texts: chunk.map((a) => a.response) });
      scoreValues = res.scoreValues;
      chunk.forEach((_, row) => results.push(rowResult(res, row)));
      bar.value = results.length;
      text.textContent = `Scored ${results.length} of ${answers.length} answers…`;
    }
  } catch (err) {
    text.className = "error-text";
    text.textContent = `Scoring stopped: ${err.message}`;
    button.disabled = false;
    bar.hidden = true;
    return;
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  const review = results.filter((r, i) => reviewReason(answers[i], r)).length;
  const unjudged = results.filter((r) => r.flags.length).length;
  text.textContent = `Done: ${answers.length} ${answers.length === 1 ? "answer" : "answers"} scored in ${seconds} s; ` +
    `${review} flagged for teacher review` +
    (unjudged ? `, of which ${unjudged} the scorer should not judge (score withheld).` : ".");
  bar.hidden = true;
  button.disabled = false;
  showBatch(answers, results, scoreValues, item);
}

function reviewReason(answer, r) {
  if (!answer.response.trim()) return "yes (empty)";
  if (r.flags.length) return "yes (not judged)";
  return r.top < reviewBelow() ? "yes" : "";
}

function showBatch(answers, results, scoreValues, item) {
  const head = ["id", "answer", "score", "confidence", "review", "why not judged", ...scoreValues.map((v) => `p(${v})`)];
  const headRow = el("tr");
  head.forEach((h) => headRow.append(Object.assign(el("th", null, h), { scope: "col" })));
  $("batch-table").tHead.replaceChildren(headRow);
  const body = document.createDocumentFragment();
  results.slice(0, SHOWN).forEach((r, i) => {
    const judged = !r.flags.length;
    const tr = el("tr", judged ? (r.top < reviewBelow() ? "low" : "") : "flagged");
    const answer = answers[i].response;
    const shown = answer.length > 300 ? answer.slice(0, 300) + "…" : answer;
    [answers[i].id, shown, judged ? r.score : "—", judged ? confidence(r.top).level : "—", reviewReason(answers[i], r),
      r.reasons.join(" "), ...(judged ? r.probs.map(percent) : scoreValues.map(() => "—"))]
      .forEach((cell, j) => tr.append(el(j === 0 ? "th" : "td", j === 1 ? "answer" : null, String(cell))));
    tr.firstChild.scope = "row";
    body.append(tr);
  });
  $("batch-table").tBodies[0].replaceChildren(body);
  $("batch-summary").textContent = results.length > SHOWN
    ? `The table shows the first ${SHOWN} of ${results.length} answers; the CSV has all of them.` : "";
  $("batch-caption").textContent = `Scores for question ${item}`;
  // The same columns as `kd-train predict` where they overlap (score, p_*, flagged, flags): for a
  // flagged answer the CSV keeps the model's score and probabilities, for the teacher to judge. Built
  // when the teacher asks for it, not after every batch (50,000 rows take a while).
  lastCsv = { name: `scores-${item}.csv`, text: () => {
    const rows = [["id", "response", "score", "confidence", "review", ...scoreValues.map((v) => `p_${v}`),
      "flagged", "flags", "why not judged"]];
    results.forEach((r, i) => rows.push([answers[i].id, answers[i].response, r.score,
      r.probs.length ? confidence(r.top).level : "", reviewReason(answers[i], r),
      ...(r.probs.length ? r.probs.map((p) => p.toFixed(6)) : scoreValues.map(() => "")),
      r.flags.length ? 1 : 0, r.flags.join(";"), r.reasons.join(" ")]));
    return toCsv(rows);
  } };
  $("batch-results").hidden = false;
}

function download() {
  if (!lastCsv) return;
  const blob = new Blob(["\ufeff" + lastCsv.text()], { type: "text/csv;charset=utf-8" });
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = lastCsv.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// ---- wiring ----------------------------------------------------------------------------------
$("nojs")?.remove();
$("single").addEventListener("submit", scoreOne);
$("answer-label").addEventListener("click", () => $("answer").focus());
$("answer").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("single").requestSubmit();
});
$("item").addEventListener("change", chooseItem);
$("batch").addEventListener("submit", scoreFile);
$("download").addEventListener("click", download);
performance.mark("kd-usable");            // the page reacts to input (read by bench/browser.py)
