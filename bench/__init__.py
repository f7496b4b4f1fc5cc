"""Benchmarks of kd-train: `python -m bench` (ASAP-SAS), `bench/browser.py`, `python -m bench.saf_german`,
`python -m bench.small_data`, `python -m bench.probes`, `python -m bench.threads`; and what they share: the results
folder, the command line and date a result records, markdown tables, and writing a result as NAME.json beside NAME.md."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def teacher_rule(item_report: dict) -> dict | None:
    """The teacher's figures by its own decision rule (report.json's models.teacher.decided), or None
    where it has none: a teacher trained before it kept its validation logits."""
    decided = item_report["models"]["teacher"].get("decided")
    return None if not decided or decided["decision"].get("judged_by", "").startswith("none") else decided


def teacher_labels(item_report: dict) -> str:
    """Which teacher labelled, on a cross-validated item: the fine-tuned encoder or the frozen one with logistic
    regression, with both out-of-fold QWKs (report.json's models.teacher.frozen_candidate); "fine-tuned" elsewhere."""
    found = item_report["models"]["teacher"].get("frozen_candidate")
    if not found:
        return "fine-tuned"
    return (f"{'frozen' if found['kept'] else 'fine-tuned'} (out of fold: frozen {found['oof_qwk']:.2f}, "
            f"fine-tuned {found['fine_tuned_oof_qwk']:.2f})")


def teacher_labels_line(labels: list[str]) -> str:
    return ("Which teacher labelled (the fine-tuned encoder, or the encoder frozen with logistic regression on its "
            "sentence embeddings, whichever is better out of fold on a cross-validated item): " + "; ".join(labels) + ".")


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the benchmark's own arguments, the kd-train train options after a lone "--")."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1:]


def add_out(ap) -> None:
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")


def command(prog: str, argv: list[str] | None = None) -> str:
    """The command line as typed at the repo root: ``prog`` and the arguments (sys.argv's when None), quoted."""
    return " ".join([prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def table(head: list[str], rows, align: str = "") -> list[str]:
    """A markdown table's lines; ``align``: one letter a column, "l" or "r" (default: the first left, the rest right)."""
    align = align or "l" + "r" * (len(head) - 1)
    return ["| " + " | ".join(head) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def write_result(out: Path, name: str, result: dict, markdown: str) -> str:
    """OUT/NAME.json (``result``) and OUT/NAME.md (``markdown``); returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    return markdown


def train(args: list[str], run: Path) -> dict:
    """`kd-train train ARGS --out RUN`, in this process; returns RUN/report.json (SystemExit when it fails)."""
    from kd_train import cli

    code = cli.main(["train", *args, "--out", str(run)])
    if code != 0:
        raise SystemExit(code)
    return json.loads((run / "report.json").read_text(encoding="utf-8"))
