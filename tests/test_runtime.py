"""Where the bundler gets the npm packages pyodide and onnxruntime-web: $KD_TRAIN_NODE_MODULES, the checkout's
web/node_modules, else a per-user cache that `npm ci` fills once (here with a stand-in npm, no network)."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from kd_train import runtime
from kd_train.data import UserError

PINNED = json.loads((runtime.WEB / "package.json").read_text(encoding="utf-8"))["dependencies"]

# A stand-in for npm: records its arguments, then installs the pinned versions (or fails like npm does).
FAKE_NPM = """#!/bin/sh
echo "$@" >> "{log}"
[ -f package-lock.json ] || exit 9
if [ -n "{fail}" ]; then
  echo "npm error code ENOTFOUND" >&2
  echo "npm error network request to the registry failed, reason: getaddrinfo ENOTFOUND" >&2
  exit 1
fi
{installs}
"""


def fake_npm(folder, log, fail=False):
    folder.mkdir()
    installs = "\n".join(f'mkdir -p node_modules/{name} && echo \'{{"version": "{version}"}}\' > '
                         f"node_modules/{name}/package.json" for name, version in PINNED.items())
    npm = folder / "npm"
    npm.write_text(FAKE_NPM.format(log=log, fail="yes" if fail else "", installs=installs))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.fixture
def no_checkout(tmp_path, monkeypatch):
    """As an installed wheel sees it: no checkout's web/node_modules, no $KD_TRAIN_NODE_MODULES, an empty cache."""
    monkeypatch.setattr(runtime, "CHECKOUT", tmp_path / "site-packages")
    monkeypatch.delenv(runtime.NODE_MODULES_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_the_cache_is_filled_once_by_npm_ci(no_checkout, monkeypatch, capsys):
    log = no_checkout / "npm.log"
    monkeypatch.setenv("PATH", f"{fake_npm(no_checkout / 'bin', log)}:/usr/bin:/bin")
    lock = hashlib.sha256((runtime.WEB / "package-lock.json").read_bytes()).hexdigest()[:12]
    cache = no_checkout / "cache" / "kd-train" / f"npm-{lock}"
    assert runtime.node_modules(fetch=False) is None and not cache.exists()

    found = runtime.node_modules()
    assert found == cache / "node_modules"
    assert log.read_text() == "ci --ignore-scripts --no-audit --no-fund\n"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "npm ci" in err and str(cache) in err and "once" in err
    assert (cache / "package-lock.json").read_bytes() == (runtime.WEB / "package-lock.json").read_bytes()
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]        # renamed into place, nothing left
    for name in PINNED:
        assert runtime.package_info(name, found)["version"] == PINNED[name]

    assert runtime.node_modules() == found                                      # the second time: no npm, no line
    assert log.read_text().count("\n") == 1 and capsys.readouterr().err == ""


def test_npm_missing_or_failing_is_one_line_naming_the_fix(no_checkout, monkeypatch):
    monkeypatch.setenv("PATH", str(no_checkout / "empty"))
    with pytest.raises(UserError, match="npm is not installed: install Node.js with npm") as err:
        runtime.node_modules()
    assert runtime.NODE_MODULES_ENV in str(err.value) and "\n" not in str(err.value)

    monkeypatch.setenv("PATH", f"{fake_npm(no_checkout / 'bin', no_checkout / 'npm.log', fail=True)}:/usr/bin:/bin")
    with pytest.raises(UserError, match=r"'npm ci' could not fetch .*\(npm error network request to the registry "
                                        r"failed, reason: getaddrinfo ENOTFOUND\): check the network") as err:
        runtime.node_modules()
    assert "\n" not in str(err.value)
    assert not os.listdir(no_checkout / "cache" / "kd-train")                  # no cache, no half-made folder


def test_the_environment_variable_comes_first_and_is_checked(no_checkout, monkeypatch):
    mine = no_checkout / "mine"
    (mine / "pyodide").mkdir(parents=True)
    (mine / "pyodide" / "package.json").write_text('{"version": "0.0.1"}')
    monkeypatch.setenv(runtime.NODE_MODULES_ENV, str(mine))
    assert runtime.node_modules() == mine
    with pytest.raises(UserError, match=rf"\${runtime.NODE_MODULES_ENV}\) has pyodide 0.0.1, web/package.json "
                                        rf"pins {PINNED['pyodide']}"):
        runtime.package_info("pyodide", mine)
    with pytest.raises(UserError, match="onnxruntime-web/package.json is missing: point"):
        runtime.package_info("onnxruntime-web", mine)


def test_a_checkout_uses_its_own_web_node_modules(tmp_path, monkeypatch):
    monkeypatch.delenv(runtime.NODE_MODULES_ENV, raising=False)
    monkeypatch.setattr(runtime, "CHECKOUT", tmp_path)
    (tmp_path / "web" / "node_modules").mkdir(parents=True)
    (tmp_path / "web" / "package-lock.json").write_text("{}")
    assert runtime.node_modules(fetch=False) == tmp_path / "web" / "node_modules"
    with pytest.raises(UserError, match=r"pyodide/package.json is missing: run 'npm ci' in web/ \(or 'make setup'\)"):
        runtime.package_info("pyodide", tmp_path / "web" / "node_modules")
