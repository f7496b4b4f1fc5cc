"""The bundler: scorer directories -> dist/, the offline scoring page (contract 5 of docs/design.md).

    kd-train build SCORER_DIR... --out dist/          (the same as: python build.py ... in a checkout)
    python -m kd_train.bundle                         (prints the URLs inside the vendor files, to review
                                                       web/vendor-urls.json)

dist/ holds the page (rendered from web/page/), featurize.py, detect.py and wordpiece.py byte for byte, each scorer in
scorers/<item>/, the few runtime files the page needs from the npm packages pyodide and
onnxruntime-web (pinned by web/package.json and web/package-lock.json; see kd_train/runtime.py) with their
licences, manifest.json (sha256 and size of every file) and AUDIT.md (for a privacy reviewer).

The page's sources ship inside the package: a wheel holds web/ as kd_train/web/ and examples/demo/ as
kd_train/demo/ (pyproject.toml's package-dir); a checkout (an editable install) uses the folders themselves.

Guarantees: each scorer's hashes are checked before anything is written; the bundle is built in a
temporary folder beside --out and renamed into place only when complete; no absolute URL is
allowed anywhere in dist/ except the reviewed ones inside vendor files (web/vendor-urls.json);
the same inputs give a byte-identical dist/ (sorted, no timestamps, no absolute paths).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from kd_train.data import UserError
from kd_train.files import check_output_dir, holds_lock, replace_dir, unlock_output
from kd_train.temps import discard_temp, make_temp_dir
from kd_train.runtime import (EXTRA_LICENCES, HERE, MAKE_SNAPSHOT, PYTHON_FILES, SNAPSHOT, STDLIB, VENDOR, WEB,
                              data_folder, node_modules, package_info, pyodide_snapshot, trimmed_stdlib)
from kd_train.serve import CSP, CSP_HEADER, WATCHDOG_SHA256  # the page's policy; what a host sends

DEMO = data_folder("demo", "examples/demo", "responses.csv")          # the demo item (kd-train demo)
PAGE = WEB / "page"
FEATURIZE = HERE / "featurize.py"
DETECT = HERE / "detect.py"
WORDPIECE = HERE / "wordpiece.py"

LOAD_STEPS = 4   # start-up steps the page shows (worker.js posts 1-3, loading the scorer is 4)
BROTLI_QUALITY = 9

# Absolute URLs (a scheme with //); in kd-train's own files also protocol-relative ones ("//host").
URL_RE = re.compile(rb"\b(?:https?|wss?|ftps?)://[^\x00-\x20\"'<>`\\()]*")
RELATIVE_URL_RE = re.compile(rb"(?<=[\"'(=])//[A-Za-z0-9][^\x00-\x20\"'<>`\\()]*")


@dataclass
class Bundle:
    """What goes into dist/: path -> bytes, with origin and licence per path."""
    files: dict[str, bytes] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    licence: dict[str, str] = field(default_factory=dict)
    version: str = ""
    digest: str = ""            # the published digest: sha256 of index.html, which pins manifest.json's
    manifest_digest: str = ""   # sha256 of manifest.json, pinned by index.html (the page shows it)

    def add(self, path: str, data: bytes, origin: str, licence: str) -> None:
        if path in self.files:
            raise UserError(f"two files would be written to {path}")
        self.files[path], self.origin[path], self.licence[path] = data, origin, licence


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- inputs ------------------------------------------------------------------------------------

def read_scorers(folders: list[Path], allow_unfit: bool = False) -> list[tuple[Path, dict]]:
    """(folder, scorer.json) of each scorer, checked by kd-train's one integrity rule; refuses duplicates
    and, unless ``allow_unfit``, scorers that failed the quality gate."""
    from kd_train.data import item_folder
    from kd_train.scorer import Scorer

    out, seen = [], {}
    for folder in folders:
        try:
            info = dict(Scorer(folder).info)
        except UserError as err:
            raise UserError(f"refusing to build: {err}") from None
        item = info["item"]
        if info.get("fit_for_use") is False and not allow_unfit:
            reasons = "; ".join(info.get("unfit_reasons") or ["it failed the quality check"])
            raise UserError(f"refusing to build: the scorer {folder} (item {item!r}) is not fit for use: {reasons}; "
                            "retrain it with more scored answers or another base model, or pass --allow-unfit "
                            "to build it with a warning on its page")
        info["folder"] = item_folder(item)
        if info["folder"] in seen:
            raise UserError(f"{folder} and {seen[info['folder']]} are both scorers for item {item!r}; give one per item")
        seen[info["folder"]] = folder
        out.append((folder, info))
    if not out:
        raise UserError("give at least one scorer directory")
    return sorted(out, key=lambda pair: pair[1]["folder"])


# ---- the bundle --------------------------------------------------------------------------------

def template_env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(PAGE), str(WEB)]), autoescape=jinja2.select_autoescape(
        ["html", "html.j2"]), keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["defang"] = lambda url: re.sub(r"(\w+)://", r"\1[://]", url)
    return env


def add_scorers(bundle: Bundle, scorers: list[tuple[Path, dict]]) -> None:
    for folder, info in scorers:
        vocab = [info["featurizer"]["vocab_file"]] if info["featurizer"].get("kind") == "wordpiece" else []
        for name in [info["model"]["file"], "scorer.json", "MODEL_CARD.md"] + vocab:
            bundle.add(f"scorers/{info['folder']}/{name}", (folder / name).read_bytes(),
                       f"scorer directory `{folder.name}` (item {info['item']}), made by kd-train distill",
                       "the scorer's owner's (see its MODEL_CARD.md)")


def add_vendor(bundle: Bundle, snapshot: bool = True) -> dict:
    packages = {}
    modules = node_modules()
    for name, (folder, licence, licence_file, files) in VENDOR.items():
        packages[name] = info = package_info(name, modules)
        for src, note, *own_licence in files:
            data = (modules / name / src).read_bytes()
            if src == STDLIB:
                data, kept = trimmed_stdlib(data)
                note = f"{note}, trimmed by kd_train/bundle.py to the {kept} files the page uses (web/stdlib-keep.json)"
            bundle.add(f"{folder}/{Path(src).name}", data, f"npm {name}@{info['version']} `{src}`: {note}",
                       own_licence[0] if own_licence else licence)
        if name == "pyodide" and snapshot:
            python = {p: bundle.files[p] for p in PYTHON_FILES}
            bundle.add(SNAPSHOT, pyodide_snapshot(modules / name, bundle.files[f"{folder}/{STDLIB}"], python),
                       f"made by kd-train `web/{MAKE_SNAPSHOT}` with Node.js from npm {name}@{info['version']}, the "
                       f"trimmed {STDLIB} above and this bundle's {', '.join(PYTHON_FILES)}: Python's memory after the "
                       "page's start-up (Pyodide started, worker.py run; no answer, nothing of the build machine), "
                       "reproducible byte for byte", "MPL-2.0, PSF-2.0 and Apache-2.0")
        bundle.add(f"{folder}/LICENSE", (WEB / "licenses" / licence_file).read_bytes(),
                   f"text of the {licence} licence of {name} (web/licenses/{licence_file})", licence)
    for path, licence_file in EXTRA_LICENCES.items():
        bundle.add(path, (WEB / "licenses" / licence_file).read_bytes(),
                   f"text of CPython's licence, for pyodide.asm.wasm and python_stdlib.zip (web/licenses/{licence_file})",
                   "PSF-2.0")
    return packages


ROOT_FILE = "index.html"   # the root of trust: pins manifest.json's digest, so manifest.json cannot list it
WATCHDOG = "watchdog.js"   # inlined in index.html (allowed by its sha256 in the CSP), not a file of dist/


def watchdog_script() -> str:
    """web/page/watchdog.js, which index.html inlines; refused when its hash is not the one the CSP allows."""
    import base64

    data = (PAGE / WATCHDOG).read_bytes()
    allowed = "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    if allowed != WATCHDOG_SHA256:
        raise UserError(f"web/page/{WATCHDOG} has hash {allowed}, the page's Content-Security-Policy allows "
                        f"{WATCHDOG_SHA256}: set WATCHDOG_SHA256 in kd_train/serve.py to the new hash")
    return data.decode("utf-8")


def scorer_version(files: dict[str, str], folder: str) -> str:
    """The version the page shows for a scorer: 12 hex digits of a hash of every file of scorers/<folder>/
    (``files``: path -> sha256, as manifest.json lists them), so that no scorer file can change under the
    same version. main.js computes it again from the checked manifest.json and refuses a page that differs."""
    prefix = f"scorers/{folder}/"
    lines = "".join(f"{p}\0{files[p]}\n" for p in sorted(files) if p.startswith(prefix))
    return sha256(lines.encode("utf-8"))[:12]


def add_page(bundle: Bundle, env, items: list[dict]) -> None:
    """Every file of web/page/ except sw.js.j2 and index.html.j2 (rendered last) and worker.py (added with
    featurize.py and detect.py, before the snapshot): *.j2 rendered, the rest copied."""
    for src in sorted(PAGE.iterdir()):
        if src.name in ("sw.js.j2", ROOT_FILE + ".j2", "worker.py", WATCHDOG) or not src.is_file():   # worker.py: added first
            continue
        if src.suffix == ".j2":
            text = env.get_template(src.name).render(items=items, csp=CSP, load_steps=LOAD_STEPS)
            bundle.add(src.stem, text.encode("utf-8"), f"kd-train `web/page/{src.name}` (rendered)", "Apache-2.0")
        else:
            bundle.add(src.name, src.read_bytes(), f"kd-train `web/page/{src.name}`", "Apache-2.0")


def content_version(bundle: Bundle) -> str:
    """Hash of every file so far: names the service worker's cache."""
    return sha256("".join(f"{p}\0{sha256(bundle.files[p])}\n" for p in sorted(bundle.files)).encode())[:16]


def manifest_json(bundle: Bundle, version: str, items: list[dict], packages: dict) -> bytes:
    manifest = {
        "format": 1,
        "generator": "kd-train kd_train/bundle.py",
        "version": version,
        "items": [i["item"] for i in items],
        "folders": {i["item"]: i["folder"] for i in items},   # scorers/<folder>/: a safe name for any item id
        "packages": packages,
        "files": {p: {"sha256": sha256(bundle.files[p]), "bytes": len(bundle.files[p])} for p in sorted(bundle.files)},
    }
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def make_bundle(scorers: list[tuple[Path, dict]], snapshot: bool = True) -> Bundle:
    items = [info for _, info in scorers]
    env = template_env()
    bundle = Bundle()
    bundle.add("featurize.py", FEATURIZE.read_bytes(), "kd-train `kd_train/featurize.py`, byte for byte", "Apache-2.0")
    bundle.add("detect.py", DETECT.read_bytes(), "kd-train `kd_train/detect.py`, byte for byte", "Apache-2.0")
    bundle.add("wordpiece.py", WORDPIECE.read_bytes(), "kd-train `kd_train/wordpiece.py`, byte for byte", "Apache-2.0")
    bundle.add("worker.py", (PAGE / "worker.py").read_bytes(), "kd-train `web/page/worker.py`", "Apache-2.0")
    add_scorers(bundle, scorers)
    packages = add_vendor(bundle, snapshot)
    add_page(bundle, env, items)
    bundle.version = version = content_version(bundle)
    bundle.add("sw.js", env.get_template("sw.js.j2").render(version=version).encode("utf-8"),
               "kd-train `web/page/sw.js.j2` (rendered with the bundle's version)", "Apache-2.0")
    allowed = with_snapshot_urls(read_allowed_urls())
    check_urls(bundle, allowed)
    present = {}   # the reviewed URLs that are in this bundle's files (the trimmed stdlib holds fewer)
    for path, entry in allowed.items():
        found = set(find_urls(path, bundle.files[path])) if path in bundle.files else set()
        if found:
            present[path] = dict(entry, urls=[u for u in entry["urls"] if u in found])
    audit = env.get_template("AUDIT.md.j2").render(
        version=version, items=items, csp=CSP, csp_header=CSP_HEADER, packages=packages, allowed=present,
        files=[{"path": p, "bytes": len(d), "sha256": sha256(d), "origin": bundle.origin[p],
                "licence": bundle.licence[p]} for p, d in sorted(bundle.files.items())])
    bundle.add("AUDIT.md", audit.encode("utf-8"), "generated by kd_train/bundle.py from web/AUDIT.md.j2", "Apache-2.0")
    check_urls(bundle, allowed, only=["AUDIT.md"])
    manifest = manifest_json(bundle, version, items, packages)
    bundle.add("manifest.json", manifest, "generated by kd_train/bundle.py", "Apache-2.0")
    bundle.manifest_digest = sha256(manifest)
    hashes = {p: sha256(d) for p, d in bundle.files.items()}
    page = env.get_template(ROOT_FILE + ".j2").render(
        items=[dict(i, model_version=scorer_version(hashes, i["folder"])) for i in items], csp=CSP,
        load_steps=LOAD_STEPS, digest=bundle.manifest_digest, version=version, watchdog=watchdog_script(),
        integrity={p: subresource_integrity(bundle.files[p]) for p in ("main.js", "csv.js", "style.css")})
    bundle.add(ROOT_FILE, page.encode("utf-8"), f"kd-train `web/page/{ROOT_FILE}.j2` (rendered with manifest.json's "
               "digest: the one file manifest.json does not list)", "Apache-2.0")
    check_urls(bundle, allowed, only=[ROOT_FILE])
    bundle.digest = sha256(bundle.files[ROOT_FILE])   # the published digest: index.html covers everything else
    return bundle


def _reader(where: str):
    """read(relative path) -> bytes for a bundle folder or a served bundle (http:// or https:// URL)."""
    if where.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        base = where if where.endswith("/") else where + "/"

        def read(path: str) -> bytes:
            try:
                with urllib.request.urlopen(base + path, timeout=30) as response:   # noqa: S310 (a reviewer's URL)
                    return response.read()
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                raise UserError(f"{base}{path} could not be fetched ({err}); check the URL") from None
        return read

    folder = Path(where)

    def read(path: str) -> bytes:
        try:
            return (folder / path).read_bytes()
        except OSError as err:
            raise UserError(f"{folder / path} could not be read ({err.strerror}): give the folder kd-train build "
                            "wrote") from None
    return read


_SAFE_PART = re.compile(r"[^\x00-\x1f\\:]+")


def safe_path(path) -> bool:
    """A path a bundle may list: relative POSIX, no '..', '.', empty part, backslash, colon or control character."""
    return (isinstance(path, str) and not path.startswith("/")
            and all(_SAFE_PART.fullmatch(part) and part not in (".", "..") for part in path.split("/")))


def _inside(where: str, path: str) -> None:
    """Refuse a bundle file that is a link (or under one) leading out of the bundle folder."""
    root = Path(where).resolve()
    if not (Path(where) / path).resolve().is_relative_to(root):
        raise UserError(f"{where}/{path} is a link to {(Path(where) / path).resolve()}, outside the bundle: refusing "
                        "to read it; a bundle kd-train builds holds no links: rebuild it")


def verify(dist, digest: str | None = None) -> dict:
    """Check a built bundle as a reviewer would, in a folder or served at an http(s) URL: index.html's sha256
    is ``digest`` (the published digest, when given: index.html is the page, and it pins everything else);
    manifest.json's sha256 is the one index.html pins; every file it lists has its size and sha256; in a
    folder, no file is unlisted. Without ``digest`` only the bundle's internal consistency is proved.
    Returns {"digest" (index.html's sha256), "manifest_digest", "version", "files", "snapshot",
    "published" (whether ``digest`` was checked)}; raises UserError naming the first problem."""
    where = str(dist)
    read = _reader(where)
    local = not where.startswith(("http://", "https://"))
    for name in ("manifest.json", ROOT_FILE):
        if local:
            _inside(where, name)
    page_bytes = read(ROOT_FILE)
    page_digest = sha256(page_bytes)
    if digest is not None and page_digest != digest.strip().lower():
        raise UserError(f"{where}/{ROOT_FILE} has sha256 {page_digest}, not the published digest {digest}: this is "
                        "not the page that was published (it was changed, or it is another build); do not use it")
    manifest_bytes = read("manifest.json")
    try:
        manifest = json.loads(manifest_bytes)
        page = page_bytes.decode("utf-8")
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{where}: not a bundle made by kd-train build ({err})") from None
    if not isinstance(files, dict):
        raise UserError(f"{where}/manifest.json: its \"files\" is not an object of path: {{sha256, bytes}}; it was "
                        "not made by kd-train build (or was changed): rebuild it")
    for path, entry in files.items():
        if not safe_path(path):
            raise UserError(f"{where}/manifest.json lists {path!r}, a path outside the bundle (each must be relative, "
                            "with no '..', no backslash and no empty part): refusing to read it; rebuild the bundle")
        if local:
            _inside(where, path)
        if not (isinstance(entry, dict) and type(entry.get("bytes")) is int and isinstance(entry.get("sha256"), str)):
            raise UserError(f"{where}/manifest.json: the entry of {path} is not {{\"sha256\": hex, \"bytes\": number}}; "
                            "it was not made by kd-train build (or was changed): rebuild it")
    actual = sha256(manifest_bytes)
    pinned = re.search(r'<meta name="kd-bundle-digest" content="([0-9a-f]{64})">', page)
    if not pinned or pinned.group(1) != actual:
        raise UserError(f"{where}/{ROOT_FILE} does not pin manifest.json's digest {actual[:16]}… "
                        f"(it pins {pinned.group(1)[:16] + '…' if pinned else 'none'}): the page would not check its files")
    snapshot_inputs = {}   # the files the snapshot is made from, kept so that they are read once (fetched once)
    for path, entry in sorted(files.items()):
        if local and not (Path(where) / path).is_file():
            raise UserError(f"{where}/{path} is listed in manifest.json but missing")
        data = read(path)
        if len(data) != entry.get("bytes") or sha256(data) != entry.get("sha256"):
            raise UserError(f"{where}/{path} does not match manifest.json (size or sha256 differs): changed or damaged")
        if path in PYTHON_FILES or (path.startswith("vendor/pyodide/") and path != SNAPSHOT):
            snapshot_inputs[path] = data
    if not where.startswith(("http://", "https://")):
        folder = Path(where)
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        extra = sorted(present - set(files) - {"manifest.json", ROOT_FILE})
        if extra:
            raise UserError(f"{where} holds {len(extra)} file(s) manifest.json does not list, e.g. {extra[0]}: remove "
                            "them or rebuild")
    return {"digest": page_digest, "manifest_digest": actual, "published": digest is not None,
            "version": manifest.get("version"), "files": len(files) + 2,
            "snapshot": remade_snapshot(snapshot_inputs, files[SNAPSHOT]["sha256"]) if SNAPSHOT in files else None}


def remade_snapshot(inputs: dict[str, bytes], expected_sha256: str) -> str:
    """Make the start-up snapshot again from the bundle's own Pyodide files, standard library and Python
    files (``inputs``: path in the bundle -> bytes; web/make-snapshot.mjs, with Node.js) and compare:
    raises UserError when it differs."""
    if shutil.which("node") is None:
        return "not re-made (Node.js is not installed here)"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pyodide_dir = Path(tmp)
        for path, data in inputs.items():
            if path.startswith("vendor/pyodide/") and "/" not in path[len("vendor/pyodide/"):]:
                (pyodide_dir / Path(path).name).write_bytes(data)
        again = pyodide_snapshot(pyodide_dir, inputs[f"vendor/pyodide/{STDLIB}"],
                                 {p: inputs[p] for p in PYTHON_FILES}, use_cache=False)
    if sha256(again) != expected_sha256:
        raise UserError(f"{SNAPSHOT} is not what web/make-snapshot.mjs makes from this bundle's own Pyodide files, "
                        f"standard library and {', '.join(PYTHON_FILES)} (sha256 {sha256(again)[:16]}…): it was not "
                        "made by this kd-train from these files")
    return "re-made from the bundle's own files: identical"


# ---- the third-party URL scan ------------------------------------------------------------------

def read_allowed_urls() -> dict[str, dict]:
    """web/vendor-urls.json: {path in dist: {"why": ..., "urls": [...]}}, vendor files only."""
    allowed = json.loads((WEB / "vendor-urls.json").read_text(encoding="utf-8"))["files"]
    for path in allowed:
        if not path.startswith("vendor/"):
            raise UserError(f"web/vendor-urls.json allows URLs in {path}: only files under vendor/ may be listed")
    return allowed


def with_snapshot_urls(allowed: dict[str, dict]) -> dict[str, dict]:
    """The snapshot is Python's memory made from Pyodide's files: it may hold the URLs reviewed in them, no other."""
    pyodide_urls = sorted({u for path, entry in allowed.items() if path.startswith("vendor/pyodide/")
                           for u in entry["urls"]})
    return allowed | {SNAPSHOT: {"why": "strings in Python's memory after start-up (docstrings and constants of the "
                                        "modules Pyodide imported), from the Pyodide files above: only URLs reviewed "
                                        "in them are allowed here", "urls": pyodide_urls}}


def _urls(data: bytes, own: bool) -> set[str]:
    found = URL_RE.findall(data) + (RELATIVE_URL_RE.findall(data) if own else [])
    return {m.decode("utf-8", "replace").rstrip(".,;:") for m in found}


def find_urls(path: str, data: bytes) -> list[str]:
    """Every absolute URL in a file; inside a .zip, in every member too."""
    own = not path.startswith("vendor/")
    found = _urls(data, own)
    if path.endswith(".zip"):
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                found |= _urls(archive.read(name), own)
    return sorted(found)


def check_urls(bundle: Bundle, allowed: dict[str, dict], only: list[str] | None = None) -> None:
    for path in only or sorted(bundle.files):
        extra = sorted(set(find_urls(path, bundle.files[path])) - set(allowed.get(path, {}).get("urls", [])))
        if extra:
            more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
            raise UserError(f"third-party URL in dist/{path}: {extra[0]}{more}. The bundle may not refer to any "
                            "other site; remove it (from the scorer's question or model card, or the page), or, "
                            "for a vendor file, review it and list it in web/vendor-urls.json")


# ---- writing -----------------------------------------------------------------------------------

def write_atomically(bundle: Bundle, out: Path, force: bool = False) -> None:
    """Write into a temporary folder beside `out`, then swap it in; `out` is never half-written, and
    replaced only when it is a bundle kd-train built (every file listed in its manifest.json) or empty."""
    tmp = make_temp_dir(out)
    try:
        for path in sorted(bundle.files):
            target = tmp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bundle.files[path])
        replace_dir(tmp, out, "bundle", force=force, marker=False)   # manifest.json marks a bundle
    finally:
        discard_temp(tmp)


def sizes(bundle: Bundle) -> dict[str, int]:
    """Total bytes raw, gzip -9 and brotli (quality BROTLI_QUALITY), each file compressed alone."""
    import brotli

    raw = gz = br = snapshot = 0
    for path, data in bundle.files.items():
        raw += len(data)
        gz += len(gzip.compress(data, 9, mtime=0))
        br += (size := len(brotli.compress(data, quality=BROTLI_QUALITY)))
        snapshot += size if path == SNAPSHOT else 0
    return {"raw": raw, "gzip": gz, "brotli": br, "snapshot_brotli": snapshot}


def subresource_integrity(data: bytes) -> str:
    """The value of an integrity="" attribute: the browser refuses the file when it differs (index.html
    pins main.js, csv.js, through a modulepreload, and style.css this way; a worker script cannot be pinned)."""
    import base64

    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def check_out(scorer_dirs: list, out, force: bool = False) -> Path:
    """`out` may be replaced: not a scorer directory nor inside or around one, and empty or a bundle."""
    return check_output_dir(out, "bundle", inputs=scorer_dirs, force=force)


def build(scorer_dirs: list, out, report_sizes: bool = True, force: bool = False, allow_unfit: bool = False,
          snapshot: bool = True) -> dict:
    """Build dist/ at `out`; returns {"files", "version", "digest" (sha256 of index.html: the one to publish),
    "manifest_digest", "items", "sizes", "unfit"}. Raises UserError.
    ``snapshot``: include Pyodide's start-up snapshot (faster start, about 5 MB more brotli)."""
    ours = not holds_lock(out)   # check_out takes the lock on `out` (one build at a time): released when done
    try:
        out = check_out(scorer_dirs, out, force)
        scorers = read_scorers([Path(d) for d in scorer_dirs], allow_unfit)
        node_modules()   # found (or fetched) first: without them the one line says so, before any progress line
        print(f"building the page for {len(scorers)} scorer(s)"
              + (" with its start-up snapshot (Pyodide run once in Node.js: seconds)" if snapshot else ""),
              file=sys.stderr, flush=True)
        bundle = make_bundle(scorers, snapshot)
        write_atomically(bundle, out, force)
    finally:
        if ours:
            unlock_output(out)
    if report_sizes:
        print(f"built {out}; measuring its size compressed (gzip, brotli at quality {BROTLI_QUALITY}: seconds; "
              "--no-size-report skips it)", file=sys.stderr, flush=True)
    return {"files": len(bundle.files), "version": bundle.version, "digest": bundle.digest,
            "manifest_digest": bundle.manifest_digest,
            "items": [i["item"] for _, i in scorers],
            "unfit": [i["item"] for _, i in scorers if i.get("fit_for_use") is False],
            "sizes": sizes(bundle) if report_sizes else None}


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(scorer_dirs: list, out, force: bool = False, allow_unfit: bool = False, snapshot: bool = True,
        report_sizes: bool = True) -> None:
    """Build and print what was built (used by `kd-train build` and `python build.py`)."""
    report = build(scorer_dirs, out, report_sizes=report_sizes, force=force, allow_unfit=allow_unfit,
                   snapshot=snapshot)
    if report["unfit"]:
        print(f"WARNING: built with scorer(s) NOT FIT FOR USE for item(s) {', '.join(report['unfit'])}; the page "
              "shows a warning on them", file=sys.stderr)
    s = report["sizes"]
    print(f"built {out}: {report['files']} files, item(s) {', '.join(report['items'])}")
    if s is None:
        raw = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
        print(f"bundle size: {mb(raw)} raw (compressed sizes not measured: --no-size-report)")
    else:
        print(f"bundle size: {mb(s['raw'])} raw, {mb(s['gzip'])} gzip, {mb(s['brotli'])} brotli (quality {BROTLI_QUALITY})"
              + (f", of which {mb(s['snapshot_brotli'])} the start-up snapshot (--no-snapshot leaves it out: a "
                 "smaller bundle, a slower start)" if s["snapshot_brotli"] else ""))
    print(f"bundle digest (sha256 of index.html, which pins manifest.json and through it every file): {report['digest']}")
    print(f"  publish it; a reviewer checks the bundle, in this folder or where it is served, with: "
          f"kd-train verify {out} --digest {report['digest']}")
    print(f"  the page shows manifest.json's sha256, {report['manifest_digest'][:16]}…, at its bottom")
    print(f"serve it with: kd-train serve {out}")


def list_vendor_urls() -> None:
    """Print the URLs found in each vendor file, for reviewing web/vendor-urls.json."""
    bundle = Bundle()
    add_vendor(bundle, snapshot=False)
    print(json.dumps({p: find_urls(p, d) for p, d in sorted(bundle.files.items()) if find_urls(p, d)}, indent=2))


if __name__ == "__main__":   # for a maintainer reviewing web/vendor-urls.json
    list_vendor_urls()
