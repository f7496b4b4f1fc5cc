"""Run a standard-library module of the page inside real Pyodide (Node.js, tests/pyodide_run.mjs) over many
strings, for the parity tests of featurize.py and wordpiece.py: the same strings in, each string's result out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "tests" / "pyodide_run.mjs"
PYODIDE_DIR = ROOT / "web" / "node_modules" / "pyodide"

# What every driver starts with: load a module copied in, read the strings (as code points: lone surrogates
# cannot cross JSON/UTF-8/JS strings unchanged; code points always can), write one JSON line per result.
PRELUDE = '''
import importlib.util, json, sys, time, unicodedata

def load(name):
    spec = importlib.util.spec_from_file_location(name, f"/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

with open("/in.jsonl", encoding="ascii") as f:
    header = json.loads(f.readline())
    texts = ["".join(map(chr, json.loads(line))) for line in f]

def write_output(results, seconds):
    with open("/out.jsonl", "w", encoding="ascii") as f:
        f.write(json.dumps({"python": sys.version, "unicode": unicodedata.unidata_version, "n": len(texts),
                            "seconds": seconds}) + "\\n")
        for result in results:
            f.write(json.dumps(result) + "\\n")
'''


def run_in_pyodide(tmp_path: Path, driver: str, header: dict, texts: list[str], files: list[Path]) -> tuple[dict, list, str]:
    """(Pyodide's header: python, unicode, n, seconds; each string's result; node's output). ``driver`` runs
    after PRELUDE, with ``header`` and ``texts`` read and ``files`` copied in under their names. Skips
    where Node.js or the npm package pyodide is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: install Node.js 20+ to run the Pyodide parity test")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip("web/node_modules/pyodide missing: run `cd web && npm ci`")
    inp, outp, script = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "driver.py"
    with open(inp, "w", encoding="ascii") as f:
        f.write(json.dumps(header) + "\n")
        for text in texts:
            f.write(json.dumps([ord(c) for c in text]) + "\n")
    script.write_text(PRELUDE + driver, encoding="utf-8")
    proc = subprocess.run([node, str(NODE_SCRIPT), str(script), str(outp), str(inp), *map(str, files)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(outp, encoding="ascii") as f:
        found = json.loads(f.readline())
        results = [json.loads(line) for line in f]
    assert found["python"].startswith("3.14"), found
    assert len(results) == len(texts)
    return found, results, proc.stdout.strip()
