"""Tests of kd_train/featurize.py: properties, config validation, and bit-identical output in
real Pyodide (Node.js) over >= 5,000 strings (ASAP-SAS answers when present + generated ones)."""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import json
import math
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kd_train import featurize as fz
from kd_train.featurize import DEFAULT_CONFIG, featurize, validate_config
from pyodide_support import run_in_pyodide

ROOT = Path(__file__).resolve().parent.parent
FEATURIZE_PY = ROOT / "kd_train" / "featurize.py"
ASAP_TRAIN = Path(os.environ.get("KD_TRAIN_DATA", "../shared/datasets"))
if not ASAP_TRAIN.is_absolute():
    ASAP_TRAIN = ROOT / ASAP_TRAIN
ASAP_TRAIN = ASAP_TRAIN / "asap-sas" / "train.csv"

TRICKY = [
    "", " ", "\t\n\r", "...!!!???", "a", "A", "é", "'", "don't", "DON’T",
    # German, Spanish, French, Turkish, Greek
    "Die Größe der Äpfel, Öl und Übung; STRASSE straße GROẞE \u1e9e \u00df",
    "¿Por qué el niño comió piñata? ¡Sí, señor! Acción, canción, ÁÉÍÓÚ áéíóú ü Ü",
    "Où est l'hôpital ? Garçon, œuvre, Noël, français, ÇA, Ÿ ÿ « guillemets »",
    "İstanbul ISTANBUL istanbul ıstanbul Iı İi DİYARBAKIR",
    "ΟΔΥΣΣΕΥΣ Οδυσσεύς σοφός ΣΟΦΌΣ ς σ Σ ΐ ΰ ϐ ϑ",
    # emoji: skin tones, ZWJ sequences, flags, keycaps, variation selectors, tags
    "I like it 👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪🇺🇸 1️⃣ ❤️ ❤ "
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    # CJK, Japanese, Korean, Arabic, Hebrew, Devanagari, Thai
    "光合作用是植物利用光能。　葉緑体（ようりょくたい）で、カタカナ・ひらがな。한국어 문장입니다.",
    "التمثيل الضوئي، هو عملية؛ هل تفهم؟ ١٢٣ ‏עברית: פוטוסינתזה, שׁלום״ ׳",
    "प्रकाश संश्लेषण। ॥ การสังเคราะห์ด้วยแสง ๏ ๚",
    # Unicode 15: shaking face, light blue heart, Kawi, Nag Mundari
    "\U0001fae8 \U0001fa75 \U00011f04\U00011f05 \U0001e4d0\U0001e4d1 word\U0001fae8word",
    # Unicode 16: face with bags under eyes, splatter, legacy computing supplement, Ol Onal,
    # Garay (cased in 16!), Cyrillic TJE (cased), Latin A7CB/A7DC, Todhri, Gurung Khema
    "\U0001fae9 \U0001fadf \U0001cc00\U0001cc01\U0001cc21 \U0001e5d0\U0001e5d1\U0001e5f0",
    "\U00010d50\U00010d51 \U00010d70\U00010d71 \u1c89\u1c8a \ua7cb\ua7dc \U000105c0 \U00016100",
    # controls, invisible and odd spaces
    "a\x00b\x1bc\x7fd\u200be\u2028f\u2029g\u00a0h\u3000i\ufeffj\u00adk\u200cl\u200dm\u2060n",
    "\x00\x01\x02\x1b[31mred\x1b[0m \x85 \x9f \ufffd\ufffc\uffff \U0010ffff \U000f0000",
    # lone surrogates, also forming a "pair" of separate code points
    "\ud800", "\udfff", "x\ud800y", "ab\udfffcd\ud83d\ude00", "\ud83d\ude00", "\udc00\ud800",
    # fullwidth, maths, arrows, digits
    "ＡＢＣ ａｂｃ １２３！ Ｈｅｌｌｏ，ｗｏｒｌｄ", "x² + y³ = z → ∞ ≥ ½ µm 25°C ±3 ×2 ÷4",
    "3.14 1,000 2024-11-28 H2O CO₂ 10^6 e=mc^2",
    # mixed
    "The cell's mitochondria (powerhouse) — make ATP… “quoted” ‘single’ «x» 「y」",
]


def _asap_answers(limit: int) -> list[str]:
    if not ASAP_TRAIN.is_file():
        return []
    with open(ASAP_TRAIN, newline="", encoding="utf-8") as f:
        answers = [row["response"] for row in csv.DictReader(f)]
    step = max(1, len(answers) // limit)
    return answers[::step][:limit]


def _random_strings(n: int, seed: int = 20261128) -> list[str]:
    """Seeded random strings over the whole code-point range, plus word-like ones."""
    rng = random.Random(seed)
    pools = [
        lambda: rng.randrange(0x110000),                         # anything, incl. surrogates
        lambda: rng.randrange(0x10000),                          # BMP
        lambda: rng.randrange(0xD800, 0xE000),                   # surrogates
        lambda: rng.randrange(0x20, 0x7F),                       # printable ASCII
        lambda: rng.choice(b"aeiou etnrsAEIOU .,'"),             # text-like
        lambda: rng.randrange(0x80, 0x800),                      # 2-byte UTF-8
        lambda: rng.randrange(0x1F300, 0x1FB00),                 # emoji and newer symbols
        lambda: rng.randrange(0x2000, 0x2070),                   # general punctuation
    ]
    words = [w for t in TRICKY for w in t.split(" ") if w]
    out = []
    for k in range(n):
        if k % 4 == 3:  # words of the tricky strings shuffled with random separators
            out.append("".join(rng.choice(words) + chr(pools[rng.randrange(8)]())
                               for _ in range(rng.randrange(1, 40))))
            continue
        weights = [rng.random() for _ in pools]
        out.append("".join(chr(rng.choices(pools, weights)[0]())
                           for _ in range(rng.randrange(0, 300))))
    return out


def _tricky() -> list[str]:
    return TRICKY + [t.upper() for t in TRICKY if t.isascii()] + [
        " ".join(TRICKY), "word " * 5000, ("Ab1 " + "".join(TRICKY)) * 40,
    ]


def _corpus() -> list[str]:
    asap = _asap_answers(3500)
    tricky = _tricky()
    long_answer = (asap[0] + " ") if asap else "The plant cell uses light energy. "
    tricky.append((long_answer * (20000 // len(long_answer) + 1))[:20000])
    assert len(tricky[-1]) == 20000
    n_random = max(1500, 5200 - len(asap) - len(tricky))
    return asap + tricky + _random_strings(n_random)


def _norm(out: list[tuple[int, float]]) -> float:
    s = 0.0
    for _, v in out:
        s += v * v
    return math.sqrt(s)


# ---------------------------------------------------------------- properties

def test_default_config_is_valid_and_json_roundtrips():
    assert DEFAULT_CONFIG["version"] == 1 and DEFAULT_CONFIG["n_buckets"] == 2048
    assert validate_config(DEFAULT_CONFIG) is DEFAULT_CONFIG
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    text = "Osmosis moves WATER across the membrane."
    assert featurize(text, cfg) == featurize(text, DEFAULT_CONFIG)


@pytest.mark.parametrize("text", TRICKY + _random_strings(200, seed=1))
def test_output_shape_and_norm(text):
    out = featurize(text, DEFAULT_CONFIG)
    assert isinstance(out, list)
    idx = [b for b, _ in out]
    assert idx == sorted(set(idx))
    assert all(type(b) is int and 0 <= b < 2048 for b in idx)
    assert all(type(v) is float and v != 0.0 and math.isfinite(v) for _, v in out)
    assert out == [] or abs(_norm(out) - 1.0) < 1e-12
    assert featurize(text, DEFAULT_CONFIG) == out   # deterministic


def test_empty_and_separator_only():
    for text in ["", " ", "\n\t", "?!.,;:()[]{}<>\"'`-_/\\|@#$%^&*+=~", "\u2028\u3000\u00a0",
                 "\ud800\udfff", "\x00\x1b\x7f", "’‘“”«»—…"]:
        assert featurize(text, DEFAULT_CONFIG) == [], repr(text)


def test_same_across_processes_with_different_hash_seeds():
    code = ("import json, sys; from kd_train.featurize import featurize, DEFAULT_CONFIG; "
            "print(json.dumps([featurize(t, DEFAULT_CONFIG) for t in json.loads(sys.argv[1])]))")
    texts = json.dumps([t for t in TRICKY if "\ud800" not in t and "\udfff" not in t
                        and "\udc00" not in t and "\ud83d" not in t])
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code, texts], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


def test_ascii_case_folding_only():
    f = lambda t: featurize(t, DEFAULT_CONFIG)  # noqa: E731
    assert f("Photosynthesis USES Light") == f("photosynthesis uses light")
    assert f("ＡＢＣ ｄｅｆ １２") == f("abc def 12")             # fullwidth -> ASCII
    for upper, lower in [("Ä", "ä"), ("Ö", "ö"), ("ÜBER", "über"), ("ẞ", "ß"), ("İ", "i"),
                         ("I", "ı"), ("Σ", "σ"), ("ς", "σ"), ("É", "é"), ("Ж", "ж"),
                         ("\U00010d50", "\U00010d70"), ("\u1c89", "\u1c8a")]:
        assert f(upper) != f(lower), (upper, lower)


def test_intended_invariances():
    f = lambda t: featurize(t, DEFAULT_CONFIG)  # noqa: E731
    base = f("the cell wall is strong")
    for variant in ["The cell wall is strong.", "  the\tcell\nwall -- is (strong)!  ",
                    "THE CELL WALL IS STRONG", "the\u00a0cell\u2003wall\u3000is\u2028strong",
                    "the, cell; wall: is? strong…", "the\x00cell\x1bwall\x7fis\ud800strong",
                    "„the“ «cell» wall is ‚strong‘"]:
        assert f(variant) == base, repr(variant)
    assert f("don't") == f("dont") == f("don’t") == f("don`t") == f("DON'T")
    assert f("co\u00adoperate") == f("cooperate")               # soft hyphen deleted
    assert f("❤️") == f("❤")                                     # variation selector deleted
    assert f("cell wall") != f("wall cell")                     # word bigrams see order


def test_never_crashes_on_any_code_point():
    for start in range(0, 0x110000, 0x4000):      # every code point, in 68 strings (~2 s)
        text = "".join(map(chr, range(start, min(start + 0x4000, 0x110000))))
        out = featurize(text, DEFAULT_CONFIG)
        assert all(0 <= b < 2048 for b, _ in out)


def test_long_answer():
    out = featurize("Plants need light and water to grow. " * 600, DEFAULT_CONFIG)
    assert out and abs(_norm(out) - 1.0) < 1e-12


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1 << 16])
def test_n_buckets_respected(n):
    cfg = dict(DEFAULT_CONFIG, n_buckets=n)
    for text in TRICKY:
        assert all(0 <= b < n for b, _ in featurize(text, cfg))


def test_config_variants():
    text = "Diffusion moves particles from high to low concentration."
    words = featurize(text, dict(DEFAULT_CONFIG, char_weight=0))
    chars = featurize(text, dict(DEFAULT_CONFIG, word_weight=0.0))
    assert words and chars and words != chars
    assert len(words) < len(chars)
    assert featurize(text, dict(DEFAULT_CONFIG, seed=1)) != featurize(text, DEFAULT_CONFIG)
    tri = featurize(text, dict(DEFAULT_CONFIG, word_ngram_range=[1, 3], char_ngram_range=[3, 3]))
    assert tri and abs(_norm(tri) - 1.0) < 1e-12


@pytest.mark.parametrize("key, value", [
    ("version", 2), ("version", True), ("n_buckets", 0), ("n_buckets", "2048"),
    ("n_buckets", True), ("n_buckets", 2048.0), ("n_buckets", 1 << 25),
    ("word_ngram_range", [2, 1]), ("word_ngram_range", [0, 2]), ("word_ngram_range", 2),
    ("char_ngram_range", [2, 5, 6]), ("char_ngram_range", [2.0, 5]), ("char_ngram_range", [1, 11]),
    ("word_weight", -1.0), ("word_weight", float("nan")), ("char_weight", float("inf")),
    ("char_weight", "1"), ("seed", -1), ("seed", 1 << 32), ("seed", 0.5),
])
def test_config_validation_names_the_bad_key(key, value):
    cfg = dict(DEFAULT_CONFIG, **{key: value})
    with pytest.raises(ValueError, match=key):
        validate_config(cfg)
    with pytest.raises(ValueError, match=key):
        featurize("some text", cfg)


def test_config_validation_structure():
    with pytest.raises(ValueError, match="missing keys \\['seed'\\]"):
        validate_config({k: v for k, v in DEFAULT_CONFIG.items() if k != "seed"})
    with pytest.raises(ValueError, match="unknown keys \\['lowercase'\\]"):
        validate_config(dict(DEFAULT_CONFIG, lowercase=True))
    with pytest.raises(ValueError, match="both 0"):
        validate_config(dict(DEFAULT_CONFIG, word_weight=0, char_weight=0.0))
    with pytest.raises(ValueError, match="must be a dict"):
        validate_config([("n_buckets", 2048)])
    with pytest.raises(TypeError):
        featurize(b"bytes", DEFAULT_CONFIG)


def test_source_avoids_interpreter_dependent_constructs():
    """Guard the by-construction argument: stdlib-only imports, no Unicode-table-dependent
    string methods, no salted hash(), no float pow/exp/log/sum()."""
    source = FEATURIZE_PY.read_bytes()
    assert source.isascii(), "keep featurize.py pure ASCII (use \\uXXXX escapes)"
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "re", "zlib", "collections", "itertools", "math"}
    banned_attrs = {"lower", "upper", "casefold", "title", "capitalize", "swapcase", "isalpha",
                    "isalnum", "isdigit", "isdecimal", "isnumeric", "isspace", "isidentifier",
                    "isprintable", "islower", "isupper", "istitle", "normalize", "exp", "log",
                    "pow", "fsum", "hypot", "splitlines", "strip", "lstrip", "rstrip"}
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Pow), f"** at line {node.lineno}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in banned_attrs, f".{node.attr} at line {node.lineno}"
        if isinstance(node, ast.Name):
            assert node.id not in {"hash", "pow", "sum", "unicodedata"}, node.id
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "split":
                assert node.args, f"str.split() without separator at line {node.lineno}"
    pattern = fz._TOKEN_RE.pattern
    assert pattern.isascii() and not any(e in pattern for e in ("\\w", "\\d", "\\s", "\\b"))
    assert not fz._TOKEN_RE.flags & (fz.re.IGNORECASE | fz.re.ASCII)


# Version 1's output, frozen: sha256 over every vector of a fixed corpus (tricky + seeded random
# strings), as little-endian (count, then bucket uint32 + value float64 per entry). A change of
# featurize.py that moves any bit must bump DEFAULT_CONFIG["version"] instead of editing these.
FROZEN_V1 = [
    ({}, "13bdc8c4d287d13334291a6fad5381aa9b4478128b246a270dc3d81b5b56e879"),
    ({"n_buckets": 7, "word_ngram_range": [1, 3], "char_ngram_range": [1, 10], "word_weight": 0.3,
      "char_weight": 1.7, "seed": 12345},
     "2d2f106bc8cd61d5218de5e2aa56db595c9990cf099d8c2788726654b084ebaf"),
]


def _frozen_corpus() -> list[str]:
    return _tricky() + _random_strings(2000)


def _digest(texts: list[str], config: dict) -> str:
    h = hashlib.sha256()
    for text in texts:
        out = featurize(text, config)
        h.update(struct.pack("<I", len(out)))
        for b, v in out:
            h.update(struct.pack("<Id", b, v))
    return h.hexdigest()


@pytest.mark.parametrize("overrides, expected", FROZEN_V1)
def test_output_frozen_for_version_1(overrides, expected):
    texts = _frozen_corpus()
    config = dict(DEFAULT_CONFIG, **overrides)
    fz._CHAR_GRAMS.clear()
    assert _digest(texts, config) == expected            # cold char n-gram cache
    assert _digest(texts, config) == expected            # warm


def test_char_gram_cache_is_bounded():
    fz._CHAR_GRAMS.clear()
    words = [f"w{i}x" for i in range(fz._CACHE_TOKENS + 100)] + ["y" * (fz._CACHE_TOKEN_CHARS + 1)]
    for k in range(0, len(words), 500):
        featurize(" ".join(words[k:k + 500]), DEFAULT_CONFIG)
    cache = fz._CHAR_GRAMS[tuple(DEFAULT_CONFIG["char_ngram_range"])]
    assert 0 < len(cache) <= fz._CACHE_TOKENS
    assert "y" * (fz._CACHE_TOKEN_CHARS + 1) not in cache


# ---------------------------------------------------------------- parity with Pyodide

def _encode(out: list[tuple[int, float]]) -> dict:
    val = [v for _, v in out]
    return {"i": [b for b, _ in out],
            "d": base64.b64encode(struct.pack("<%dd" % len(val), *val)).decode(),
            "f": base64.b64encode(struct.pack("<%df" % len(val), *val)).decode()}


FEATURIZE_DRIVER = """
import base64, struct

fz = load("featurize")
config, tokens = header["config"], header["tokens"]
t = time.perf_counter()
outs = [fz.featurize(text, config) for text in texts]
seconds = time.perf_counter() - t
write_output([{"i": [b for b, _ in out],
               "d": base64.b64encode(struct.pack("<%dd" % len(out), *(v for _, v in out))).decode(),
               "f": base64.b64encode(struct.pack("<%df" % len(out), *(v for _, v in out))).decode(),
               "t": fz.token_ids(text, tokens)} for text, out in zip(texts, outs)], seconds)
"""


@pytest.mark.slow
def test_pyodide_parity(tmp_path):
    corpus = _corpus()
    assert len(corpus) >= 5000
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    tokens = dict(fz.TOKENS_CONFIG, max_tokens=1 << 16)   # every token of every string
    header, got, said = run_in_pyodide(tmp_path, FEATURIZE_DRIVER, {"config": cfg, "tokens": tokens}, corpus,
                                       [FEATURIZE_PY])
    print(f"\nPyodide Python {header['python'].split()[0]}, Unicode {header['unicode']}: "
          f"{header['n']} strings in {header['seconds']:.2f} s; {said}")
    mismatches = [k for k, text in enumerate(corpus)
                  if {k: v for k, v in got[k].items() if k != "t"} != _encode(featurize(text, cfg))]
    assert not mismatches, (f"{len(mismatches)} of {len(corpus)} strings differ, first: "
                            f"{corpus[mismatches[0]][:200]!r}")
    differ = [k for k, text in enumerate(corpus) if got[k]["t"] != fz.token_ids(text, tokens)]
    assert not differ, (f"token_ids of {len(differ)} of {len(corpus)} strings differ, first: "
                        f"{corpus[differ[0]][:200]!r}")
    assert sum(len(g["t"]) for g in got) > 100_000   # the parity covers many tokens, not empty lists


def test_token_ids_are_the_tokens_in_order_hashed_with_0_left_for_padding():
    config = dict(fz.TOKENS_CONFIG, n_buckets=50, max_tokens=6)
    ids = fz.token_ids("It is NOT true, that it is", config)
    assert len(ids) == 6 and all(1 <= i < 50 for i in ids)
    assert ids[0] == ids[5] == fz.token_ids("it", config)[0]          # case-folded, same word same id
    assert ids == fz.token_ids("it is not true that it", config)          # separators are not tokens
    assert fz.token_ids("", config) == [] == fz.token_ids("?!", config)
    assert fz.token_ids("don't", config) == fz.token_ids("DONT", config)  # featurize.py's own rules
    assert fz.token_ids("a b", dict(config, seed=1)) != fz.token_ids("a b", config)


@pytest.mark.parametrize("change, key", [({"n_buckets": 1}, "n_buckets"), ({"max_tokens": 0}, "max_tokens"),
                                         ({"seed": -1}, "seed"), ({"kind": "bag"}, "kind"), ({"extra": 1}, "keys")])
def test_a_bad_token_config_is_refused_by_name(change, key):
    with pytest.raises(ValueError, match=key):
        fz.token_ids("a", dict(fz.TOKENS_CONFIG, **change))
    with pytest.raises(TypeError):
        fz.token_ids(b"a", fz.TOKENS_CONFIG)
