"""The command line: helpful --help, and user mistakes exit non-zero with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import DEMO, REPO, toy_rows, write_csv
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


# ---- refused before any work (issue 28) ------------------------------------------------------------

def one_line_error(args: list, capsys, message: str) -> str:
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert message in err, err
    return err


@pytest.mark.parametrize("verb", ["distill", "train", "teacher"])
def test_a_test_table_that_is_the_training_table_is_refused(verb, tmp_path, capsys):
    train = DEMO / "responses.csv"
    one_line_error([verb, "--train", train, "--test", train, "--out", tmp_path / "o"], capsys,
                   "is the --train table; its QWK would be measured on the answers the models were fitted to")
    assert not (tmp_path / "o").exists()


def test_a_test_table_sharing_ids_with_the_training_table_is_refused(tmp_path, capsys):
    rows = toy_rows(60)
    train = write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows)
    test = write_csv(tmp_path / "test.csv", ["id", "item", "response", "score"],
                     rows[:7] + toy_rows(10, seed=1, prefix="t"))
    err = one_line_error(["distill", "--train", train, "--test", test, "--out", tmp_path / "o"], capsys,
                         "test.csv: 7 of its 17 answers have ids that train.csv also holds for the same item "
                         "(first: id 'a0' of item 'q1')")
    assert "remove those answers from --test" in err
    # the same ids for another item are different answers
    other = write_csv(tmp_path / "other.csv", ["id", "item", "response", "score"],
                      [[r[0], "q2", r[2], r[3]] for r in rows[:7]] + toy_rows(10, seed=1, prefix="t"))
    assert main(["distill", "--train", str(train), "--test", str(other), "--item", "q1", "--student-epochs", "1",
                 "--out", str(tmp_path / "o")]) == 0


def test_train_checks_every_item_before_training_any(tmp_path, capsys):
    rows = toy_rows(60) + [[f"b{i}", "q2", f"answer {i}", 1] for i in range(30)]
    train = write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows)
    one_line_error(["train", "--train", train, "--out", tmp_path / "run"], capsys,
                   "item 'q2' has only one score value (1) in its 30 labelled answers")
    assert not list((tmp_path / "run").glob("q1"))
    too_few = toy_rows(60) + [["b1", "q2", "one", 0], ["b2", "q2", "two", 1]]
    train = write_csv(tmp_path / "few.csv", ["id", "item", "response", "score"], too_few)
    one_line_error(["train", "--train", train, "--out", tmp_path / "run", "--teacher-cv-below", "0"], capsys,
                   "2 labelled answers are too few for a validation split")
    assert not list((tmp_path / "run").glob("q1"))


def test_label_items_without_item_is_refused(tmp_path, capsys):
    samples = write_csv(tmp_path / "s.csv", ["id", "item", "score"], [["a", "q", 1]])
    items = write_csv(tmp_path / "i.csv", ["item", "score_min", "score_max"], [["q", 0, 3]])
    err = one_line_error(["label", "--samples", samples, "--items", items, "--out", tmp_path / "o.csv"], capsys,
                         "--items and --item go together")
    assert "None" not in err


@pytest.mark.parametrize("model, message", [("/nonexistent/model", "--model /nonexistent/model does not exist"),
                                            ("./here", "--model ./here does not exist"),
                                            ("REPO_FILE", "is a file, not a folder"),
                                            ("EMPTY_DIR", "is not a model folder (no config.json)")])
def test_teacher_model_paths_are_checked_up_front(model, message, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    model = {"REPO_FILE": str(DEMO / "items.csv"), "EMPTY_DIR": str(tmp_path / "m")}.get(model, model)
    err = one_line_error(["teacher", "--train", DEMO / "responses.csv", "--model", model, "--out", tmp_path / "t"],
                         capsys, message)
    assert "hub" not in err.split(";")[0] and not (tmp_path / "t").exists()


@pytest.mark.parametrize("verb", ["build", "distill", "teacher"])
def test_out_dot_is_refused_before_any_work(verb, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = {"build": ["build", tmp_path / "no-scorer"], "distill": ["distill", "--train", DEMO / "responses.csv"],
            "teacher": ["teacher", "--train", DEMO / "responses.csv"]}[verb]
    example = {"build": "dist", "distill": "scorer", "teacher": "teacher"}[verb]
    err = one_line_error([*args, "--out", "."], capsys, "--out . is the folder you are in")
    assert f"give a new folder, e.g. --out {example}" in err
    assert list(tmp_path.iterdir()) == []


def test_demo_checks_its_port_before_any_work(tmp_path, capsys):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        err = one_line_error(["demo", "--out", tmp_path / "demo", "--port", str(port)], capsys,
                             f"cannot listen on 127.0.0.1:{port}")
    finally:
        busy.close()
    assert "--no-serve" in err and "--host" not in err and not (tmp_path / "demo").exists()



def test_distill_trains_the_sequence_student_and_predict_runs_it(tmp_path, capsys):
    """No teacher folder: the words' starting vectors come from the packaged base encoder, and the scorer says so."""
    import csv
    import json

    out = tmp_path / "scorer"
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--student", "sequence", "--student-epochs", "2", "--out", str(out)]) == 0
    info = json.loads((out / "scorer.json").read_text())
    assert info["model"]["input"] == "token_ids" and info["featurizer"]["kind"] == "tokens"
    assert info["quality"]["shipped"] == "sequence" and "not fine-tuned" in info["training"]["embeddings"]
    capsys.readouterr()
    predicted = tmp_path / "predicted.csv"
    assert main(["predict", "--scorer", str(out), "--input", str(DEMO / "test.csv"), "--out", str(predicted)]) == 0
    with open(predicted, encoding="utf-8", newline="") as fh:
        assert {int(r["score"]) for r in csv.DictReader(fh)} <= {0, 1, 2, 3}


@pytest.mark.parametrize("extra, message", [
    (["--teacher", "t"], "--teacher gives the sequence student's starting word vectors; add --student sequence"),
    (["--student", "sequence", "--teacher", "nowhere"], "nowhere: not a teacher folder (no teacher.json)"),
])
def test_distill_refuses_a_teacher_it_cannot_use_before_training(tmp_path, capsys, extra, message):
    one_line_error(["distill", "--train", DEMO / "responses.csv", "--out", tmp_path / "o", *extra], capsys, message)
    assert not (tmp_path / "o").exists()
