"""The wheel: it holds the page's sources (web/ as kd_train/web/) and the demo item (examples/demo/ as
kd_train/demo/), not web/node_modules, and an installed kd-train builds the page without a checkout."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from web_support import REPO, make_scorer, node_modules

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "kd_train", "web", "examples")   # what a wheel is built from


def _ignore(folder, names):
    return [n for n in names if n in ("node_modules", "__pycache__") or n.endswith((".so", ".pyc"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (so the checkout gets no build/ folder), with pip, offline."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=_ignore)
        else:
            shutil.copy2(REPO / name, src / name)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(out)], cwd=src, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    (found,) = out.glob("kd_train-*.whl")
    return found


def test_the_wheel_holds_the_page_and_the_demo_but_no_node_modules(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    page = {p.name for p in (REPO / "web" / "page").iterdir() if p.is_file()}
    assert {f"kd_train/web/page/{name}" for name in page} <= names
    assert {f"kd_train/web/{name}" for name in ("AUDIT.md.j2", "vendor-urls.json", "stdlib-keep.json", "package.json",
                                                 "package-lock.json", "make-snapshot.mjs")} <= names
    assert {f"kd_train/web/licenses/{p.name}" for p in (REPO / "web" / "licenses").iterdir()} <= names
    assert {f"kd_train/demo/{name}" for name in ("responses.csv", "items.csv", "test.csv", "unlabeled.csv")} <= names
    assert {"kd_train/bundle.py", "kd_train/featurize.py", "kd_train/detect.py",
            "kd_train/templates/MODEL_CARD.md.j2"} <= names
    assert not any("node_modules" in n for n in names)
    assert not any(n.startswith(("web/", "examples/", "build.py", "tests/")) for n in names)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("kd_train/demo/responses.csv") == (REPO / "examples" / "demo" / "responses.csv").read_bytes()


def test_an_installed_wheel_builds_the_page_without_a_checkout(wheel, tmp_path):
    modules = node_modules()
    installed = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(installed)
    scorer = make_scorer(tmp_path / "scorer")
    env = dict(os.environ, PYTHONPATH=str(installed), KD_TRAIN_NODE_MODULES=str(modules))

    def kd_train(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kd_train.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env)

    where = subprocess.run([sys.executable, "-c", "import kd_train.bundle as b, kd_train.cli_training as c; "
                            "print(b.__file__); print(b.WEB); print(c.demo_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.stdout.split("\n")[:3] == [str(installed / "kd_train" / "bundle.py"), str(installed / "kd_train" / "web"),
                                            str(installed / "kd_train" / "demo")], where.stderr
    run = kd_train("build", str(scorer), "--out", "dist")
    assert run.returncode == 0, run.stderr
    digest = hashlib.sha256((tmp_path / "dist" / "index.html").read_bytes()).hexdigest()
    assert f"bundle digest (sha256 of index.html, which pins manifest.json and through it every file): {digest}" in run.stdout
    assert (tmp_path / "dist" / "featurize.py").read_bytes() == (installed / "kd_train" / "featurize.py").read_bytes()
    assert (tmp_path / "dist" / "main.js").read_bytes() == (REPO / "web" / "page" / "main.js").read_bytes()
    verified = kd_train("verify", "dist", "--digest", digest)
    assert verified.returncode == 0 and "start-up snapshot: re-made from the bundle's own files: identical" in verified.stdout

    env.pop("KD_TRAIN_NODE_MODULES")   # no npm packages anywhere and no npm: one line that names the fix
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PATH=str(tmp_path / "no-npm"))
    run = kd_train("build", str(scorer), "--out", "dist2")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "npm is not installed" in run.stderr and "KD_TRAIN_NODE_MODULES" in run.stderr
    assert not (tmp_path / "dist2").exists()
