"""The offline page in headless Chromium: start-up, per-answer latency, big batches, bundle size.

    python bench/browser.py [SCORER_DIR] [--answers CSV] [--repeat 30]

Builds a bundle from a copy of SCORER_DIR without its question text (default: a demo scorer that
`kd-train distill` trains here in seconds), serves it on 127.0.0.1 with kd-train serve's server (which
compresses what it sends, each file once before measuring starts: gzip here, as Chromium asks for
brotli over https only) and drives Debian's Chromium (fresh profile, the flags FLAGS below) through
Playwright. Measures, each from a fresh browser context (no HTTP cache):
  - page usable: navigation start -> main.js wired (the answer box reacts, mark "kd-usable")
  - first score possible: navigation start -> engine ready (Python + onnxruntime-web + model, "kd-ready"),
    for the bundle as built (with the start-up snapshot) and one built with --no-snapshot
  - bare loadPyodide(): a tiny page that only imports pyodide.mjs and awaits loadPyodide(), same run
  - the same start-ups with the whole browser limited by a cgroup CPU quota (--cpu-quota, 1/4 core)
  - per-answer latency, end to end in the page (submit -> result in the page's DOM), single answers and in
    batches of 200 through the teacher's batch form (batch time / 200), median and p90
  - a 5,000-answer batch end to end (file chosen -> results table drawn)
  - the detectors' cost: detect.py alone, and featurize.py + detect.py, per answer in the page's worker
  - bundle size raw / gzip -9 / brotli, each file compressed alone, as `kd-train build` reports it
Answers come from --answers (a table with id, item and response columns; default: ASAP-SAS train.csv when
present, else the demo answers). Writes bench/results/browser.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # bench and kd_train, when run as `python bench/browser.py` from a checkout

from bench import add_out, command, table, utc_now, write_result  # noqa: E402

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


@contextlib.contextmanager
def fresh_page(browser, url: str, ready: str = "body[data-engine=ready]"):
    """A page of ``url`` in a fresh browser context (no HTTP cache), once ``ready`` is in its DOM."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(ready, state="attached", timeout=TIMEOUT_MS)
        yield page
    finally:
        context.close()


def detector_cost(browser, url: str, answers: list[str], repeat: int = 5) -> dict:
    """ms per answer of detect.py alone and of featurize.py + detect.py, in the page's worker (batches of 1,000)."""
    with fresh_page(browser, url) as page:
        got = page.evaluate(DETECTOR_JS, {"texts": answers[:1000], "repeat": repeat})
    return {"n": min(1000, len(answers)), "repeat": repeat, "detect_ms": statistics.median(got["flags"]),
            "featurize_and_detect_ms": statistics.median(got["both"])}


def load_answers(path: Path | None) -> tuple[list[str], str]:
    from kd_train.data import default_data_root, read_responses

    if path is None:
        asap = default_data_root() / "asap-sas" / "train.csv"
        path = asap if asap.is_file() else ROOT / "examples" / "demo" / "responses.csv"
    return read_responses(path, score_column=False).responses, f"{path.parent.name}/{path.name}"  # no machine path


def answers_csv(texts: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "response"])
    writer.writerows([i, t] for i, t in enumerate(texts))
    return out.getvalue()


def mark(page, name: str) -> float:
    return page.evaluate(f"() => performance.getEntriesByName({name!r})[0].startTime")


def start_up(browser, url: str) -> dict[str, float]:
    with fresh_page(browser, url) as page:
        return {"usable_ms": mark(page, "kd-usable"), "ready_ms": mark(page, "kd-ready")}


def bare_pyodide(browser, url: str) -> dict[str, float]:
    with fresh_page(browser, url + "bare/", "body[data-state=ready]") as page:
        start, ready = mark(page, "bare-start"), mark(page, "bare-ready")
    return {"ready_ms": ready, "load_pyodide_ms": ready - start}


def latencies(browser, url: str, answers: list[str], repeat: int) -> dict:
    with fresh_page(browser, url) as page:
        page.evaluate(SINGLE_JS, answers[:5])                                   # warm-up
        single = page.evaluate(SINGLE_JS, answers[:repeat * 10])
        batches = []
        for r in range(repeat):
            chunk = answers[r * 200:(r + 1) * 200]
            batches.append(page.evaluate(BATCH_JS, {"csvText": answers_csv(chunk), "n": len(chunk)}) / len(chunk))
        big = (answers * (5000 // len(answers) + 1))[:5000]
        t5000 = page.evaluate(BATCH_JS, {"csvText": answers_csv(big), "n": 5000})
    return {
        "single_ms": {"n": len(single), "median": statistics.median(single), "p90": float(np.percentile(single, 90))},
        "batch200_per_answer_ms": {"n_batches": len(batches), "median": statistics.median(batches),
                                   "p90": float(np.percentile(batches, 90))},
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


def make_dist(scorer_dir: Path | None, work: Path) -> dict[str, tuple[Path, dict]]:
    """The bundles to measure, {name: (folder, sizes as kd-train build reports them)}: "dist" as built by
    default (with the start-up snapshot) and "dist-no-snapshot" with --no-snapshot.
    A given scorer goes in as a copy without its question text: the page's cost does not depend on it,
    and a benchmark build must not carry a dataset's prompt."""
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
    built = {}
    for name, snapshot in (("dist", True), ("dist-no-snapshot", False)):
        sizes = bundle.build([scorer_dir], work / name, snapshot=snapshot)["sizes"]
        built[name] = (work / name, sizes | {"brotli_quality": bundle.BROTLI_QUALITY})
    return built


def serve_with_bare_page(dist: Path, work: Path, name: str = "site"):
    """The bundle plus bare/ (the tiny loadPyodide page), served from a copy: dist/ stays as built."""
    from kd_train.serve import serve_in_thread

    site = work / name
    shutil.copytree(dist, site)
    (site / "bare").mkdir()
    (site / "bare" / "index.html").write_text(BARE_HTML, encoding="utf-8")
    (site / "bare" / "bare.js").write_text(BARE_JS, encoding="utf-8")
    return serve_in_thread(site)


# ---- a CPU limit on the whole browser ----------------------------------------------------------
# DevTools' CPU throttling slows the page's main thread only, not its workers (where Python and the
# model run); a cgroup CPU quota slows every Chromium process. Needs a writable cgroup (root, or a
# delegated one): cgroup v2 (cpu.max) or v1 (the cpu controller's cfs quota).

def cpu_limited_chromium(quota: float, work: Path) -> tuple[Path, Path] | str:
    """(wrapper script that puts Chromium in a new cgroup with ``quota`` cores, the cgroup), or why not."""
    name = f"kd-train-bench-{os.getpid()}"
    period = 100_000
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")
    try:
        if (v2 / "cgroup.controllers").is_file() and "cpu" in (v2 / "cgroup.controllers").read_text():
            group = v2 / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{int(quota * period)} {period}")
        elif (v1 / "cpu.cfs_quota_us").is_file():
            group = v1 / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(quota * period)))
        else:
            return "no cgroup CPU controller found"
    except OSError as err:
        return f"the cgroup could not be made ({err.strerror}; run as root or in a delegated cgroup)"
    wrapper = work / "chromium-limited.sh"
    wrapper.write_text(f"#!/bin/sh\necho $$ > {group / 'cgroup.procs'}\nexec {CHROMIUM} \"$@\"\n", encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper, group


def remove_cgroup(group: Path) -> None:
    for _ in range(50):   # Chromium's processes leave the group as they exit
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.2)


def start_ups(browser, urls: dict[str, str], n: int, label: str = "") -> dict[str, list[float]]:
    """n rounds of: each bundle's page from a fresh context, then the bare loadPyodide page."""
    out: dict[str, list[float]] = {"page_usable_ms": [], "first_score_ms": [], "first_score_no_snapshot_ms": [],
                                   "bare_pyodide_page_ms": [], "bare_load_pyodide_ms": []}
    for _ in range(n):
        page = start_up(browser, urls["dist"])
        plain = start_up(browser, urls["dist-no-snapshot"])
        bare = bare_pyodide(browser, urls["dist"])
        out["page_usable_ms"].append(page["usable_ms"])
        out["first_score_ms"].append(page["ready_ms"])
        out["first_score_no_snapshot_ms"].append(plain["ready_ms"])
        out["bare_pyodide_page_ms"].append(bare["ready_ms"])
        out["bare_load_pyodide_ms"].append(bare["load_pyodide_ms"])
        print(f"start-up{label}: page {page['ready_ms']:.0f} ms (without the snapshot {plain['ready_ms']:.0f} ms), "
              f"bare loadPyodide {bare['ready_ms']:.0f} ms", flush=True)
    return out


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    answers, source = load_answers(args.answers)
    answers = [a for a in answers if a.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = make_dist(args.scorer, work)
        dists = {name: folder for name, (folder, _) in built.items()}
        sizes, sizes_plain = built["dist"][1], built["dist-no-snapshot"][1]
        servers = {name: serve_with_bare_page(d, work, f"site-{name}") for name, d in dists.items()}
        urls = {name: url for name, (_, url) in servers.items()}
        for server, _ in servers.values():   # kd-train serve compresses each file once: not while measuring
            server.precompressing.join()
        limited = cpu_limited_chromium(args.cpu_quota, work) if args.cpu_quota else "not asked for (--cpu-quota 0)"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                version = browser.version
                starts = start_ups(browser, urls, args.starts)
                lat = latencies(browser, urls["dist"], answers, args.repeat)
                detectors = detector_cost(browser, urls["dist"], answers)
                browser.close()
                if isinstance(limited, tuple):
                    slow = p.chromium.launch(executable_path=str(limited[0]), args=FLAGS)
                    quota = {"quota_cores": args.cpu_quota,
                             **start_ups(slow, urls, args.starts, f" ({args.cpu_quota:g} of a core)")}
                    slow.close()
                else:
                    quota = {"quota_cores": args.cpu_quota, "not_measured": limited}
        finally:
            for server, _ in servers.values():
                server.shutdown()
                server.server_close()
            if isinstance(limited, tuple):
                remove_cgroup(limited[1])
    lengths = sorted(len(a) for a in answers)
    return {
        "command": command("python bench/browser.py"), "date": utc_now(),
        "chromium": version, "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "answers": {"source": source, "n": len(answers), "median_chars": lengths[len(lengths) // 2]},
        "sizes": sizes, "sizes_no_snapshot": sizes_plain,
        "start_up": starts, "start_up_cpu_quota": quota,
        **lat,
        "detectors": detectors,
    }


def ratio(starts: dict, key: str) -> float:
    """Median over rounds of (page's first score / bare loadPyodide page), each pair measured back to back."""
    return statistics.median(a / b for a, b in zip(starts[key], starts["bare_pyodide_page_ms"]))


def quota_rows(quota: dict) -> list[tuple[str, str]]:
    cores = f"{quota['quota_cores']:g} of a core"
    if "not_measured" in quota:
        return [(f"the same with the browser limited to {cores}", f"not measured: {quota['not_measured']}")]
    med = statistics.median
    return [(f"with the whole browser limited to {cores} (cgroup CPU quota): first score, snapshot / no snapshot / "
             "bare page", f"{med(quota['first_score_ms']) / 1000:.1f} / {med(quota['first_score_no_snapshot_ms']) / 1000:.1f}"
             f" / {med(quota['bare_pyodide_page_ms']) / 1000:.1f} s"),
            (f"**first score ÷ bare page at {cores}**: snapshot / no snapshot",
             f"**{ratio(quota, 'first_score_ms'):.2f}×** / {ratio(quota, 'first_score_no_snapshot_ms'):.2f}×")]


def write_report(result: dict, out: Path) -> str:
    s, su, p, d = result["sizes"], result["start_up"], result["sizes_no_snapshot"], result["detectors"]
    med = lambda key: statistics.median(su[key]) / 1000  # noqa: E731
    single, batch = result["single_ms"], result["batch200_per_answer_ms"]
    rows = [
        ("page usable (answer box reacts)", f"{med('page_usable_ms') * 1000:.0f} ms"),
        ("first score possible (Python + onnxruntime-web + model ready), start-up snapshot (the default)",
         f"{med('first_score_ms'):.2f} s"),
        ("first score possible, bundle built with `--no-snapshot`", f"{med('first_score_no_snapshot_ms'):.2f} s"),
        ("bare `loadPyodide()` page, navigation to ready", f"{med('bare_pyodide_page_ms'):.2f} s"),
        ("bare `loadPyodide()` call alone", f"{med('bare_load_pyodide_ms'):.2f} s"),
        ("**first score ÷ bare page** (median of the per-round ratios): snapshot / no snapshot",
         f"**{ratio(su, 'first_score_ms'):.2f}×** / {ratio(su, 'first_score_no_snapshot_ms'):.2f}×"),
        *quota_rows(result["start_up_cpu_quota"]),
        (f"one answer, submit to result shown in the page: median / p90 (n={single['n']})",
         f"{single['median']:.1f} / {single['p90']:.1f} ms"),
        (f"per answer in a batch of 200 (batch form, file to table): median / p90 over {batch['n_batches']} batches",
         f"{batch['median']:.2f} / {batch['p90']:.2f} ms"),
        ("5,000-answer batch, end to end", f"{result['batch5000_s']:.1f} s"),
        (f"detectors (`detect.py` alone) per answer, batches of {d['n']:,} in the page's worker: median of {d['repeat']}",
         f"{d['detect_ms']:.3f} ms"),
        ("`featurize.py` + `detect.py` per answer, same batches", f"{d['featurize_and_detect_ms']:.3f} ms"),
        (f"bundle raw / gzip -9 / brotli {s.get('brotli_quality', 11)}", f"{s['raw'] / 1e6:.1f} / {s['gzip'] / 1e6:.1f} / {s['brotli'] / 1e6:.1f} MB"),
        ("the same, built with `--no-snapshot`", f"{p['raw'] / 1e6:.1f} / {p['gzip'] / 1e6:.1f} / {p['brotli'] / 1e6:.1f} MB"),
    ]
    ms = lambda key: ", ".join(f"{x:.0f}" for x in su[key])  # noqa: E731
    lines = [
        "# The offline page in headless Chromium", "",
        f"Each start-up from a fresh browser context (no HTTP cache), median of {len(su['first_score_ms'])}; "
        "times from navigation start.", "", *table(["measure", "value"], rows), "",
        f"- Answers: {result['answers']['n']:,} non-empty responses from `{Path(result['answers']['source']).name}` "
        f"(median {result['answers']['median_chars']} characters).",
        f"- All start-ups (ms): page usable {ms('page_usable_ms')}; first score {ms('first_score_ms')}; without the "
        f"snapshot {ms('first_score_no_snapshot_ms')}; bare loadPyodide page {ms('bare_pyodide_page_ms')}.",
        "- Start-up rounds run the three pages back to back (snapshot, no snapshot, bare), so each ratio compares "
        "pages measured under the same load.",
        f"- Command (repo root): `{result['command']}`",
        f"- Date: {result['date']}; Chromium {result['chromium']} headless; Python {result['python']} on "
        f"{result['platform']}, {result['cpus']} CPUs shared with other work (load average "
        f"{', '.join(f'{x:.1f}' for x in result['load_avg'])}).",
    ]
    return write_result(out, "browser", result, "\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scorer", nargs="?", type=Path, help="scorer directory (default: train a demo scorer here)")
    ap.add_argument("--answers", type=Path,
                    help="answers table: id, item, response (default: ASAP-SAS train.csv, else the demo's)")
    ap.add_argument("--starts", type=int, default=3, help="cold start-ups to measure (default: 3)")
    ap.add_argument("--repeat", type=int, default=20,
                    help="batches of 200 to time; single answers timed: 10x this (default: 20)")
    ap.add_argument("--cpu-quota", type=float, default=0.25,
                    help="also measure start-up with the whole browser limited to this many cores by a cgroup CPU "
                         "quota (needs root; 0: skip; default: %(default)s)")
    add_out(ap)
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    print(write_report(run(args), args.out))


if __name__ == "__main__":
    main()
