"""Tests of kd_train/wordpiece.py: the teacher's WordPiece tokenizer in the standard library. Its ids equal
the teacher's Hugging Face tokenizer + encoder.encode's truncation on ASAP-SAS answers (read through
kd_train.data), tricky and random strings and every code point, and equal in real Pyodide (Node.js)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from kd_train import encoder
from kd_train import wordpiece as wp
from pyodide_support import run_in_pyodide
from tests.test_featurize import TRICKY, _random_strings

ROOT = Path(__file__).resolve().parent.parent
WORDPIECE_PY = ROOT / "kd_train" / "wordpiece.py"
LENGTHS = (512, 24)   # no cut but the longest answers; most answers cut (head+tail)


@pytest.fixture(scope="module")
def teacher_tokenizer():
    folder = encoder.default_model_dir()
    tokenizer, _ = encoder.load_tokenizer(str(folder))
    return tokenizer, (folder / "vocab.txt").read_text(encoding="utf-8")


def _asap_answers(limit: int) -> list[str]:
    from kd_train.data import DataError, load_asap

    try:
        answers = load_asap().train.responses
    except DataError:
        return []
    step = max(1, len(answers) // limit)
    return answers[::step][:limit]


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _corpus() -> list[str]:
    """ASAP-SAS answers, the tricky strings and random ones (without lone surrogates: the teacher's tokenizer
    cannot take them), plus special tokens written in answers."""
    asap = _asap_answers(3500)
    tricky = TRICKY + [t.upper() for t in TRICKY] + [" ".join(TRICKY), "word " * 700]
    specials = ["it is [SEP] not [CLS]x[MASK]", "[sep] [UNK][PAD] [[SEP]]", "a[MASK" + "]" * 3,
                ("osmosis [SEP] water " * 40).strip()]
    randoms = ["".join(c for c in t if not _has_surrogate(c)) for t in _random_strings(max(1500, 5200 - len(asap)))]
    return [t for t in asap + tricky + specials if not _has_surrogate(t)] + randoms


def _reference(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return [row["input_ids"] for row in encoder.encode(tokenizer, texts, None, max_length)]


def test_the_teacher_cuts_head_and_tail(teacher_tokenizer):
    tokenizer, _ = teacher_tokenizer
    assert encoder.truncation_rule(tokenizer) == "head+tail" and wp.DEFAULT_CONFIG["head_share"] == encoder.HEAD_SHARE


def test_same_ids_as_the_teacher_tokenizer(teacher_tokenizer):
    tokenizer, vocab_text = teacher_tokenizer
    vocab = wp.read_vocab(vocab_text)
    assert vocab == tokenizer.get_vocab()
    corpus = _corpus()
    assert len(corpus) >= 5000
    for max_length in LENGTHS:
        config = dict(wp.DEFAULT_CONFIG, max_length=max_length)
        ref = _reference(tokenizer, corpus, max_length)
        got = [wp.encode(text, vocab, config) for text in corpus]
        bad = [k for k in range(len(corpus)) if got[k] != ref[k]]
        print(f"\nmax_length {max_length}: {len(bad)} of {len(corpus)} strings differ from the teacher's tokenizer")
        assert not bad, f"first: {corpus[bad[0]][:200]!r}"
        if max_length == 24:
            assert sum(len(r) == 24 for r in ref) > 1000   # the cut was exercised


def test_every_code_point_as_the_teacher_tokenizer(teacher_tokenizer):
    """Each code point (a sample of every 5th, and all of the first 0x3000) alone, after a letter, before a
    combining accent and beside an accented capital: what tables and NFD give it."""
    tokenizer, vocab_text = teacher_tokenizer
    vocab = wp.read_vocab(vocab_text)
    config = dict(wp.DEFAULT_CONFIG, max_length=4096)
    cps = [cp for cp in range(0x110000) if (cp < 0x3000 or cp % 5 == 0) and not 0xD800 <= cp <= 0xDFFF]
    texts = ["Ab" + chr(cp) + "\u0301x " + chr(cp) + "\u00c9." for cp in cps]
    ref = tokenizer(texts)["input_ids"]
    bad = [hex(cps[k]) for k, text in enumerate(texts) if wp.encode(text, vocab, config) != ref[k]]
    assert not bad, f"{len(bad)} code points differ: {bad[:20]}"


def test_tables_are_the_teacher_tokenizers():
    """_DROP, _MARKS, _PUNCT, _CJK and _LOWER are what the tokenizers library does, code point by code point
    (a newer tokenizers that changed them would fail here, not in a school)."""
    from tokenizers import normalizers, pre_tokenizers

    def norm(**on):
        kw = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False) | on
        return normalizers.BertNormalizer(**kw).normalize_str

    clean, cjk, strip, low = norm(clean_text=True), norm(handle_chinese_chars=True), norm(strip_accents=True), \
        norm(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cleaned = clean(c)
        assert (cleaned == "") == (cp in (0, 0xFFFD) or wp._in(wp._DROP, cp)), hex(cp)
        assert (cleaned == " ") == (cp in wp._SPACES), hex(cp)
        assert (cjk(c) == f" {c} ") == wp._in(wp._CJK, cp), hex(cp)
        if unicodedata.normalize("NFD", c) == c:
            assert (strip(c) == "") == wp._in(wp._MARKS, cp), hex(cp)
        assert low(c) == (wp._LOWER.get(cp) or c.lower()), hex(cp)
        assert (len(pre.pre_tokenize_str("a" + c + "a")) == 3) == wp._is_punct(c), hex(cp)


def test_rules_by_example(teacher_tokenizer):
    _, vocab_text = teacher_tokenizer
    vocab = wp.read_vocab(vocab_text)
    config = wp.DEFAULT_CONFIG
    assert wp.tokenize("Photosynthesis isn't NA\u00cfVE!", vocab, config) == \
        ["photos", "##yn", "##thesis", "isn", "'", "t", "naive", "!"]
    assert wp.tokenize("x" * 101, vocab, config) == ["[UNK]"]
    assert wp.tokenize("[SEP] [sep]", vocab, config) == ["[SEP]", "[", "sep", "]"]
    assert wp.tokenize("\u5149\u5408", vocab, config) == ["\u5149", "\u5408"]
    assert wp.encode("", vocab, config) == [vocab["[CLS]"], vocab["[SEP]"]]
    long = " ".join(str(i) for i in range(40))          # 40 tokens, one per number
    ids = wp.encode(long, vocab, dict(config, max_length=10))   # budget 8: head 2, tail 6
    assert ids == [vocab["[CLS]"]] + [vocab[str(i)] for i in [0, 1, 34, 35, 36, 37, 38, 39]] + [vocab["[SEP]"]]
    ids = wp.encode(long, vocab, dict(config, max_length=10, truncation="end"))
    assert ids[1:-1] == [vocab[str(i)] for i in range(8)]


def test_source_is_ascii_and_standard_library_only():
    import ast

    raw = WORDPIECE_PY.read_bytes()
    assert raw.isascii()
    imported = {n.name for node in ast.walk(ast.parse(raw)) if isinstance(node, ast.Import) for n in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(raw)) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "bisect", "unicodedata"}


@pytest.mark.parametrize("change, key", [({"max_length": 2}, "max_length"), ({"kind": "tokens"}, "kind"),
                                         ({"truncation": "start"}, "truncation"), ({"vocab_file": "../v"}, "vocab_file"),
                                         ({"vocab_file": "model.onnx"}, "vocab_file"), ({"extra": 1}, "keys"),
                                         ({"specials": "[SEP]"}, "specials"), ({"head_share": 2}, "head_share")])
def test_a_bad_config_is_refused_by_name(change, key):
    with pytest.raises(ValueError, match=key):
        wp.validate_config(dict(wp.DEFAULT_CONFIG, **change))
    with pytest.raises(TypeError):
        wp.validate_config([])


WORDPIECE_DRIVER = """
wp = load("wordpiece")
with open("/vocab.txt", encoding="utf-8") as f:
    vocab = wp.read_vocab(f.read())
t = time.perf_counter()
outs = [[wp.encode(text, vocab, c) for c in header["configs"]] for text in texts]
write_output(outs, time.perf_counter() - t)
"""


def test_pyodide_parity(tmp_path, teacher_tokenizer):
    _, vocab_text = teacher_tokenizer
    vocab = wp.read_vocab(vocab_text)
    corpus = _corpus() + [t for t in _random_strings(300, seed=7) if _has_surrogate(t)][:50]  # surrogates too
    configs = [dict(wp.DEFAULT_CONFIG, max_length=n) for n in LENGTHS]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text(vocab_text, encoding="utf-8")
    header, got, _ = run_in_pyodide(tmp_path, WORDPIECE_DRIVER, {"configs": configs}, corpus, [WORDPIECE_PY, vocab_file])
    print(f"\nPyodide Python {header['python'].split()[0]}, Unicode {header['unicode']}: "
          f"{header['n']} strings x {len(configs)} lengths in {header['seconds']:.2f} s")
    bad = [k for k, text in enumerate(corpus) if got[k] != [wp.encode(text, vocab, c) for c in configs]]
    print(f"{len(bad)} of {len(corpus)} strings differ between CPython and Pyodide")
    assert not bad, f"first: {corpus[bad[0]][:200]!r}"
