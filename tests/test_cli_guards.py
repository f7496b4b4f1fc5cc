"""Every verb against the inputs that used to lose files or print tracebacks: each ends in exit 2 and
one line on stderr, and leaves every file it was given as it was."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO, REPO, toy_rows, write_csv
from kd_train import runtime
from kd_train.cli import main
from kd_train.files import write_marker
from web_support import node_modules

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


def edit_scorer(folder: Path, change) -> None:
    """Change scorer.json and re-hash it in kd-train.json, as someone who also knows the integrity rule would."""
    info = json.loads((folder / "scorer.json").read_text())
    change(info)
    (folder / "scorer.json").write_text(json.dumps(info))
    resign(folder)


@pytest.mark.parametrize("verb, change, message", [
    ("evaluate", lambda i: i["model"].pop("params"), "scorer.json's model.params None is not a whole number"),
    ("evaluate", lambda i: i.update(fit_for_use=False, unfit_reasons=5), "scorer.json's unfit_reasons 5 is not a list"),
    ("evaluate", lambda i: i.update(question=["q"]), "scorer.json's question ['q'] is not a string"),
    ("predict", lambda i: i["model"].update(bytes="many"), "scorer.json's model.bytes 'many' is not a whole number"),
    ("build", lambda i: i.update(review_threshold="high"), "scorer.json's review_threshold 'high' is not a number"),
    ("build", lambda i: i.update(quality="good"), "scorer.json's quality 'good' is not an object"),
    ("build", lambda i: i["model"].update(sha256=5), "scorer.json's model.sha256 5 is not 64 hex digits"),
    ("build", lambda i: i.update(fit_for_use="yes"), "scorer.json's fit_for_use 'yes' is not true, false or null"),
])
def test_rehashed_bad_fields_of_scorer_json_are_named(verb, change, message, scorer, tmp_path, capsys):
    folder = tmp_path / "s"
    shutil.copytree(scorer, folder)
    edit_scorer(folder, change)
    args = {"predict": ["predict", "--scorer", folder, "--input", DEMO / "test.csv", "--out", tmp_path / "o.csv"],
            "evaluate": ["evaluate", "--scorer", folder, "--test", DEMO / "test.csv", "--out", tmp_path / "ev"],
            "build": ["build", folder, "--out", tmp_path / "dist"]}[verb]
    err = fails_in_one_line(args, capsys, message)
    assert "re-run kd-train distill" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


@pytest.fixture(scope="module")
def bundle_dir(scorer, tmp_path_factory) -> Path:
    node_modules()
    out = tmp_path_factory.mktemp("bundle") / "dist"
    assert main(["build", str(scorer), "--out", str(out), "--no-snapshot"]) == 0
    return out


def edit_manifest(dist: Path, change) -> None:
    """Change manifest.json and pin its new digest in index.html: the bundle checks out against itself."""
    import hashlib

    manifest = json.loads((dist / "manifest.json").read_text())
    change(manifest)
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    (dist / "manifest.json").write_bytes(data)
    page = (dist / "index.html").read_text()
    page = re.sub(r'(name="kd-bundle-digest" content=")[0-9a-f]{64}', rf"\g<1>{hashlib.sha256(data).hexdigest()}", page)
    (dist / "index.html").write_text(page)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["files"].update({"../../../../../../../../etc/hostname": {"sha256": "0" * 64, "bytes": 1}}),
     "lists '../../../../../../../../etc/hostname', a path outside the bundle"),
    (lambda m: m["files"].update({"/proc/self/environ": {"sha256": "0" * 64, "bytes": 1}}),
     "lists '/proc/self/environ', a path outside the bundle"),
    (lambda m: m["files"].update({"vendor\\..\\..\\x": {"sha256": "0" * 64, "bytes": 1}}), "a path outside the bundle"),
    (lambda m: m["files"].update({"sw.js": "fine"}), "the entry of sw.js is not"),
    (lambda m: m["files"]["sw.js"].update(bytes="12"), "the entry of sw.js is not"),
    (lambda m: m.update(files=["sw.js"]), "its \"files\" is not an object"),
])
def test_verify_refuses_a_manifest_that_reaches_outside_or_is_malformed(change, message, bundle_dir, tmp_path, capsys):
    dist = tmp_path / "dist"
    shutil.copytree(bundle_dir, dist)
    edit_manifest(dist, change)
    fails_in_one_line(["verify", dist], capsys, message)


def test_verify_does_not_follow_a_link_out_of_the_bundle(bundle_dir, tmp_path, capsys):
    import hashlib

    dist = tmp_path / "dist"
    shutil.copytree(bundle_dir, dist)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the reviewer")
    (dist / "notes.txt").symlink_to(secret)
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    edit_manifest(dist, lambda m: m["files"].update({"notes.txt": {"sha256": digest, "bytes": secret.stat().st_size}}))
    fails_in_one_line(["verify", dist], capsys, "notes.txt is a link to")


# ---- a rejected input leaves no output behind ------------------------------------------------------

@pytest.mark.parametrize("verb, bad, message", [
    ("train", ["--train", "{bad}"], "bad.csv"),
    ("train", ["--train", DEMO / "responses.csv", "--augment", "-1"], "--augment must be 0"),
    ("train", ["--train", DEMO / "responses.csv", "--item", "nope"], "--item 'nope' has no answers"),
    ("evaluate", ["--test", "{bad}"], "bad.csv"),
    ("evaluate", ["--test", "{range}"], "score 7 is not one of the scorer's score values"),
])
def test_a_rejected_input_creates_no_out(verb, bad, message, scorer, tmp_path, capsys):
    files = {"{bad}": write_csv(tmp_path / "bad.csv", ["id", "item", "answer"], [["a", "q", "text"]]),
             "{range}": write_csv(tmp_path / "range.csv", ["id", "item", "response", "score"],
                                  [["t1", "demo-ice", "heat flows", 7]])}
    given = sorted(p.name for p in tmp_path.iterdir())
    args = [verb, *(["--scorer", scorer] if verb == "evaluate" else []), *[files.get(a, a) for a in bad],
            "--out", tmp_path / "runs" / "new"]
    fails_in_one_line(args, capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == given


# ---- leftovers of killed runs ----------------------------------------------------------------------

def test_leftovers_of_killed_runs_are_removed_and_everything_else_is_left(tmp_path, capsys):
    out = tmp_path / "scorer"
    killed = [temp_left_by_a_dead_run(out) for _ in range(2)]
    dead = dead_pid()
    mine = [tmp_path / f".scorer.kd-train-tmp-{dead}-x1y2z3", tmp_path / ".scorer.abcd_123",
            tmp_path / ".scorer.partial", tmp_path / f".scorer.kd-train-tmp-{os.getpid()}-busy"]
    for folder in mine:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"mine")
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--student-epochs", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for folder in killed:
        assert not folder.exists() and f"removed {folder}, left behind by an interrupted kd-train run" in err
    for folder in mine:
        assert (folder / "model.onnx").read_bytes() == b"mine"
        assert f"found {folder}, not made by kd-train (or still in use): left alone" in err


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def kd_train(*args, cwd: Path, **popen) -> subprocess.Popen:
    popen.setdefault("preexec_fn", _ctrl_c_as_from_a_terminal)
    return subprocess.Popen([sys.executable, "-m", "kd_train.cli", *map(str, args)], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(run: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    _, err = run.communicate(timeout=timeout)
    return run.returncode, err


def wait_for(run: subprocess.Popen, event, timeout: float = 600) -> bool:
    """Until ``event()`` holds or the run ends (polling; no fixed wait). True when the event came first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if event():
            return True
        if run.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError(f"neither the event nor the end of {run.args} within {timeout} s")


def temp_left_by_a_dead_run(dst: Path) -> Path:
    """What a kd-train run killed while writing ``dst`` leaves: its temporary folder, made by kd-train's code."""
    code = ("import sys; from kd_train.temps import make_temp_dir; "
            "t = make_temp_dir(sys.argv[1]); (t / 'half.bin').write_bytes(b'half'); print(t.parent)")
    done = subprocess.run([sys.executable, "-c", code, str(dst)], env=ENV, capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def dead_pid() -> int:
    run = subprocess.Popen([sys.executable, "-c", "pass"])
    run.wait()
    return run.pid


USER_SHAPES = ["old", "partial", "building.abcd1234", "backup01", "20240101", "abcdefgh.tmp", "abcd_123",
               "kd-train-tmp-{dead}-xyz", "kd-train-tmp-{dead}-0123456789abcdef", "kd-train-tmp-{dead}-partial",
               "kd-train-tmp-{dead}-old", "kd-train-tmp-{dead}-abcdefgh.tmp"]


def verb_args(verb: str, scorer: Path, folder: Path) -> tuple[list, Path, list[Path]]:
    """(arguments, --out, the outputs whose siblings it cleans) of one verb, run in ``folder``."""
    if verb == "build":
        ENV[runtime.NODE_MODULES_ENV] = str(node_modules())   # skips the test where the npm packages are missing
    if verb == "label":
        write_csv(folder / "samples.csv", ["id", "item", "score"], [[f"a{i % 7}", "q", i % 3] for i in range(40)])
    shutil.copy(DEMO / "test.csv", folder / "test.csv")
    shutil.copy(DEMO / "responses.csv", folder / "responses.csv")
    return {
        "predict": (["predict", "--scorer", scorer, "--input", "test.csv", "--out", "s.csv"], "s.csv", ["s.csv"]),
        "label": (["label", "--samples", "samples.csv", "--out", "soft.csv"], "soft.csv", ["soft.csv", "soft.json"]),
        "evaluate": (["evaluate", "--scorer", scorer, "--test", "test.csv", "--out", "ev"], "ev", ["ev"]),
        "build": (["build", scorer, "--out", "dist", "--no-snapshot"], "dist", ["dist"]),
        "distill": (["distill", "--train", "responses.csv", "--student-epochs", "1", "--out", "sc"], "sc", ["sc"]),
    }[verb]


def proven_temps(folder: Path) -> list[str]:
    from kd_train.temps import temp_record

    return sorted(p.name for p in folder.iterdir() if temp_record(p) is not None)


def check_output(verb: str, folder: Path, out: Path) -> None:
    if verb == "predict":
        assert out.read_text().startswith("id,item,score") and out.read_text().count("\n") == 101
    elif verb == "label":
        assert out.read_text().startswith("id,item,p_") and json.loads((folder / "soft.json").read_text())
    elif verb == "evaluate":
        report = json.loads((out / "report.json").read_text())
        assert f"Command: `{report['command']}`" in (out / "report.md").read_text()
    elif verb == "build":
        assert main(["verify", str(out)]) == 0
    else:
        assert sorted(p.name for p in out.iterdir()) == SCORER_FILES


def entries(folder: Path) -> int:
    try:
        return len(list(folder.iterdir()))
    except OSError:   # removed meanwhile
        return 0


def holds_lock(run: subprocess.Popen, folder: Path, out: str) -> bool:
    """The run has taken its lock on ``out``: the lock file names it (written once the flock is held)."""
    try:
        return json.loads((folder / f".{out}.kd-train-lock").read_text())["pid"] == run.pid
    except (OSError, ValueError, KeyError):
        return False


# the moments a run is killed at: each an event it reaches (or its end, whichever comes first)
KILL_AT = {
    "start": lambda folder, out: True,
    "lock taken": lambda folder, out: any(p.name.endswith(".kd-train-lock") for p in folder.iterdir()),
    "temporary made": lambda folder, out: any(".kd-train-tmp-" in p.name for p in folder.iterdir()
                                              if p.name.startswith(f".{out}.")),
    "temporary filled": lambda folder, out: any(entries(p) > 1 for p in folder.iterdir()
                                                if p.name.startswith(f".{out}.kd-train-tmp-")),
    "output in place": lambda folder, out: (folder / out).exists(),
}


@pytest.mark.parametrize("verb", ["predict", "label", "evaluate", "build", "distill"])
def test_killed_runs_lose_no_user_file_and_their_leftovers_go_with_the_next_run(verb, scorer, tmp_path, capsys):
    """User files and folders with every name the clean-up ever matched sit beside the output; runs are killed
    (SIGKILL) at random moments; the next run completes, removes every leftover of the killed ones, and
    leaves every user file as it was."""
    rng = random.Random(f"kill-{verb}")
    args, out, outputs = verb_args(verb, scorer, tmp_path)
    dead = dead_pid()
    user = {}
    for name in outputs:
        for shape in USER_SHAPES:
            path = tmp_path / f".{name}.{shape.format(dead=dead)}"
            if rng.random() < 0.5:
                path.write_text(f"mine: {path.name}")
                user[path] = f"mine: {path.name}"
            else:
                path.mkdir()
                (path / "notes.txt").write_text("mine too")
                user[path / "notes.txt"] = "mine too"
    given = snapshot(tmp_path)
    for _ in range(3):
        moment = rng.choice(sorted(KILL_AT))
        run = kd_train(*args, cwd=tmp_path)
        wait_for(run, lambda: KILL_AT[moment](tmp_path, out))
        run.kill()
        run.communicate()
    left = [temp_left_by_a_dead_run(tmp_path / name) for name in outputs]   # at least one leftover for sure
    leftovers = proven_temps(tmp_path)
    assert set(p.name for p in left) <= set(leftovers)
    code, err = finish(kd_train(*args, cwd=tmp_path))
    assert code == 0, err
    for name in leftovers:
        assert f"removed {name}, left behind by an interrupted kd-train run" in err      # --out is relative here
    assert proven_temps(tmp_path) == [] and not any(p.name.endswith(".kd-train-lock") for p in tmp_path.iterdir())
    for path, text in user.items():
        assert path.read_text() == text
    now = snapshot(tmp_path)
    assert {k: v for k, v in now.items() if k in given} == given      # nothing that was there has changed
    check_output(verb, tmp_path, tmp_path / out)


def held_by_a_pipe(verb: str, args: list, folder: Path) -> tuple[list, Path, bytes]:
    """The run's arguments with one file it reads after taking its lock made a named pipe, so that it holds the
    lock until the test writes the file's content into the pipe: (arguments, pipe, content)."""
    if verb in ("predict", "evaluate"):                # the answers, read once
        pipe = folder / "answers.csv"
        os.mkfifo(pipe)
        return [pipe if a == "test.csv" else a for a in args], pipe, (folder / "test.csv").read_bytes()
    real = node_modules()                           # build: pyodide.mjs, read after the lock is taken
    modules = folder / "node_modules"
    (modules / "pyodide").mkdir(parents=True)
    for entry in (real / "pyodide").iterdir():
        if entry.name != "pyodide.mjs":
            (modules / "pyodide" / entry.name).symlink_to(entry)
    for entry in real.iterdir():
        if entry.name != "pyodide":
            (modules / entry.name).symlink_to(entry)
    pipe = modules / "pyodide" / "pyodide.mjs"
    os.mkfifo(pipe)
    return args, pipe, (real / "pyodide" / "pyodide.mjs").read_bytes()


def feed(pipe: Path, data: bytes, reader: subprocess.Popen) -> None:
    """Write ``data`` into the named pipe once ``reader`` opens it (failing, not hanging, if it has ended)."""
    while True:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:                              # ENXIO: not opened for reading yet
            assert reader.poll() is None, finish(reader)
            time.sleep(0.002)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@pytest.mark.parametrize("verb", ["predict", "evaluate", "build"])
def test_a_second_run_into_the_same_out_is_refused_while_the_first_completes(verb, scorer, tmp_path):
    args, out, _ = verb_args(verb, scorer, tmp_path)
    first_args, pipe, content = held_by_a_pipe(verb, args, tmp_path)
    env = {**ENV, runtime.NODE_MODULES_ENV: str(tmp_path / "node_modules")} if verb == "build" else ENV
    first = subprocess.Popen([sys.executable, "-m", "kd_train.cli", *map(str, first_args)], cwd=tmp_path, env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(first, lambda: holds_lock(first, tmp_path, out)), finish(first)
        code, err = finish(kd_train(*args, cwd=tmp_path))   # while the first waits on the pipe, holding its lock
        feed(pipe, content, first)
        first_code, first_err = finish(first, timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"kd-train {verb}: error: another kd-train run \(pid {first.pid}, started [0-9: -]+\) is "
                        rf"writing to {out}; wait for it to finish or choose another --out", line), err
    assert first_code == 0, first_err
    check_output(verb, tmp_path, tmp_path / out)
    assert proven_temps(tmp_path) == [] and not (tmp_path / f".{out}.kd-train-lock").exists()


def test_ctrl_c_while_evaluate_writes_its_report_keeps_the_earlier_report_whole(scorer, tmp_path, capsys, monkeypatch):
    from kd_train import report as report_module

    out = tmp_path / "ev"
    assert main(["evaluate", "--scorer", str(scorer), "--test", str(DEMO / "test.csv"), "--out", str(out)]) == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):              # after report.json is written, before report.md
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "markdown_report", interrupted)
    test = tmp_path / "t.csv"
    shutil.copy(DEMO / "test.csv", test)
    assert main(["evaluate", "--scorer", str(scorer), "--test", str(test), "--out", str(out)]) == 130
    assert snapshot(out) == before and proven_temps(tmp_path) == [] and proven_temps(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev", "t.csv"]


def test_ctrl_c_while_a_train_folders_report_is_written_keeps_the_earlier_one_whole(scorer, tmp_path, monkeypatch):
    from kd_train import report as report_module

    out = tmp_path / "run"
    assert main(["evaluate", "--scorer", str(scorer), "--test", str(DEMO / "test.csv"), "--out", str(out)]) == 0
    reports = list(json.loads((out / "report.json").read_text())["per_item"].values())
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "plot_confusions", interrupted)   # report.json already written, report.md not
    with pytest.raises(KeyboardInterrupt):
        report_module.write_report(reports, out, "kd-train train (again)", 1.0)
    assert snapshot(out) == before and not [p for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    left = temp_left_by_a_dead_run(out / "report")        # a run killed (not interrupted) while it wrote its report
    report_module.write_report(reports, out, "kd-train train (again)", 1.0)
    assert not left.exists() and json.loads((out / "report.json").read_text())["command"] == "kd-train train (again)"
    assert "Command: `kd-train train (again)`" in (out / "report.md").read_text()


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

def _ctrl_c_as_from_a_terminal() -> None:
    """In the child before it runs Python: SIGINT's default action, as a program started from a terminal has
    it (a test run started in the background by a shell inherits SIGINT ignored, and so would kd-train)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _hold_ctrl_c() -> None:
    """In the child before it runs Python: SIGINT stays pending until kd-train has taken it over."""
    _ctrl_c_as_from_a_terminal()
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
                            preexec_fn=_hold_ctrl_c if hold else _ctrl_c_as_from_a_terminal, env={**os.environ, "PYTHONPATH": str(REPO)})


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
    from kd_train import cli_scoring

    monkeypatch.setattr(cli_scoring, "MANY_ANSWERS", 10)
    assert main(["predict", "--scorer", str(scorer), "--input", str(DEMO / "test.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err
    assert "checking 100 answers for text the scorer should not judge" in err and "scoring 100 answers" in err
