"""The bundler (kd_train/bundle.py; build.py runs it): verified inputs, byte-identical and atomic output, manifest,
URL scan; kd-train serve and verify."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from kd_train import bundle, runtime
from kd_train.data import UserError
from kd_train.files import write_marker
from web_support import REPO, make_scorer, need_node_modules, node_modules, second_item, tree


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory):
    need_node_modules()
    return make_scorer(tmp_path_factory.mktemp("scorer") / "demo-ice")


@pytest.fixture(scope="module")
def dist(scorer_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "dist"
    bundle.build([scorer_dir], out, report_sizes=False)
    return out


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_two_builds_are_byte_identical(scorer_dir, dist, tmp_path):
    report = bundle.build([scorer_dir], tmp_path / "again", report_sizes=True)
    assert tree(tmp_path / "again") == tree(dist)
    raw = sum(len(b) for b in tree(dist).values())
    assert report["sizes"]["raw"] == raw
    assert 0 < report["sizes"]["brotli"] < report["sizes"]["gzip"] < raw
    assert 0 < report["sizes"]["snapshot_brotli"] < report["sizes"]["brotli"]
    bundle.build([scorer_dir], tmp_path / "again", report_sizes=False)     # rebuilding in place
    assert tree(tmp_path / "again") == tree(dist)
    assert leftovers(tmp_path) == []


def test_manifest_lists_every_file_with_its_hash(dist, scorer_dir):
    files = tree(dist)
    manifest_bytes = files.pop("manifest.json")
    manifest = json.loads(manifest_bytes)
    page = files.pop("index.html").decode()                  # the root: pins manifest.json, so not listed in it
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    assert f'<meta name="kd-bundle-digest" content="{digest}">' in page
    assert f'<meta name="kd-bundle-version" content="{manifest["version"]}">' in page
    assert f"<code title=" in page and digest[:16] in page and 'href="scorers/demo-ice/MODEL_CARD.md"' in page
    assert sorted(manifest["files"]) == sorted(files)
    for path, data in files.items():
        assert manifest["files"][path] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, path
    assert manifest["items"] == ["demo-ice"]
    assert files["featurize.py"] == (REPO / "kd_train" / "featurize.py").read_bytes()
    for name in ("model.onnx", "scorer.json", "MODEL_CARD.md"):
        assert files[f"scorers/demo-ice/{name}"] == (scorer_dir / name).read_bytes()
    assert {"vendor/pyodide/pyodide.mjs", "vendor/pyodide/pyodide.asm.wasm", "vendor/pyodide/python_stdlib.zip",
            "vendor/pyodide/pyodide-lock.json", "vendor/ort/ort.wasm.bundle.min.mjs",
            "vendor/ort/ort-wasm-simd-threaded.wasm", "vendor/pyodide/LICENSE", "vendor/ort/LICENSE"} <= set(files)
    assert not any(p.endswith(".map") or p.endswith(".j2") for p in files)
    audit = files["AUDIT.md"].decode()
    for path in files:
        if path != "AUDIT.md":
            assert f"`{path}`" in audit, path


def test_page_has_the_csp_and_nothing_inline_but_its_pinned_watchdog(dist):
    import base64

    html = (dist / "index.html").read_text(encoding="utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{bundle.CSP}">' in html
    watchdog = (bundle.PAGE / bundle.WATCHDOG).read_bytes()
    pin = "sha256-" + base64.b64encode(hashlib.sha256(watchdog).digest()).decode()
    assert bundle.CSP == ("default-src 'self'; script-src 'self' blob: 'wasm-unsafe-eval' "
                          f"'{pin}'; worker-src 'self' blob:; connect-src 'self'; "
                          "object-src 'none'; base-uri 'none'; form-action 'none'")
    assert bundle.CSP_HEADER == bundle.CSP + "; frame-ancestors 'none'"
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ["<script>", f'<script type="module" src="main.js" integrity="{bundle.subresource_integrity((dist / "main.js").read_bytes())}">']
    assert f"<script>{watchdog.decode()}</script>" in html        # byte for byte: the CSP allows it by its hash
    assert "watchdog.js" not in json.loads((dist / "manifest.json").read_text())["files"]
    for name in ("csv.js", "style.css"):                          # pinned by index.html: the browser checks them
        assert f'href="{name}" integrity="{bundle.subresource_integrity((dist / name).read_bytes())}"' in html
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+=", html)
    assert "<form" in html and "action=" not in html              # the watchdog and form-action 'none' stop submits
    assert bundle.CSP_HEADER in (dist / "AUDIT.md").read_text(encoding="utf-8")
    assert f'add_header Content-Security-Policy "{bundle.CSP_HEADER}" always;' in (REPO / "README.md").read_text(
        encoding="utf-8")                                          # the nginx example sends the same header
    for js in ("main.js", "worker.js", "csv.js", "sw.js"):
        text = (dist / js).read_text(encoding="utf-8")
        assert "localStorage" not in text and "indexedDB" not in text and "innerHTML" not in text, js
        assert "eval(" not in text and "new Function" not in text, js


def test_several_items_get_a_picker(scorer_dir, tmp_path):
    other = second_item(scorer_dir, tmp_path / "other", "q-2", "A <b>second</b> question?")
    bundle.build([scorer_dir, other], tmp_path / "out", report_sizes=False)
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert '<option value="demo-ice">demo-ice: Two identical' in html and '<option value="q-2">q-2: A &lt;b&gt;' in html
    assert "A &lt;b&gt;second&lt;/b&gt; question?" in html                    # escaped, not markup
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["items"] == ["demo-ice", "q-2"]
    with pytest.raises(UserError, match="both scorers for item 'demo-ice'"):
        bundle.build([scorer_dir, scorer_dir], tmp_path / "dup", report_sizes=False)


def test_tampered_scorer_is_refused_and_nothing_is_written(scorer_dir, dist, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(scorer_dir, bad)
    model = bytearray((bad / "model.onnx").read_bytes())
    model[-1] ^= 1
    (bad / "model.onnx").write_bytes(bytes(model))
    with pytest.raises(UserError, match="model.onnx's sha256 does not match"):
        bundle.build([bad], tmp_path / "out", report_sizes=False)
    assert not (tmp_path / "out").exists()
    shutil.copytree(dist, tmp_path / "old")
    before = tree(tmp_path / "old")
    with pytest.raises(UserError):
        bundle.build([scorer_dir, bad], tmp_path / "old", report_sizes=False)
    assert tree(tmp_path / "old") == before
    assert leftovers(tmp_path) == []


def test_a_scorer_made_with_another_featurize_py_is_refused(scorer_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(scorer_dir, other)
    info = json.loads((other / "scorer.json").read_text())
    info["featurize_sha256"] = "0" * 64
    (other / "scorer.json").write_text(json.dumps(info))
    write_marker(other, "scorer")   # its files match kd-train.json: only the featurizer differs
    with pytest.raises(UserError, match="refusing to build: .*trained with a different featurize.py"):
        bundle.build([other], tmp_path / "out", report_sizes=False)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_command_line_errors_are_one_line(scorer_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(scorer_dir, bad)
    (bad / "model.onnx").write_bytes(b"not a model")
    run = subprocess.run([sys.executable, str(REPO / "build.py"), str(bad), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("kd-train build: error: refusing to build:")
    assert not (tmp_path / "out").exists()
    from kd_train import cli

    assert cli.main(["build", str(bad), "--out", str(tmp_path / "out")]) == 2
    (tmp_path / "notdist").mkdir()
    (tmp_path / "notdist" / "precious.txt").write_text("keep me")
    assert cli.main(["build", str(scorer_dir), "--out", str(tmp_path / "notdist")]) == 2
    assert (tmp_path / "notdist" / "precious.txt").read_text() == "keep me"


def test_a_third_party_url_fails_the_build(scorer_dir, tmp_path):
    linked = tmp_path / "linked"
    shutil.copytree(scorer_dir, linked)
    info = json.loads((linked / "scorer.json").read_text())
    info["question"] = "Why does ice melt? See https://example.com/hint for a picture."
    (linked / "scorer.json").write_text(json.dumps(info))
    write_marker(linked, "scorer")   # signed off as the scorer's owner would, so only the URL is wrong
    with pytest.raises(UserError, match=r"third-party URL in dist/.*https://example.com/hint"):
        bundle.build([linked], tmp_path / "out", report_sizes=False)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_url_scan_rules():
    assert bundle.find_urls("index.html", b'<img src="//cdn.example.net/x.png">') == ["//cdn.example.net/x.png"]
    assert bundle.find_urls("main.js", b"fetch('wss://evil.example:9/x')") == ["wss://evil.example:9/x"]
    assert bundle.find_urls("main.js", b"// a comment, then ./relative/path.js and 1//2") == []
    assert bundle.find_urls("vendor/x/a.js", b'"//not-checked-in-vendor" "https://checked.example"') == \
        ["https://checked.example"]
    allowed = bundle.read_allowed_urls()
    assert allowed and all(path.startswith("vendor/") for path in allowed)


def test_serve_sends_mime_types_and_csp(dist):
    from kd_train.serve import CSP_HEADER, serve_in_thread

    server, url = serve_in_thread(dist)
    try:
        expected = {
            "": "text/html", "main.js": "text/javascript", "vendor/pyodide/pyodide.mjs": "text/javascript",
            "vendor/ort/ort-wasm-simd-threaded.wasm": "application/wasm", "manifest.json": "application/json",
            "app.webmanifest": "application/manifest+json", "vendor/pyodide/python_stdlib.zip": "application/zip",
        }
        for path, mime in expected.items():
            with urllib.request.urlopen(url + path) as response:
                assert response.headers["Content-Type"].split(";")[0] == mime, path
                assert response.headers["Content-Security-Policy"] == CSP_HEADER
    finally:
        server.shutdown()
        server.server_close()
    assert url.startswith("http://127.0.0.1:")


def test_verify_checks_every_file_against_the_published_digest(dist, tmp_path, capsys):
    from kd_train.cli import main

    digest = hashlib.sha256((dist / "index.html").read_bytes()).hexdigest()     # the published digest
    manifest_digest = hashlib.sha256((dist / "manifest.json").read_bytes()).hexdigest()
    assert bundle.verify(dist, digest)["digest"] == digest
    assert bundle.verify(dist, digest)["manifest_digest"] == manifest_digest
    assert main(["verify", str(dist), "--digest", digest]) == 0
    assert "index.html is the published page" in capsys.readouterr().out
    assert main(["verify", str(dist)]) == 0                                     # without --digest: says so plainly
    out = capsys.readouterr().out
    assert "That is ALL this proved" in out and "--digest" in out and digest in out

    def broken(change) -> str:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(dist, copy)
        change(copy)
        assert main(["verify", str(copy), "--digest", digest]) == 2
        return capsys.readouterr().err

    assert "does not pin manifest.json's digest" in broken(lambda d: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace('"demo-ice"', '"demo-ice2"', 1)))
    assert "scorers/demo-ice/model.onnx does not match manifest.json" in broken(
        lambda d: (d / "scorers" / "demo-ice" / "model.onnx").write_bytes(b"x"))
    assert "does not list" in broken(lambda d: (d / "extra.js").write_text("alert(1)"))
    assert "not the published digest" in broken(lambda d: (d / "index.html").write_text(
        (d / "index.html").read_text().replace(manifest_digest, "0" * 64)))
    assert "listed in manifest.json but missing" in broken(lambda d: (d / "detect.py").unlink())

    from kd_train.serve import serve_in_thread                      # the same check on the served copy
    server, url = serve_in_thread(dist)
    try:
        assert main(["verify", url, "--digest", digest]) == 0
        assert main(["verify", url, "--digest", "0" * 64]) == 2
        assert "not the published digest" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


INDEX_EDITS = {   # edits of index.html that keep its pins: the page's own files all still match
    "a form that sends the answer out": lambda html: html.replace(
        '<label id="answer-label">', '<form action="http://127.0.0.1:9/collect"><input name="a"></form><label id="answer-label">'),
    "a refresh to another host": lambda html: html.replace(
        "<title>", '<meta http-equiv="refresh" content="0; url=http://127.0.0.1:9/"><title>'),
    "the review line lowered": lambda html: re.sub(r'data-review="[0-9.]+"', 'data-review="0.0100"', html),
    "the question text changed": lambda html: html.replace("Explain why.", "Explain why metal is cold."),
}


def test_verify_with_the_digest_refuses_any_edit_of_index_html(dist, tmp_path, capsys):
    """index.html is the page: the published digest is its sha256, so every edit is refused, in a folder and
    served; without --digest the same copies are only consistent, and verify says that is all it proved."""
    from kd_train.cli import main
    from kd_train.serve import serve_in_thread

    digest = hashlib.sha256((dist / "index.html").read_bytes()).hexdigest()
    for n, (what, edit) in enumerate(INDEX_EDITS.items()):
        copy = tmp_path / f"edit{n}"
        shutil.copytree(dist, copy)
        html = (copy / "index.html").read_text(encoding="utf-8")
        assert edit(html) != html, what
        (copy / "index.html").write_text(edit(html), encoding="utf-8")
        if n == 0:                                                       # consistent (verify re-makes the snapshot: once)
            assert main(["verify", str(copy)]) == 0, what
            assert "That is ALL this proved" in capsys.readouterr().out
        assert main(["verify", str(copy), "--digest", digest]) == 2, what    # ... but not the published page
        err = capsys.readouterr().err
        assert "index.html has sha256" in err and "not the published digest" in err, what
        with pytest.raises(UserError, match="index.html has sha256 .* not the published digest"):
            bundle.verify(copy, digest)
        server, url = serve_in_thread(copy)
        try:
            with pytest.raises(UserError, match="index.html has sha256 .* not the published digest"):
                bundle.verify(url, digest)
            assert main(["verify", url, "--digest", digest]) == 2, what
            if n == 0:
                assert bundle.verify(url)["published"] is False
        finally:
            server.shutdown()
            server.server_close()


def test_the_standard_library_is_trimmed_to_what_the_page_uses(dist, tmp_path, monkeypatch):
    import io
    import zipfile

    shipped = zipfile.ZipFile(io.BytesIO((dist / "vendor" / "pyodide" / "python_stdlib.zip").read_bytes())).namelist()
    full = (node_modules() / "pyodide" / "python_stdlib.zip").stat().st_size
    assert (dist / "vendor" / "pyodide" / "python_stdlib.zip").stat().st_size < full / 2
    keep = json.loads((REPO / "web" / "stdlib-keep.json").read_text())["files"]
    assert set(keep) <= set(shipped) and "encodings/utf_8.py" in shipped and "email/__init__.py" not in shipped
    bogus = tmp_path / "keep.json"
    bogus.write_text(json.dumps({"files": keep + ["no_such_module.py"]}))
    monkeypatch.setattr(runtime, "STDLIB_KEEP", bogus)
    with pytest.raises(UserError, match="no_such_module.py"):
        runtime.trimmed_stdlib((node_modules() / "pyodide" / "python_stdlib.zip").read_bytes())


@pytest.mark.slow
def test_the_start_up_snapshot_is_reproducible_and_holds_nothing_of_the_machine(dist, tmp_path, monkeypatch):
    """Made twice from scratch (no cache), in folders named differently: the same bytes, and neither the
    build's paths nor its host name inside; its start is the page's own (worker.py, featurize.py, detect.py)."""
    files = tree(dist)
    made = []
    for name in ("first-cache", "second-cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name))
        python = {p: files[p] for p in runtime.PYTHON_FILES}
        made.append(runtime.pyodide_snapshot(node_modules() / "pyodide", files["vendor/pyodide/python_stdlib.zip"], python))
    assert made[0] == made[1] == files[runtime.SNAPSHOT]
    assert made[0][:8] == b"KDSNAP01"
    import socket

    for secret in (str(tmp_path), "first-cache", str(REPO)) + ((socket.gethostname(),) if len(socket.gethostname()) > 5 else ()):
        assert secret.encode() not in made[0], secret
    manifest = json.loads(files["manifest.json"])
    built_from = {p: manifest["files"][p]["sha256"] for p in runtime.PYTHON_FILES}
    assert json.dumps(built_from, separators=(",", ":")).encode() in made[0]        # what worker.js checks against manifest.json


def test_verify_makes_the_snapshot_again_and_catches_another_one(dist, tmp_path):
    assert bundle.verify(dist)["snapshot"] == "re-made from the bundle's own files: identical"
    copy = tmp_path / "copy"
    shutil.copytree(dist, copy)
    data = bytearray((copy / runtime.SNAPSHOT).read_bytes())
    data[len(data) // 3] ^= 0x55                                   # and manifest.json, index.html made to match
    (copy / runtime.SNAPSHOT).write_bytes(bytes(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][runtime.SNAPSHOT]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    old = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    new = hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest()
    (copy / "index.html").write_text((copy / "index.html").read_text().replace(old, new))
    with pytest.raises(UserError, match="not what web/make-snapshot.mjs makes from this bundle's own"):
        bundle.verify(copy)


def test_without_the_snapshot_the_bundle_is_smaller(scorer_dir, dist, tmp_path):
    report = bundle.build([scorer_dir], tmp_path / "small", report_sizes=True, snapshot=False)
    files = tree(tmp_path / "small")
    assert runtime.SNAPSHOT not in files and runtime.SNAPSHOT not in json.loads(files["manifest.json"])["files"]
    assert "worker.py" in files and report["sizes"]["raw"] < sum(len(b) for b in tree(dist).values())
    assert report["sizes"]["snapshot_brotli"] == 0


def test_no_node_no_snapshot_says_how_to_build_without_one(scorer_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))           # nothing cached: node is needed
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="Node.js.*--no-snapshot"):
        bundle.build([scorer_dir], tmp_path / "out", report_sizes=False)
    assert not (tmp_path / "out").exists()


def test_build_says_what_it_does_and_can_skip_the_size_report(scorer_dir, tmp_path, monkeypatch, capsys):
    from kd_train.cli import main

    def measured(_):
        raise AssertionError("the sizes were measured")

    monkeypatch.setattr(bundle, "sizes", measured)
    assert main(["build", str(scorer_dir), "--out", str(tmp_path / "d"), "--no-snapshot", "--no-size-report"]) == 0
    said = capsys.readouterr()
    assert "building the page for 1 scorer(s)" in said.err and "measuring" not in said.err
    assert "compressed sizes not measured: --no-size-report" in said.out
    monkeypatch.undo()
    assert main(["build", str(scorer_dir), "--out", str(tmp_path / "d"), "--no-snapshot"]) == 0
    said = capsys.readouterr()
    assert "measuring its size compressed" in said.err and "brotli (quality 9)" in said.out
