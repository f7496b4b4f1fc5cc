"""featurize_batch.featurize_dense must equal featurize.featurize made dense, bit for bit: through the
compiled ASCII featurizer (kd_train/_featurize_ascii.c), and without it (featurize.py for every answer)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kd_train import featurize_batch
from kd_train.config import FeaturizerConfig
from kd_train.featurize import DEFAULT_CONFIG, featurize
from test_featurize import TRICKY, _corpus, _random_strings


_C = featurize_batch._featurize_ascii_c


@pytest.fixture(autouse=True, params=["c", "python"])
def impl(request, monkeypatch) -> str:
    """Every test runs twice: with the compiled ASCII featurizer, and as where it was not built."""
    if request.param == "python":
        monkeypatch.setattr(featurize_batch, "_featurize_ascii_c", None)
    elif _C is None:
        message = ("kd_train/_featurize_ascii.c is not built: install a C compiler (apt install gcc) and "
                   "run pip install -e . again")
        if os.environ.get("KD_TRAIN_REQUIRE_C"):
            pytest.fail(message)
        pytest.skip(message)
    return request.param


def reference(texts: list[str], config: dict) -> np.ndarray:
    out = np.zeros((len(texts), config["n_buckets"]), dtype=np.float32)
    for row, text in enumerate(texts):
        for bucket, value in featurize(text, config):
            out[row, bucket] = value
    return out


def assert_bit_identical(texts: list[str], config: dict) -> None:
    got, want = featurize_batch.featurize_dense(texts, FeaturizerConfig.from_dict(config)), reference(texts, config)
    differ = np.flatnonzero((got.view(np.uint32) != want.view(np.uint32)).any(axis=1))
    assert not len(differ), f"{len(differ)} rows differ, first: {texts[differ[0]][:80]!r}"


def test_same_bits_as_featurize_on_the_parity_corpus():
    assert_bit_identical(_corpus(), DEFAULT_CONFIG)


ASCII_WORDS = "the cell cells membrane protein a an of to osmosis diffusion it its x y z 1 2 10 ab ba".split()


def _ascii_answers(n: int, seed: int) -> list[str]:
    """Answers with many repeated words and n-grams: the fast path's counting and ordering."""
    rng = np.random.default_rng(seed)
    seps = [" ", "  ", ", ", ". ", "\n", "-", "'", "?!"]
    return ["".join(rng.choice(ASCII_WORDS) + rng.choice(seps) for _ in range(rng.integers(0, 120)))
            for _ in range(n)]


@pytest.mark.parametrize("config", [
    DEFAULT_CONFIG,
    dict(DEFAULT_CONFIG, n_buckets=7),                      # many collisions: order of sums matters
    dict(DEFAULT_CONFIG, n_buckets=1),
    dict(DEFAULT_CONFIG, word_ngram_range=[1, 3], char_ngram_range=[1, 8], seed=12345),
    dict(DEFAULT_CONFIG, word_weight=0.0),
    dict(DEFAULT_CONFIG, char_weight=0.0, word_ngram_range=[2, 3]),
    dict(DEFAULT_CONFIG, word_weight=0.3, char_weight=2.5, n_buckets=65536),
    dict(DEFAULT_CONFIG, word_ngram_range=[1, 4], char_ngram_range=[3, 9]),   # beyond the fast path
])
def test_same_bits_for_other_configs(config):
    texts = _ascii_answers(600, seed=1) + TRICKY + _random_strings(200) + ["", "   ", "a", "a a a a"]
    assert_bit_identical(texts, config)


def test_long_answers_mixed_answers_and_empty_input():
    texts = _ascii_answers(205, seed=2)
    texts[7] = "the cell " * 6000
    texts[9] = "Die Wärme fließt in das Eis"                   # not ASCII: featurize.py's path
    assert_bit_identical(texts, DEFAULT_CONFIG)
    assert featurize_batch.featurize_dense([], FeaturizerConfig()).shape == (0, DEFAULT_CONFIG["n_buckets"])


def test_rejects_what_featurize_rejects():
    with pytest.raises(TypeError):
        featurize_batch.featurize_dense(["ok", 3], FeaturizerConfig())
    with pytest.raises(ValueError, match="n_buckets"):
        FeaturizerConfig.from_dict(dict(DEFAULT_CONFIG, n_buckets=0))   # no config to featurize with
    with pytest.raises(TypeError, match="FeaturizerConfig"):
        featurize_batch.featurize_dense(["ok"], DEFAULT_CONFIG)         # a dict: checked where it comes in, not here


def _crc_twins(length: int = 8) -> tuple[str, str]:
    """Two different lowercase strings with the same CRC-32 (a birthday search, ~1e5 tries; for
    strings this short it needs 8 letters: below 5 bytes CRC-32 has no collisions at all, and
    lowercase letters differ in 5 bits a byte only)."""
    import random
    import zlib

    rng, seen = random.Random(0), {}
    while True:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
        h = zlib.crc32(s.encode())
        if h in seen and seen[h] != s:
            return seen[h], s
        seen[h] = s


def test_char_ngrams_with_one_crc_are_still_counted_apart(monkeypatch, impl):
    # equal-length strings with one CRC-32 keep it under any prefix and seed (CRC is affine), so
    # these two tokens' 8-grams clash inside one answer: the C featurizer counts n-grams by their
    # bytes, not their CRC (and never calls featurize.py for an ASCII answer)
    a, b = _crc_twins()
    config = dict(DEFAULT_CONFIG, char_ngram_range=[2, 8])
    texts = _ascii_answers(20, seed=3) + [f"{a} {b}", f"the {a} and {b} {b}"]
    calls = []
    original = featurize_batch.spec.featurize
    monkeypatch.setattr(featurize_batch.spec, "featurize", lambda t, c: calls.append(t) or original(t, c))
    assert_bit_identical(texts, config)
    assert (calls == []) if impl == "c" else (len(calls) == len(texts))


def test_long_tokens_in_word_ngrams():
    # tokens at and past 63 characters, and far longer ones, inside word n-grams (the fast path takes
    # any ASCII token under MAX_CHARS)
    long_words = ["x" * 63, "y" * 64, "z" * 200, "ab" * 700, "q"]
    rng = np.random.default_rng(4)
    texts = [" ".join(rng.choice(long_words + ASCII_WORDS, size=rng.integers(1, 30))) for _ in range(200)]
    assert_bit_identical(texts, dict(DEFAULT_CONFIG, word_ngram_range=[1, 3]))


def test_crc_twins_in_different_answers():
    a, b = _crc_twins()
    config = dict(DEFAULT_CONFIG, char_ngram_range=[2, 8])
    texts = [f"the {a} cell", f"a {b} membrane", f"{a} {a}"]
    assert_bit_identical(texts, config)


def test_c_featurizer_checks_its_output_array(impl):
    if impl != "c":
        pytest.skip("the C featurizer's own arguments")
    args = (2048, 1, 2, 2, 5, 1.0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="float32"):
        _C(["a", "b"], np.zeros((1, 2048), np.float32), *args)
    with pytest.raises(ValueError, match="float32"):
        _C(["a"], np.zeros((1, 2048), np.float64), *args)
    with pytest.raises(ValueError, match="config"):
        _C(["a"], np.zeros((1, 2048), np.float32), 2048, 2, 1, 2, 5, 1.0, 1.0, 0, 0)
    assert _C(["a", "\u00e9t\u00e9", "b"], np.zeros((3, 2048), np.float32), *args) == [1]
    assert _C(["a " * (1 << 21) + "b"], np.zeros((1, 2048), np.float32), *args) == [0]   # over 2**22 characters


def test_c_featurizer_forgets_and_relearns_tokens(impl):
    if impl != "c":
        pytest.skip("the C featurizer's token cache")
    from kd_train import _featurize_ascii

    texts = _ascii_answers(300, seed=6) + ["the cell " * 50]
    try:
        _featurize_ascii.set_cache_limits(5, 40)         # starts afresh before nearly every answer
        assert_bit_identical(texts, DEFAULT_CONFIG)
        assert_bit_identical(texts, dict(DEFAULT_CONFIG, seed=7, char_ngram_range=[1, 10]))
    finally:
        _featurize_ascii.set_cache_limits(1 << 16, 1 << 19)
    assert_bit_identical(texts, DEFAULT_CONFIG)
