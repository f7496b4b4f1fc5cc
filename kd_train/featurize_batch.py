"""Answers -> the dense float32 feature matrix, bit-identical to featurize.py, fast where it matters.

featurize.py is the specification (and the file the page runs in Pyodide); it works one answer at
a time in pure Python, about 0.23 ms per answer. Training, ``predict``, ``evaluate`` and the
benchmarks featurize many answers, so ASCII answers (nearly all answers in English) go through
kd_train/_featurize_ascii.c, built by ``pip install`` when a C compiler is there: featurize.py's
rules in C, about 11 µs per answer, one answer or many (it remembers the tokens it has seen, as
featurize.py does). Every other answer (a non-ASCII character anywhere, or every answer where the
extension was not built) goes through featurize.py itself. There is one fast path, and nothing
approximates: tests/test_featurize_batch.py compares both with featurize.py on thousands of
strings, bit for bit. (A numpy path was removed to keep one fast path: it took ASCII tokens only,
so answers with a non-ASCII character went through featurize.py before too — 220 µs per SAF German
answer either way, measured — and it was faster than featurize.py only where the C extension was
not built.)
"""

from __future__ import annotations

import zlib

import numpy as np

from kd_train import featurize as spec
from kd_train.config import FeaturizerConfig, TokenConfig

try:                                  # featurize.py's rules for ASCII answers in C (built by pip install)
    from kd_train._featurize_ascii import featurize_ascii as _featurize_ascii_c
except ImportError:                   # no C compiler at install time: featurize.py does every answer
    _featurize_ascii_c = None

__all__ = ["featurize_dense"]


def featurize_dense(texts: list[str], config: FeaturizerConfig) -> np.ndarray:
    """Dense float32 features, one row per text: row i == featurize.featurize(texts[i], config.as_dict()) made dense.
    (``config`` was checked when it was made; the C featurizer leaves any text that is not an ASCII str to
    featurize.py, which raises TypeError for one that is not a str.)"""
    if not isinstance(config, FeaturizerConfig):
        raise TypeError(f"featurize_dense takes a FeaturizerConfig, got {type(config).__name__} "
                        "(a featurize.py dict: FeaturizerConfig.from_dict(it))")
    n_buckets, (wlo, whi), (clo, chi) = config.n_buckets, config.word_ngram_range, config.char_ngram_range
    out = np.zeros((len(texts), n_buckets), dtype=np.float32)
    rows = range(len(texts))
    if _featurize_ascii_c is not None and texts:
        rows = _featurize_ascii_c(texts, out, n_buckets, wlo, whi, clo, chi, config.word_weight, config.char_weight,
                                  zlib.crc32(spec._WORD_PREFIX, config.seed), zlib.crc32(spec._CHAR_PREFIX, config.seed))
    as_dict = config.as_dict() if len(rows) else None
    for row in rows:                  # the rows the C featurizer left: through featurize.py
        for bucket, value in spec.featurize(texts[row], as_dict):
            out[row, bucket] = value
    return out


def token_matrix(responses: list[str], config: TokenConfig) -> np.ndarray:
    """``featurize.token_ids`` of each answer, one row each, padded with 0 to the longest: int32
    [n, length >= 1], the sequence scorer's input (no fast path: featurize.py's own function)."""
    tokens = config.as_dict()
    rows = [spec.token_ids(text, tokens) for text in responses]
    out = np.zeros((len(rows), max([1, *map(len, rows)])), dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
