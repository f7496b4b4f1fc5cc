"""Every verb against the inputs that used to lose files or print tracebacks: each ends in exit 2 and
one line on stderr, and leaves every file it was given as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO, REPO, toy_rows, write_csv
from kd_train.cli import main
from kd_train.files import write_marker

SCORER_FILES = ["MODEL_CARD.md", "kd-train.json", "model.onnx", "scorer.json"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails_in_one_line(args: list[str], capsys, message: str, code: int = 2) -> str:
    assert main([str(a) for a in args]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert message in err, err
    return err


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> Path:
    """A real scorer for the demo item, trained for a few epochs through the CLI."""
    folder = tmp_path_factory.mktemp("scorer") / "scorer"
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--student-epochs", "2", "--out", str(folder)]) == 0
    return folder


@pytest.fixture()
def user_folder(tmp_path) -> Path:
    """A folder holding a user's own data, as a new user would point --out at it."""
    folder = tmp_path / "mydata"
    folder.mkdir()
    shutil.copy(DEMO / "responses.csv", folder / "responses.csv")
    shutil.copy(DEMO / "items.csv", folder / "items.csv")
    return folder


# ---- data loss ------------------------------------------------------------------------------------

def test_distill_measures_the_items_gaming_probes(scorer):
    info = json.loads((scorer / "scorer.json").read_text(encoding="utf-8"))
    assert info["probes"]["gibberish"]["n"] == 40 and "lowest" in info["probes"]["key_terms"]
    assert "| gibberish | 40 |" in (scorer / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_distill_into_the_folder_holding_its_inputs_deletes_nothing(user_folder, capsys):
    before = snapshot(user_folder)
    fails_in_one_line(["distill", "--train", user_folder / "responses.csv", "--items", user_folder / "items.csv",
                       "--student-epochs", "1", "--out", user_folder], capsys, "contains the input")
    assert snapshot(user_folder) == before


def test_distill_into_any_non_empty_folder_deletes_nothing(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    fails_in_one_line(["distill", "--train", DEMO / "responses.csv", "--student-epochs", "1", "--out", folder],
                      capsys, "holds files kd-train did not write; refusing to replace it")
    assert (folder / "todo.txt").read_text() == "keep me"


def test_distill_out_dot_is_refused(tmp_path, capsys, monkeypatch):
    shutil.copy(DEMO / "responses.csv", tmp_path / "responses.csv")
    monkeypatch.chdir(tmp_path)
    fails_in_one_line(["distill", "--train", "responses.csv", "--student-epochs", "1", "--out", "."],
                      capsys, "contains the input")
    assert (tmp_path / "responses.csv").is_file()


def test_force_replaces_a_foreign_folder_but_never_an_input(tmp_path, user_folder, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--student-epochs", "1", "--out", str(folder),
                 "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == SCORER_FILES
    capsys.readouterr()
    fails_in_one_line(["distill", "--train", user_folder / "responses.csv", "--student-epochs", "1",
                       "--out", user_folder, "--force"], capsys, "contains the input")
    assert (user_folder / "responses.csv").is_file()


def test_predict_and_label_never_overwrite_their_input(tmp_path, scorer, capsys):
    answers = tmp_path / "answers.csv"
    shutil.copy(DEMO / "test.csv", answers)
    before = answers.read_bytes()
    fails_in_one_line(["predict", "--scorer", scorer, "--input", answers, "--out", answers], capsys, "is also an input")
    samples = write_csv(tmp_path / "s.csv", ["id", "item", "score"], [["a", "q", 1]])
    fails_in_one_line(["label", "--samples", samples, "--out", samples], capsys, "is also an input")
    assert answers.read_bytes() == before and samples.read_text().startswith("id,item,score")


def test_predict_does_not_replace_another_kind_of_file(tmp_path, scorer, capsys):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    fails_in_one_line(["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", notes],
                      capsys, "is not a scores CSV written by kd-train predict")
    assert notes.read_text() == "my,own\n1,2\n"
    out = tmp_path / "scores.csv"
    assert main(["predict", "--scorer", str(scorer), "--input", str(DEMO / "test.csv"), "--out", str(out)]) == 0
    assert main(["predict", "--scorer", str(scorer), "--input", str(DEMO / "test.csv"), "--out", str(out)]) == 0


def test_outputs_inside_an_input_folder_are_refused(tmp_path, scorer, capsys):
    before = snapshot(scorer)
    fails_in_one_line(["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", scorer / "s.csv"],
                      capsys, "is inside the input folder")
    fails_in_one_line(["build", scorer, "--out", scorer / "dist"], capsys, "is inside the input folder")
    fails_in_one_line(["build", scorer, "--out", scorer], capsys, "is also an input")
    assert snapshot(scorer) == before


def test_build_keeps_a_folder_that_merely_holds_a_manifest(tmp_path, scorer, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "my app"}')
    (folder / "index.html").write_text("<p>my page</p>")
    fails_in_one_line(["build", scorer, "--out", folder], capsys, "refusing to replace it")
    assert (folder / "index.html").read_text() == "<p>my page</p>"


@pytest.mark.parametrize("verb", ["teacher", "train", "distill", "evaluate", "build", "demo", "report"])
def test_no_verb_writes_into_a_folder_it_did_not_make(verb, tmp_path, scorer, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "essay.txt").write_text("keep me")
    data = ["--train", DEMO / "responses.csv"]
    args = {
        "teacher": ["teacher", *data, "--out", folder],
        "train": ["train", *data, "--out", folder],
        "distill": ["distill", *data, "--out", folder],
        "evaluate": ["evaluate", "--scorer", scorer, "--test", DEMO / "test.csv", "--out", folder],
        "build": ["build", scorer, "--out", folder],
        "demo": ["demo", "--out", folder, "--no-serve"],
        "report": ["report", folder],
    }[verb]
    message = "is not a folder made by kd-train train" if verb == "report" else "refusing to replace it"
    fails_in_one_line(args, capsys, message)
    assert snapshot(folder) == {"essay.txt": b"keep me"}


@pytest.mark.parametrize("verb", ["label", "predict"])
def test_no_verb_overwrites_a_file_of_another_kind(verb, tmp_path, scorer, capsys):
    mine = tmp_path / "mine.csv"
    mine.write_text("id,item,response,score\n1,q,my answer,2\n")
    samples = write_csv(tmp_path / "s.csv", ["id", "item", "score"], [["a", "q", 1]])
    args = {"label": ["label", "--samples", samples, "--out", mine],
            "predict": ["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", mine]}[verb]
    fails_in_one_line(args, capsys, "refusing to overwrite it")
    assert mine.read_text() == "id,item,response,score\n1,q,my answer,2\n"


# ---- tracebacks that became one line ---------------------------------------------------------------

UNWRITABLE_DIR = "/sys/kd-train-test/out"       # even root cannot create anything under /sys
UNWRITABLE_FILE = "/sys/kd-train-test.csv"


@pytest.mark.parametrize("verb", ["teacher", "label", "train", "distill", "predict", "evaluate", "build", "demo"])
def test_unwritable_out(verb, scorer, capsys):
    data = ["--train", DEMO / "responses.csv"]
    args = {
        "teacher": ["teacher", *data, "--out", UNWRITABLE_DIR],
        "label": ["label", "--samples", DEMO / "responses.csv", "--out", UNWRITABLE_FILE],
        "train": ["train", *data, "--out", UNWRITABLE_DIR],
        "distill": ["distill", *data, "--out", UNWRITABLE_DIR],
        "predict": ["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", UNWRITABLE_FILE],
        "evaluate": ["evaluate", "--scorer", scorer, "--test", DEMO / "test.csv", "--out", UNWRITABLE_DIR],
        "build": ["build", scorer, "--out", UNWRITABLE_DIR],
        "demo": ["demo", "--out", UNWRITABLE_DIR, "--no-serve"],
    }[verb]
    fails_in_one_line(args, capsys, "cannot write in /sys")


def test_out_of_the_wrong_type(tmp_path, scorer, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    fails_in_one_line(["distill", "--train", DEMO / "responses.csv", "--out", a_file], capsys, "is a file, not a folder")
    fails_in_one_line(["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", tmp_path],
                      capsys, "is a folder; give --out a file path")
    fails_in_one_line(["predict", "--scorer", scorer, "--input", DEMO / "test.csv", "--out", a_file / "s.csv"],
                      capsys, "is a file, not a folder")


def test_label_on_a_header_only_file(tmp_path, capsys):
    header_only = write_csv(tmp_path / "h.csv", ["id", "item", "score"], [])
    fails_in_one_line(["label", "--samples", header_only, "--out", tmp_path / "soft.csv"], capsys, "no data rows")
    header_only = write_csv(tmp_path / "r.csv", ["id", "item", "response", "score"], [])
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    fails_in_one_line(["label", "--teacher", teacher, "--input", header_only, "--out", tmp_path / "soft.csv"],
                      capsys, "no data rows")


def test_label_with_a_teacher_folder_without_weights(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    meta = {"item": "demo-ice", "score_values": [0, 1, 2, 3], "question": "", "base_model": "x", "weights_sha256": "",
            "train_sha256": "", "config": {"seed": 0, "folds": 0, "max_length": 32, "with_question": False}}
    (teacher / "teacher.json").write_text(json.dumps(meta))
    fails_in_one_line(["label", "--teacher", teacher, "--input", DEMO / "test.csv", "--out", tmp_path / "soft.csv"],
                      capsys, "holds teacher.json but no model weights")


def resign(folder: Path) -> None:
    write_marker(folder, "scorer")


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "scorer.json").write_text("{oops"), "scorer.json's sha256 does not match"),
    (lambda f: ((f / "scorer.json").write_text("{oops"), resign(f)), "scorer.json is not valid JSON"),
    (lambda f: ((f / "scorer.json").write_text('{"format_version": 1}'), resign(f)), "scorer.json has no"),
    (lambda f: (f / "MODEL_CARD.md").unlink(), "MODEL_CARD.md is missing"),
])
@pytest.mark.parametrize("verb", ["predict", "evaluate", "build"])
def test_damaged_scorer_directory(verb, damage, message, scorer, tmp_path, capsys):
    folder = tmp_path / "s"
    shutil.copytree(scorer, folder)
    damage(folder)
    args = {"predict": ["predict", "--scorer", folder, "--input", DEMO / "test.csv", "--out", tmp_path / "o.csv"],
            "evaluate": ["evaluate", "--scorer", folder, "--test", DEMO / "test.csv", "--out", tmp_path / "ev"],
            "build": ["build", folder, "--out", tmp_path / "dist"]}[verb]
    fails_in_one_line(args, capsys, message)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "dist").exists()


@pytest.mark.parametrize("verb", ["predict", "evaluate", "build"])
def test_reversed_score_values_are_refused(verb, scorer, tmp_path, capsys):
    folder = tmp_path / "s"
    shutil.copytree(scorer, folder)
    info = json.loads((folder / "scorer.json").read_text())
    info["score_values"] = info["score_values"][::-1]
    (folder / "scorer.json").write_text(json.dumps(info))
    args = {"predict": ["predict", "--scorer", folder, "--input", DEMO / "test.csv", "--out", tmp_path / "o.csv"],
            "evaluate": ["evaluate", "--scorer", folder, "--test", DEMO / "test.csv", "--out", tmp_path / "ev"],
            "build": ["build", folder, "--out", tmp_path / "dist"]}[verb]
    fails_in_one_line(args, capsys, "scorer.json's sha256 does not match")


def test_evaluate_refuses_scores_outside_the_scorers_range(scorer, tmp_path, capsys):
    rows = [["t1", "demo-ice", "heat flows", 2], ["t2", "demo-ice", "metal conducts", 7]]
    test = write_csv(tmp_path / "t.csv", ["id", "item", "response", "score"], rows)
    fails_in_one_line(["evaluate", "--scorer", scorer, "--test", test, "--out", tmp_path / "ev"],
                      capsys, "t.csv, row 3, column 'score': score 7 is not one of the scorer's score values")


def test_nul_bytes_and_oversized_fields_are_named(tmp_path, scorer, capsys):
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"id,item,response\na1,demo-ice,heat\x00flows\n")
    fails_in_one_line(["predict", "--scorer", scorer, "--input", nul, "--out", tmp_path / "o.csv"],
                      capsys, "line 2, character 17 is a NUL character")
    big = tmp_path / "big.csv"
    big.write_text('id,item,response\na1,demo-ice,"' + "x" * (17 * 1024 * 1024) + "\n")
    fails_in_one_line(["predict", "--scorer", scorer, "--input", big, "--out", tmp_path / "o.csv"],
                      capsys, "a field is longer than 16 MB")


# ---- leftovers of killed runs ----------------------------------------------------------------------

def test_leftovers_of_killed_runs_are_removed_and_reported(tmp_path, capsys):
    out = tmp_path / "scorer"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = [tmp_path / f".scorer.kd-train-tmp-{dead.pid}-x1y2z3", tmp_path / ".scorer.abcd_123",
              tmp_path / ".scorer.partial"]
    alive = tmp_path / f".scorer.kd-train-tmp-{os.getpid()}-busy"   # this process's: still running
    for folder in [*killed, alive]:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--student-epochs", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for folder in killed:
        assert not folder.exists() and f"removed {folder}, left behind by an interrupted run" in err
    assert alive.exists()


# ---- item ids are not paths ------------------------------------------------------------------------

def test_item_ids_with_path_characters_train_and_build_into_safe_folders(tmp_path, tiny_model, capsys):
    ids = ["../../escape", "Frage 7: Käufe / wer bezahlt? ", "a:b"]
    rows = []
    for n, item in enumerate(ids):
        rows += [[f"{n}-{i}", item, text, score] for i, (text, score) in
                 enumerate([("heat flows through the metal", 2), ("no idea", 0), ("metal is cold", 1)] * 6)]
    train = write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows)
    out = tmp_path / "runs" / "mine"
    assert main(["train", "--train", str(train), "--model", str(tiny_model), "--epochs", "1", "--max-length", "16",
                 "--student-epochs", "2", "--out", str(out)]) == 0
    made = sorted(p for p in out.rglob("scorer.json"))
    assert len(made) == len(ids)
    for path in made:
        assert path.resolve().is_relative_to(out.resolve())
        folder = path.parent.parent.name
        assert not set(folder) & set('/\\:?* ') and ".." not in folder and not folder.endswith((" ", "."))
    assert {json.loads(p.read_text())["item"] for p in made} == {i.strip() for i in ids}
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs" / "escape").exists()
    dist = tmp_path / "dist"
    assert main(["build", *[str(p.parent) for p in made], "--out", str(dist)]) == 0
    manifest = json.loads((dist / "manifest.json").read_text())
    assert sorted(manifest["items"]) == sorted(i.strip() for i in ids)
    for item, folder in manifest["folders"].items():
        assert (dist / "scorers" / folder / "scorer.json").is_file()
        assert json.loads((dist / "scorers" / folder / "scorer.json").read_text())["item"] == item


# ---- Ctrl+C ----------------------------------------------------------------------------------------

def _hold_ctrl_c() -> None:
    """In the child before it runs Python: SIGINT stays pending until kd-train has taken it over."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _ctrl_c_taken_over(pid: int) -> bool:
    """kd_train/__init__.py unblocks SIGINT once its handler is in place (/proc: the signal mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:   # gone already
        return True
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    return not mask & (1 << (signal.SIGINT - 1))


class Stderr:
    """The child's stderr read line by line in a thread, so that a test can wait for a line."""

    def __init__(self, process: subprocess.Popen):
        import threading

        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process) -> None:
        for line in process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)   # end of the stream
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        """True when a line holding ``text`` came; False when the stream ended without one."""
        with self.changed:
            done = self.changed.wait_for(lambda: None in self.lines or any(text in x for x in self.lines if x),
                                         timeout=timeout)
            assert done, f"no line with {text!r} in {timeout} s: {self.lines}"
            return any(text in x for x in self.lines if x)

    def text(self) -> str:
        self.thread.join(timeout=60)
        return "".join(x for x in self.lines if x)


def start_distill(tmp_path: Path, *extra: str, module: bool = True, hold: bool = True) -> subprocess.Popen:
    out = tmp_path / "scorer"
    command = [sys.executable, "-m", "kd_train.cli"] if module else [str(Path(sys.executable).parent / "kd-train")]
    return subprocess.Popen([*command, "distill", "--train", str(DEMO / "responses.csv"), *extra, "--out", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_hold_ctrl_c if hold else None, env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_interrupted_cleanly(run: subprocess.Popen, err: str, tmp_path: Path) -> None:
    assert "Traceback" not in err and run.returncode == 130, (run.returncode, err)
    assert err.strip().splitlines()[-1] == "kd-train distill: interrupted; nothing half-written was left behind", err
    assert [p.name for p in tmp_path.iterdir()] == []


LONG = ("--student-epochs", "500", "--student-patience", "500")


@pytest.mark.slow
@pytest.mark.parametrize("module", [True, False], ids=["python -m kd_train.cli", "kd-train"])
def test_ctrl_c_while_modules_import_ends_cleanly(module, tmp_path):
    """SIGINT the moment kd-train has taken Ctrl+C over: it is still importing (torch takes seconds)."""
    if not module and not (Path(sys.executable).parent / "kd-train").is_file():
        pytest.skip("the kd-train console script is not installed beside this Python")
    run = start_distill(tmp_path, *LONG, module=module)
    while not _ctrl_c_taken_over(run.pid) and run.poll() is None:
        time.sleep(0.001)   # polling for the event: SIGINT unblocked
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert_interrupted_cleanly(run, err, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_ctrl_c_at_any_moment_ends_cleanly(seed, tmp_path):
    """SIGINT at a random moment of the run: while libraries load, the data is read or the student trains.
    Whatever the moment (and however loaded the machine), exit 130, one line, nothing left behind."""
    import random

    run = start_distill(tmp_path, *LONG)
    stderr = Stderr(run)
    while not _ctrl_c_taken_over(run.pid) and run.poll() is None:
        time.sleep(0.001)
    time.sleep(random.Random(seed).uniform(0, 3))   # a random moment, not a guess of when a stage runs
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    assert_interrupted_cleanly(run, stderr.text(), tmp_path)


@pytest.mark.slow
def test_ctrl_c_while_the_student_trains_ends_cleanly(tmp_path):
    run = start_distill(tmp_path, *LONG, hold=False)
    stderr = Stderr(run)
    assert stderr.wait_for("training the student")
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    assert_interrupted_cleanly(run, stderr.text(), tmp_path)


@pytest.mark.slow
def test_ctrl_c_after_done_changes_nothing(tmp_path):
    run = start_distill(tmp_path, "--student-epochs", "1", hold=False)
    stderr = Stderr(run)
    assert stderr.wait_for("done in")
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    err = stderr.text()
    assert "Traceback" not in err and run.returncode == 0, (run.returncode, err)
    assert sorted(p.name for p in (tmp_path / "scorer").iterdir()) == SCORER_FILES


# ---- one length limit for every verb (issue 28) ----------------------------------------------------

def test_evaluate_refuses_over_long_answers_like_predict_and_leaves_them_out_of_the_qwk(scorer, tmp_path, capsys):
    import csv

    with open(DEMO / "test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[1:21]
    long = [["long1", "demo-ice", "heat " * 5000, 2], ["long2", "demo-ice", "metal " * 4000, 0],
            ["long3", "other-item", "an answer to another question " * 1000, 1]]
    test = write_csv(tmp_path / "t.csv", ["id", "item", "response", "score"], rows + long)
    assert main(["evaluate", "--scorer", str(scorer), "--test", str(test), "--out", str(tmp_path / "ev")]) == 0
    captured = capsys.readouterr()
    assert "2 answer(s) over 20,000 characters refused (not scored and not counted in the metrics" in captured.err
    assert "n=20 " in captured.out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["per_item"]["demo-ice"]["refused"] == 2
    assert report["per_item"]["demo-ice"]["models"]["shipped"]["test"]["n"] == 20
    # predict leaves the same two blank and says why, also for a scorer written before detectors existed
    old = tmp_path / "old"
    shutil.copytree(scorer, old)
    info = json.loads((old / "scorer.json").read_text())
    info["detectors"] = None
    (old / "scorer.json").write_text(json.dumps(info))
    resign(old)
    for folder in (scorer, old):
        out = tmp_path / f"{folder.name}.csv"
        assert main(["predict", "--scorer", str(folder), "--input", str(test), "--out", str(out)]) == 0
        with open(out, encoding="utf-8", newline="") as fh:
            scored = {r[0]: r for r in list(csv.reader(fh))[1:]}
        assert scored["long1"][2] == "" and scored["long1"][-1] == "refused" and scored["long2"][2] == ""


def test_training_verbs_refuse_an_answer_no_verb_would_score(tmp_path, capsys):
    rows = toy_rows(30) + [["x", "q1", "word " * 4001, 1]]
    train = write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows)
    fails_in_one_line(["distill", "--train", train, "--out", tmp_path / "o"], capsys,
                      "train.csv, row 32, column 'response': the answer is 20,005 characters long, over the 20,000")
    (tmp_path / "teacher").mkdir()
    fails_in_one_line(["label", "--teacher", tmp_path / "teacher", "--input", train, "--out", tmp_path / "s.csv"], capsys,
                      "the answer is 20,005 characters long")


def test_predict_accepts_and_ignores_a_score_column(scorer, tmp_path):
    answers = write_csv(tmp_path / "a.csv", ["id", "item", "response", "score"],
                        [["1", "demo-ice", "heat flows from the metal", "n/a"], ["2", "demo-ice", "no idea", ""]])
    assert main(["predict", "--scorer", str(scorer), "--input", str(answers), "--out", str(tmp_path / "o.csv")]) == 0
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 3


def test_predict_says_what_it_does_on_many_answers(scorer, tmp_path, capsys, monkeypatch):
    from kd_train import cli

    monkeypatch.setattr(cli, "MANY_ANSWERS", 10)
    assert main(["predict", "--scorer", str(scorer), "--input", str(DEMO / "test.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err
    assert "checking 100 answers for text the scorer should not judge" in err and "scoring 100 answers" in err
