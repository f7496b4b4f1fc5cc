"""The command line: helpful --help, and user mistakes exit non-zero with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, write_csv
from kd_train.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kd_train.cli", *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("verb", ["teacher", "label"])
def test_help_explains_each_verb(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", ["id", "item", "answer", "score"], [["1", "q", "x", "1"]])
    run = run_cli("teacher", "--train", str(bad), "--out", str(tmp_path / "t"))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.csv, row 1: the response table is missing column(s) 'response'" in lines[0]
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["teacher", "--out", "x"], "give --train CSV"),
        (["teacher", "--train", "examples/demo/responses.csv", "--out", "x", "--epochs", "0"], "--epochs must be > 0"),
        (["teacher", "--train", "examples/demo/responses.csv", "--out", "x", "--folds", "1"], "--folds must be 0"),
        (["teacher", "--train", "examples/demo/responses.csv", "--out", "x", "--item", "nope"], "--item 'nope' has no answers"),
        (["label", "--teacher", "nowhere", "--input", "examples/demo/test.csv", "--out", "x.csv"], "not a teacher folder"),
        (["label", "--teacher", "nowhere", "--out", "x.csv"], "--teacher needs --input"),
    ],
)
def test_user_mistakes(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_label_from_sampled_scores(tmp_path, capsys):
    samples = write_csv(tmp_path / "s.csv", ["id", "item", "score"], [["a", "q", 1], ["a", "q", 2], ["b", "q", 0]])
    items = write_csv(tmp_path / "i.csv", ["item", "question", "score_min", "score_max"], [["q", "?", 0, 3]])
    out = tmp_path / "soft.csv"
    assert main(["label", "--samples", str(samples), "--items", str(items), "--item", "q", "--smoothing", "0.5",
                 "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "id,item,p_0,p_1,p_2,p_3"
