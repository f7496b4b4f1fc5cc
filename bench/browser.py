"""The offline page in headless Chromium: start-up, per-answer latency, big batches, bundle size.

    python bench/browser.py [SCORER_DIR] [--answers CSV] [--repeat 30]

Builds a bundle from a copy of SCORER_DIR without its question text (default: a demo scorer that
`kd-train distill` trains here in seconds), serves it on 127.0.0.1 with kd-train serve's server and drives Debian's Chromium
(fresh profile, the flags FLAGS below) through Playwright. Measures, each from a fresh browser context (no HTTP cache):
  - page usable: navigation start -> main.js wired (the answer box reacts, mark "kd-usable")
  - first score possible: navigation start -> engine ready (Pyodide + onnxruntime-web + model, "kd-ready")
  - bare loadPyodide(): a tiny page that only imports pyodide.mjs and awaits loadPyodide(), same run
  - per-answer latency, end to end in the page (submit -> result in the page's DOM), single answers and in
    batches of 200 through the teacher's batch form (batch time / 200), median and p90
  - a 5,000-answer batch end to end (file chosen -> results table drawn)
  - the detectors' cost: detect.py alone, and featurize.py + detect.py, per answer in the page's worker
  - bundle size raw / gzip -9 / brotli quality 11 (each file compressed alone)
Answers come from --answers (a CSV with a 'response' column; default: ASAP-SAS train.csv when
present, else the demo answers). Writes bench/results/browser.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import io
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # kd_train, when run as `python bench/browser.py` from a checkout

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 300_000

# JavaScript for page.evaluate: a worker of the page's own, started as main.js starts it, and call(type, data)
# to talk to it. Put it at the top of an async function body (here and in tests/test_web.py).
START_WORKER_JS = """
  const w = new Worker("worker.js", {type: "module"});
  let next = 0;
  const call = (type, data) => new Promise((resolve, reject) => {
    const id = ++next;
    const on = (e) => {
      if (e.data.id !== id) return;
      w.removeEventListener("message", on);
      e.data.ok ? resolve(e.data) : reject(new Error(e.data.error));
    };
    w.addEventListener("message", on);
    w.postMessage({id, type, ...data});
  });
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  await call("init", {digest: meta("kd-bundle-digest"), version: meta("kd-bundle-version")});
"""

BARE_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>bare loadPyodide</title>
<script type="module" src="bare.js"></script></head><body>loading</body></html>
"""
BARE_JS = """import { loadPyodide } from "../vendor/pyodide/pyodide.mjs";
performance.mark("bare-start");
await loadPyodide({ indexURL: new URL("../vendor/pyodide/", import.meta.url).href, packages: [] });
performance.mark("bare-ready");
document.body.dataset.state = "ready";
"""

SINGLE_JS = """async (texts) => {
  const times = [];
  const form = document.getElementById("single"), box = document.getElementById("result");
  for (const text of texts) {
    box.replaceChildren();
    document.getElementById("answer").textContent = text;
    const done = new Promise((resolve) => {
      const obs = new MutationObserver(() => { if (box.querySelector(".score")) { obs.disconnect(); resolve(); } });
      obs.observe(box, { childList: true, subtree: true });
    });
    const t = performance.now();
    form.requestSubmit();
    await done;
    times.push(performance.now() - t);
  }
  return times;
}"""

BATCH_JS = """async ({csvText, n}) => {
  const input = document.getElementById("csv-file"), text = document.getElementById("batch-text");
  const dt = new DataTransfer();
  dt.items.add(new File([csvText], "answers.csv", { type: "text/csv" }));
  input.files = dt.files;
  text.textContent = "";                       // the previous batch's "Done: ..." must not count
  const t = performance.now();
  document.getElementById("batch").requestSubmit();
  while (!text.textContent.startsWith(`Done: ${n} answers`)) await new Promise((r) => setTimeout(r, 5));
  return performance.now() - t;
}"""


# detect.py alone versus featurize.py + detect.py, in a worker of the page's own (the same calls as main.js).
DETECTOR_JS = """async ({texts, repeat}) => {""" + START_WORKER_JS + """  const item = (await (await fetch("manifest.json")).json()).items[0];
  await call("flags", {item, texts: texts.slice(0, 50)});                  // warm-up
  await call("featurize", {item, texts: texts.slice(0, 50)});
  const flags = [], both = [];
  for (let r = 0; r < repeat; r++) {
    let t = performance.now();
    await call("flags", {item, texts});
    flags.push((performance.now() - t) / texts.length);
    t = performance.now();
    await call("featurize", {item, texts});
    both.push((performance.now() - t) / texts.length);
  }
  w.terminate();
  return {flags, both};
}"""


def detector_cost(browser, url: str, answers: list[str], repeat: int = 5) -> dict:
    """ms per answer of detect.py alone and of featurize.py + detect.py, in the page's worker (batches of 1,000)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-engine=ready]", state="attached", timeout=TIMEOUT_MS)
    got = page.evaluate(DETECTOR_JS, {"texts": answers[:1000], "repeat": repeat})
    context.close()
    return {"n": min(1000, len(answers)), "repeat": repeat, "detect_ms": statistics.median(got["flags"]),
            "featurize_and_detect_ms": statistics.median(got["both"])}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def load_answers(path: Path | None) -> tuple[list[str], str]:
    if path is None:
        asap = Path(os.environ.get("KD_TRAIN_DATA", ROOT.parent / "shared" / "datasets")) / "asap-sas" / "train.csv"
        path = asap if asap.is_file() else ROOT / "examples" / "demo" / "responses.csv"
    with open(path, newline="", encoding="utf-8") as f:
        answers = [row["response"] for row in csv.DictReader(f)]
    return answers, f"{path.parent.name}/{path.name}"  # no machine-specific path in the results


def answers_csv(texts: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "response"])
    writer.writerows([i, t] for i, t in enumerate(texts))
    return out.getvalue()


def bundle_sizes(dist: Path) -> dict[str, int]:
    import brotli

    files = [p.read_bytes() for p in sorted(dist.rglob("*")) if p.is_file()]
    return {"raw": sum(map(len, files)), "gzip": sum(len(gzip.compress(d, 9, mtime=0)) for d in files),
            "brotli": sum(len(brotli.compress(d, quality=11)) for d in files)}


def mark(page, name: str) -> float:
    return page.evaluate(f"() => performance.getEntriesByName({name!r})[0].startTime")


def start_up(browser, url: str) -> dict[str, float]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-engine=ready]", state="attached", timeout=TIMEOUT_MS)
    out = {"usable_ms": mark(page, "kd-usable"), "ready_ms": mark(page, "kd-ready")}
    context.close()
    return out


def bare_pyodide(browser, url: str) -> dict[str, float]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "bare/")
    page.wait_for_selector("body[data-state=ready]", state="attached", timeout=TIMEOUT_MS)
    start, ready = mark(page, "bare-start"), mark(page, "bare-ready")
    context.close()
    return {"ready_ms": ready, "load_pyodide_ms": ready - start}


def latencies(browser, url: str, answers: list[str], repeat: int) -> dict:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-engine=ready]", state="attached", timeout=TIMEOUT_MS)
    page.evaluate(SINGLE_JS, answers[:5])                                   # warm-up
    single = page.evaluate(SINGLE_JS, answers[:repeat * 10])
    batches = []
    for r in range(repeat):
        chunk = answers[r * 200:(r + 1) * 200]
        batches.append(page.evaluate(BATCH_JS, {"csvText": answers_csv(chunk), "n": len(chunk)}) / len(chunk))
    big = (answers * (5000 // len(answers) + 1))[:5000]
    t5000 = page.evaluate(BATCH_JS, {"csvText": answers_csv(big), "n": 5000})
    context.close()
    return {
        "single_ms": {"n": len(single), "median": statistics.median(single), "p90": percentile(single, 0.9)},
        "batch200_per_answer_ms": {"n_batches": len(batches), "median": statistics.median(batches),
                                   "p90": percentile(batches, 0.9)},
        "batch5000_s": t5000 / 1000,
    }


def demo_scorer(folder: Path) -> Path:
    """A scorer of the demo item, as `kd-train distill` makes it from the demo answers (a few seconds)."""
    from kd_train import cli

    demo = cli.demo_dir()
    code = cli.main(["distill", "--train", str(demo / "responses.csv"), "--items", str(demo / "items.csv"),
                     "--item", "demo-ice", "--out", str(folder)])
    if code != 0:
        raise SystemExit(code)
    return folder


def make_dist(scorer_dir: Path | None, work: Path) -> Path:
    """The bundle to measure. A given scorer goes in as a copy without its question text: the
    page's cost does not depend on it, and a benchmark build must not carry a dataset's prompt."""
    import json
    import shutil

    from kd_train import bundle
    from kd_train.files import write_marker

    if scorer_dir is None:
        scorer_dir = demo_scorer(work / "demo-ice")
    else:
        scorer_dir = Path(shutil.copytree(scorer_dir, work / "scorer"))
        info = json.loads((scorer_dir / "scorer.json").read_text(encoding="utf-8"))
        info["question"] = ""
        (scorer_dir / "scorer.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        write_marker(scorer_dir, "scorer")   # the edited copy, signed off as this benchmark's own
    dist = work / "dist"
    bundle.build([scorer_dir], dist, report_sizes=False)
    return dist


def serve_with_bare_page(dist: Path, work: Path):
    """The bundle plus bare/ (the tiny loadPyodide page), served from a copy: dist/ stays as built."""
    import shutil

    from kd_train.serve import serve_in_thread

    site = work / "site"
    shutil.copytree(dist, site)
    (site / "bare").mkdir()
    (site / "bare" / "index.html").write_text(BARE_HTML, encoding="utf-8")
    (site / "bare" / "bare.js").write_text(BARE_JS, encoding="utf-8")
    return serve_in_thread(site)


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    answers, source = load_answers(args.answers)
    answers = [a for a in answers if a.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dist = make_dist(args.scorer, work)
        print("bundle built; compressing for the size report (brotli quality 11 takes a while)", flush=True)
        sizes = bundle_sizes(dist)
        server, url = serve_with_bare_page(dist, work)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                version = browser.version
                starts, bares = [], []
                for _ in range(args.starts):
                    starts.append(start_up(browser, url))
                    bares.append(bare_pyodide(browser, url))
                    print(f"start-up: page {starts[-1]['ready_ms']:.0f} ms, bare loadPyodide {bares[-1]['ready_ms']:.0f} ms",
                          flush=True)
                lat = latencies(browser, url, answers, args.repeat)
                detectors = detector_cost(browser, url, answers)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    lengths = sorted(len(a) for a in answers)
    return {
        "command": " ".join(["python", "bench/browser.py", *map(shlex.quote, sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "chromium": version, "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "answers": {"source": source, "n": len(answers), "median_chars": lengths[len(lengths) // 2]},
        "sizes": sizes,
        "start_up": {"page_usable_ms": [s["usable_ms"] for s in starts], "first_score_ms": [s["ready_ms"] for s in starts],
                     "bare_pyodide_page_ms": [b["ready_ms"] for b in bares],
                     "bare_load_pyodide_ms": [b["load_pyodide_ms"] for b in bares]},
        **lat,
        "detectors": detectors,
    }


def write_report(result: dict, out: Path) -> str:
    s, su = result["sizes"], result["start_up"]
    med = lambda xs: statistics.median(xs)  # noqa: E731
    lines = [
        "# The offline page in headless Chromium",
        "",
        f"Each start-up from a fresh browser context (no HTTP cache), median of {len(su['first_score_ms'])}; "
        "times from navigation start.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| page usable (answer box reacts) | {med(su['page_usable_ms']):.0f} ms |",
        f"| first score possible (Pyodide + onnxruntime-web + model ready) | {med(su['first_score_ms']) / 1000:.2f} s |",
        f"| bare `loadPyodide()` page, navigation to ready | {med(su['bare_pyodide_page_ms']) / 1000:.2f} s |",
        f"| bare `loadPyodide()` call alone | {med(su['bare_load_pyodide_ms']) / 1000:.2f} s |",
        f"| one answer, submit to result shown in the page: median / p90 (n={result['single_ms']['n']}) | "
        f"{result['single_ms']['median']:.1f} / {result['single_ms']['p90']:.1f} ms |",
        f"| per answer in a batch of 200 (batch form, file to table): median / p90 over "
        f"{result['batch200_per_answer_ms']['n_batches']} batches | {result['batch200_per_answer_ms']['median']:.2f} / "
        f"{result['batch200_per_answer_ms']['p90']:.2f} ms |",
        f"| 5,000-answer batch, end to end | {result['batch5000_s']:.1f} s |",
        *([f"| detectors (`detect.py` alone) per answer, batches of {result['detectors']['n']:,} in the page's worker: "
           f"median of {result['detectors']['repeat']} | {result['detectors']['detect_ms']:.3f} ms |",
           f"| `featurize.py` + `detect.py` per answer, same batches | {result['detectors']['featurize_and_detect_ms']:.3f} ms |"]
          if "detectors" in result else []),
        f"| bundle raw / gzip -9 / brotli 11 | {s['raw'] / 1e6:.1f} / {s['gzip'] / 1e6:.1f} / {s['brotli'] / 1e6:.1f} MB |",
        "",
        f"- Answers: {result['answers']['n']:,} non-empty responses from `{Path(result['answers']['source']).name}` "
        f"(median {result['answers']['median_chars']} characters).",
        f"- All start-ups (ms): page usable {', '.join(f'{x:.0f}' for x in su['page_usable_ms'])}; first score "
        f"{', '.join(f'{x:.0f}' for x in su['first_score_ms'])}; bare loadPyodide page "
        f"{', '.join(f'{x:.0f}' for x in su['bare_pyodide_page_ms'])}.",
        f"- Command (repo root): `{result['command']}`",
        f"- Date: {result['date']}; Chromium {result['chromium']} headless; Python {result['python']} on "
        f"{result['platform']}, {result['cpus']} CPUs shared with other work (load average "
        f"{', '.join(f'{x:.1f}' for x in result['load_avg'])}).",
    ]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "browser.md").write_text(text, encoding="utf-8")
    (out / "browser.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scorer", nargs="?", type=Path, help="scorer directory (default: train a demo scorer here)")
    ap.add_argument("--answers", type=Path, help="CSV with a 'response' column (default: ASAP-SAS train.csv, else the demo)")
    ap.add_argument("--starts", type=int, default=3, help="cold start-ups to measure (default: 3)")
    ap.add_argument("--repeat", type=int, default=20,
                    help="batches of 200 to time; single answers timed: 10x this (default: 20)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    print(write_report(run(args), args.out))


if __name__ == "__main__":
    main()
