"""Many answers -> the dense float32 feature matrix, with numpy, bit-identical to featurize.py.

featurize.py is the specification (and the file the page runs in Pyodide); it works one answer at
a time in pure Python, about 0.25 ms per answer. This module computes exactly the same vectors
for a batch of answers with whole-array numpy operations (CPython only: training, ``predict``,
``evaluate``, the benchmarks). It never approximates: every float operation that decides a bit of
the output is the one featurize.py performs, in the same order:

* n-grams are counted by their content, as featurize.py's ``Counter`` does: word n-grams by their
  token ids; char n-grams by their CRC-32, checked against their exact bytes (packed in 56 bits),
  and an answer where two different char n-grams share a CRC-32 is redone by featurize.py;
* the CRC-32 of each n-gram is computed with the standard table-driven register update (4 bytes a
  step for word n-grams), vectorised over n-grams;
* bucket sums come from ``np.bincount``, which adds its weights one after the other in array
  order, and the array holds word n-grams before char n-grams, each in first-occurrence order:
  the order of featurize.py's loop;
* the squared norm is a running sum over the buckets in order (``np.add.accumulate``; zeros add
  nothing), never numpy's pairwise ``sum``.

Answers outside the fast path (a token with a non-ASCII character, an answer over 50,000
characters, char n-grams longer than 8, word n-grams longer than 3, more than 65,536 buckets) go
through featurize.py itself, so every row is exact whatever the input.
tests/test_featurize_batch.py compares the two on thousands of strings, bit for bit.
"""

from __future__ import annotations

import zlib

import numpy as np

from kd_train import featurize as spec

__all__ = ["featurize_dense", "featurize_each"]

MAX_CHAR_N = 8        # 8 ASCII bytes x 7 bits = a 56-bit content key
MAX_WORD_N = 3
MAX_BUCKETS = 1 << 16
MAX_CHARS = 50_000    # keeps every answer's n-gram positions below 2**20
BATCH = 256           # answers per pass (fastest here); the answer index may take 10 bits
_POS_BITS, _ID_BITS = 20, 33   # int64 sort keys: answer (10 bits) | content id (33) | position (20)
_POS_MASK = (1 << _POS_BITS) - 1


def _crc_tables() -> np.ndarray:
    """CRC-32 (reflected, polynomial 0xEDB88320) tables for slicing by 4: row k advances k+1 bytes."""
    tables = np.zeros((4, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        tables[0, i] = c
    for k in range(1, 4):
        tables[k] = (tables[k - 1] >> np.uint32(8)) ^ tables[0][tables[k - 1] & 0xFF]
    return tables


_CRC_TABLES = _crc_tables()
_CRC_TABLE = _CRC_TABLES[0]


def featurize_dense(texts: list[str], config: dict) -> np.ndarray:
    """Dense float32 features, one row per text: row i == featurize.featurize(texts[i], config) made dense."""
    params = spec._params(config)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"featurize expects str, got {type(t).__name__}")
    n_buckets, (_, whi), (_, chi) = params[0], params[1], params[2]
    if not (chi <= MAX_CHAR_N and whi <= MAX_WORD_N and n_buckets <= MAX_BUCKETS):
        return featurize_each(texts, config)
    out = np.zeros((len(texts), n_buckets), dtype=np.float32)
    for lo in range(0, len(texts), BATCH):
        _featurize_batch(texts[lo:lo + BATCH], config, params, out[lo:lo + BATCH])
    return out


def featurize_each(texts: list[str], config: dict) -> np.ndarray:
    """The same matrix through featurize.py itself, one answer at a time (the page's path)."""
    out = np.zeros((len(texts), config["n_buckets"]), dtype=np.float32)
    for row, text in enumerate(texts):
        _fill(out, row, spec.featurize(text, config))
    return out


def _fill(out: np.ndarray, row: int, sparse: list[tuple[int, float]]) -> None:
    for bucket, value in sparse:
        out[row, bucket] = value


def _featurize_batch(texts: list[str], config: dict, params: tuple, out: np.ndarray) -> None:
    n_buckets, (wlo, whi), (clo, chi), ww, cw, seed = params
    rows, token_lists = [], []
    for row, text in enumerate(texts):
        tokens = spec._find_tokens(text.translate(spec._TABLE))
        if not tokens:
            continue
        if len(text) > MAX_CHARS or not (text.isascii() or all(map(str.isascii, tokens))):
            _fill(out, row, spec.featurize(text, config))
            continue
        rows.append(row)
        token_lists.append(tokens)
    if not rows:
        return
    toks = _Tokens(token_lists)
    if ww > 0.0 and toks.vocabulary ** whi * MAX_WORD_N >= 1 << 63:   # word keys would overflow
        for row in rows:
            _fill(out, row, spec.featurize(texts[row], config))
        return
    parts, redo = [], np.zeros(0, np.int64)
    if ww > 0.0:
        parts.append(_word_grams(toks, wlo, whi, ww, zlib.crc32(spec._WORD_PREFIX, seed), n_buckets))
    if cw > 0.0:
        *part, redo = _char_grams(toks, clo, chi, cw, zlib.crc32(spec._CHAR_PREFIX, seed), n_buckets)
        parts.append(tuple(part))
    step = max(1, min(256, (1 << 21) // n_buckets))
    for lo in range(0, len(rows), step):
        hi = min(lo + step, len(rows))
        _write_rows(parts, lo, hi, n_buckets, out, np.asarray(rows[lo:hi]))
    for answer in redo.tolist():                     # two char n-grams with one CRC-32: rare
        out[rows[answer]] = 0.0
        _fill(out, rows[answer], spec.featurize(texts[rows[answer]], config))


def _write_rows(parts: list[tuple], lo: int, hi: int, n_buckets: int, out: np.ndarray, rows: np.ndarray) -> None:
    """Sum, normalise and store answers lo..hi-1; ``parts`` hold (answer, bucket, signed value), answer-major."""
    index, value = [], []
    for answer, bucket, v in parts:
        a, b = np.searchsorted(answer, [lo, hi])
        index.append((answer[a:b] - lo) * n_buckets + bucket[a:b])
        value.append(v[a:b])
    # bincount adds its weights strictly in array order: word n-grams, then char n-grams, each in
    # first-occurrence order, which is featurize.py's order of accumulation
    sums = np.bincount(np.concatenate(index), weights=np.concatenate(value), minlength=(hi - lo) * n_buckets)
    nonzero = np.flatnonzero(sums != 0.0)            # answer by answer, buckets in order
    if not len(nonzero):
        return
    v = sums[nonzero]
    answer = nonzero // n_buckets
    # the squared norm summed as featurize.py does: one bucket after the other (zeros add nothing)
    first = np.searchsorted(answer, np.arange(hi - lo + 1))
    squares = np.zeros((hi - lo, int(np.diff(first).max())))
    squares[answer, np.arange(len(v)) - first[answer]] = v * v
    norm = np.sqrt(np.add.accumulate(squares, axis=1)[:, -1])
    norm[norm == 0.0] = np.inf                       # all squares underflowed: featurize.py gives []
    shift = (rows - np.arange(hi - lo)) * n_buckets   # row in this chunk -> row of the output
    out.put(nonzero + shift[answer], (v / norm[answer]).astype(np.float32))


class _Tokens:
    """The batch's tokens: per occurrence its answer, position and token id; the distinct tokens."""

    def __init__(self, token_lists: list[list[str]]):
        self.per_answer = np.array([len(t) for t in token_lists], dtype=np.int64)
        self.first = np.concatenate(([0], np.cumsum(self.per_answer)[:-1]))
        flat = [t for tokens in token_lists for t in tokens]
        self.answer = np.repeat(np.arange(len(token_lists), dtype=np.int64), self.per_answer)
        self.position = np.arange(len(flat)) - self.first[self.answer]
        self.distinct = list(dict.fromkeys(flat))
        ids = dict(zip(self.distinct, range(len(self.distinct))))
        self.id = np.fromiter(map(ids.__getitem__, flat), dtype=np.int64, count=len(flat))
        self.vocabulary = len(ids)
        self.length = np.fromiter(map(len, self.distinct), dtype=np.int64, count=len(self.distinct))
        self.n_answers = len(token_lists)
        self._token_lists = token_lists

    def joined(self) -> tuple[np.ndarray, np.ndarray]:
        """Each answer's tokens joined by single spaces, one buffer; the byte offset of every occurrence."""
        text = " ".join(" ".join(tokens) for tokens in self._token_lists)
        lengths = self.length[self.id] + 1
        start = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8), start


def _first_occurrences(answer: np.ndarray, content: np.ndarray, position: np.ndarray,
                       start_of_answer: np.ndarray, size: int, weight: np.ndarray | None = None,
                       verify: np.ndarray | None = None):
    """Per (answer, content): index of its first occurrence (by position) and its count.

    Returns (mask over the ``size`` occurrences marking first occurrences, count at those indices,
    answers where two occurrences share a content id but differ in ``verify``: with ``verify`` the
    exact content and ``content`` a hash of it, those answers' counts are wrong and must be redone).
    One sort of packed keys answer | content | position, so equal contents sit together with the
    earliest position first.
    """
    key = answer << (_ID_BITS + _POS_BITS) | content << _POS_BITS | position
    key.sort()
    group = key >> _POS_BITS
    same = group[1:] == group[:-1]
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    index = start_of_answer[key >> (_ID_BITS + _POS_BITS)] + (key & _POS_MASK)
    if weight is None:
        count = np.diff(np.append(starts, len(key)))
    else:
        count = np.add.reduceat(weight[index], starts) if len(key) else np.zeros(0, np.int64)
    mask = np.zeros(size, dtype=bool)
    mask[index[starts]] = True
    counts = np.zeros(size, dtype=np.int64)
    counts[index[starts]] = count
    clash = np.zeros(0, np.int64)
    if verify is not None and len(key):
        exact = verify[index]
        clash = np.unique(key[1:][same & (exact[1:] != exact[:-1])] >> (_ID_BITS + _POS_BITS))
    return mask, counts, clash


def _word_grams(toks: _Tokens, lo: int, hi: int, weight: float, start: int, n_buckets: int) -> tuple:
    v = np.uint64(toks.vocabulary)
    occ, keys, lengths = [], [], []
    for n in range(lo, hi + 1):
        k = np.flatnonzero(toks.position <= toks.per_answer[toks.answer] - n)
        key = np.zeros(len(k), dtype=np.uint64)
        for j in range(n):
            key = key * v + toks.id[k + j].astype(np.uint64)
        occ.append(k)
        keys.append(key * np.uint64(MAX_WORD_N) + np.uint64(n - lo))
        lengths.append(np.full(len(k), n))
    content = np.concatenate(keys)
    if toks.vocabulary ** hi * MAX_WORD_N >= 1 << _ID_BITS:       # make the ids compact
        content = np.unique(content, return_inverse=True)[1]
    content = content.astype(np.int64)
    # answer by answer; stable, so each answer keeps featurize.py's order (n, then position)
    k, n = np.concatenate(occ), np.concatenate(lengths)
    order = np.argsort(toks.answer[k], kind="stable")
    k, n, content = k[order], n[order], content[order]
    answer = toks.answer[k]
    start_of_answer = np.concatenate(([0], np.cumsum(np.bincount(answer, minlength=toks.n_answers))[:-1]))
    rank = np.arange(len(k)) - start_of_answer[answer]
    mask, counts, _ = _first_occurrences(answer, content, rank, start_of_answer, len(k))
    sel = np.flatnonzero(mask)
    buffer, offset = toks.joined()
    first, last = k[sel], k[sel] + n[sel] - 1
    h = _crc32_slices(buffer, offset[first], offset[last] + toks.length[toks.id[last]] - offset[first], start)
    return _contributions(answer[sel], h, counts[sel], weight, n_buckets)


def _char_grams(toks: _Tokens, lo: int, hi: int, weight: float, start: int, n_buckets: int) -> tuple:
    """Contributions of char n-grams, and the answers to redo with featurize.py (CRC-32 clashes)."""
    # every distinct token's char n-grams, in featurize.py's order (n, then position in " token "):
    # the exact content packed in 56 bits, and its CRC-32
    span = toks.length + 2
    buffer = np.frombuffer("".join(" " + t + " " for t in toks.distinct).encode("ascii"), dtype=np.uint8)
    base = np.concatenate(([0], np.cumsum(span)[:-1]))
    per_n = [np.maximum(span - n + 1, 0) for n in range(lo, hi + 1)]
    total = np.sum(per_n, axis=0)
    token_start = np.concatenate(([0], np.cumsum(total)[:-1]))
    exact = np.empty(int(total.sum()), dtype=np.int64)
    crc = np.empty(len(exact), dtype=np.uint32)
    block = token_start.copy()
    for n, count in zip(range(lo, hi + 1), per_n):
        token = np.repeat(np.arange(len(span)), count)
        position = np.arange(len(token)) - np.repeat(np.cumsum(count) - count, count)
        offset = base[token] + position
        k = np.zeros(len(token), dtype=np.int64)
        reg = np.full(len(token), start ^ 0xFFFFFFFF, dtype=np.uint32)
        for j in range(n):
            byte = buffer[offset + j]
            k |= byte.astype(np.int64) << (7 * (MAX_CHAR_N - 1 - j))
            reg = _CRC_TABLE[(reg ^ byte) & 0xFF] ^ (reg >> np.uint32(8))
        exact[block[token] + position] = k
        crc[block[token] + position] = reg ^ np.uint32(0xFFFFFFFF)
        block += count

    # each answer's distinct tokens in first-occurrence order, with counts
    mask, counts, _ = _first_occurrences(toks.answer, toks.id, toks.position, toks.first, len(toks.id))
    d = np.flatnonzero(mask)
    d_answer, d_token, d_count = toks.answer[d], toks.id[d], counts[d]
    # their n-grams, one after the other: featurize.py's order of first occurrences
    sizes = total[d_token]
    seq_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    gram = np.repeat(token_start[d_token] - seq_start, sizes) + np.arange(int(sizes.sum()))
    answer = np.repeat(d_answer, sizes)
    answer_start = np.concatenate(([0], np.cumsum(np.bincount(d_answer, weights=sizes, minlength=toks.n_answers)
                                                  .astype(np.int64))[:-1]))
    position = np.arange(len(gram)) - answer_start[answer]
    h = crc[gram]
    # n-grams are told apart by their CRC-32 (cheap), checked against the exact content
    mask, counts, clash = _first_occurrences(answer, h.astype(np.int64), position, answer_start, len(gram),
                                             weight=np.repeat(d_count, sizes), verify=exact[gram])
    sel = np.flatnonzero(mask)
    return (*_contributions(answer[sel], h[sel], counts[sel], weight, n_buckets), clash)


def _crc32_slices(buffer: np.ndarray, offset: np.ndarray, length: np.ndarray, start: int) -> np.ndarray:
    """zlib.crc32(bytes(buffer[o:o + n]), start) for every (o, n), as uint32: 4 bytes a step, then the tail."""
    padded = np.concatenate((buffer, np.zeros(3, np.uint8))).astype(np.uint32)
    words = padded[:-3] | padded[1:-2] << np.uint32(8) | padded[2:-1] << np.uint32(16) | padded[3:] << np.uint32(24)
    order = np.argsort(-length, kind="stable")
    offset, length = offset[order], length[order]
    reg = np.full(len(order), start ^ 0xFFFFFFFF, dtype=np.uint32)
    descending = -length
    t0, t1, t2, t3 = _CRC_TABLES
    for k in range(int(length[0]) // 4 if len(order) else 0):
        active = int(np.searchsorted(descending, -(4 * k + 4), side="right"))   # >= 4k + 4 bytes
        r = reg[:active] ^ words[offset[:active] + 4 * k]
        reg[:active] = (t3[r & 0xFF] ^ t2[(r >> np.uint32(8)) & 0xFF]
                        ^ t1[(r >> np.uint32(16)) & 0xFF] ^ t0[r >> np.uint32(24)])
    done = length - length % 4
    for j in range(3):
        tail = np.flatnonzero(length % 4 > j)
        r = reg[tail]
        reg[tail] = t0[(r ^ buffer[offset[tail] + done[tail] + j]) & 0xFF] ^ (r >> np.uint32(8))
    out = np.empty_like(reg)
    out[order] = reg ^ np.uint32(0xFFFFFFFF)
    return out


def _contributions(answer: np.ndarray, h: np.ndarray, count: np.ndarray, weight: float, n_buckets: int) -> tuple:
    """(answer, bucket, signed value) of distinct n-grams: ``sign * weight * sqrt(count)`` into ``h % n_buckets``."""
    value = np.where(count == 1, weight, weight * np.sqrt(count.astype(np.float64)))
    value = np.where(h & np.uint32(0x80000000), -value, value)
    return answer, (h % np.uint32(n_buckets)).astype(np.int64), value
