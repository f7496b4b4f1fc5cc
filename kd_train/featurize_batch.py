"""Answers -> the dense float32 feature matrix, bit-identical to featurize.py, fast.

featurize.py is the specification (and the file the page runs in Pyodide); it works one answer at
a time in pure Python, about 0.25 ms per answer. This module computes exactly the same vectors in
CPython (training, ``predict``, ``evaluate``, the benchmarks), two ways:

1. ASCII answers (nearly all answers in English) go through kd_train/_featurize_ascii.c, built
   by ``pip install`` when a C compiler is there: featurize.py's rules in C, ≈ 11 µs per answer,
   one answer or many (it remembers the tokens it has seen, as featurize.py does).
2. The other answers, or every answer where the C extension was not built, go through the numpy
   path below: whole-array operations over a batch of answers, ≈ 55 µs per answer in batches.

Neither approximates: every float operation that decides a bit of the output is the one
featurize.py performs, in the same order. In the numpy path:

* n-grams are counted by their content, as featurize.py's ``Counter`` does: word n-grams by their
  token ids; char n-grams by their length and CRC-32 (one-to-one up to 4 bytes; from 5 bytes on,
  checked against the exact bytes, packed in 56 bits), and an answer holding two different char
  n-grams that share a CRC-32 is redone by featurize.py;
* CRC-32s come from the standard table-driven register update, vectorised: each distinct token's
  char n-grams one byte a step; word n-grams from their tokens' registers (CRC-32 is linear, so
  feeding " " + token to a register is a fixed table lookup per token length, then an XOR);
* bucket sums come from ``np.bincount``, which adds its weights one after the other in array
  order, and the array holds word n-grams before char n-grams, each in first-occurrence order:
  the order of featurize.py's loop;
* the squared norm is a running sum over the buckets in order (``np.add.accumulate``; zeros add
  nothing), never numpy's pairwise ``sum``.

Answers outside the numpy path (a token with a non-ASCII character, an answer over 50,000
characters, char n-grams longer than 8, word n-grams longer than 3, more than 65,536 buckets) go
through featurize.py itself, so every row is exact whatever the input.
tests/test_featurize_batch.py compares both paths with featurize.py on thousands of strings, bit for bit.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from kd_train import featurize as spec

try:                                  # featurize.py's rules for ASCII answers in C (built by pip install)
    from kd_train._featurize_ascii import featurize_ascii as _featurize_ascii_c
except ImportError:                   # no C compiler at install time: the numpy path does every answer
    _featurize_ascii_c = None

__all__ = ["featurize_dense", "featurize_each"]

MAX_CHAR_N = 8        # 8 ASCII bytes x 7 bits = a 56-bit content key
MAX_WORD_N = 3
MAX_BUCKETS = 1 << 16
MAX_CHARS = 50_000    # keeps every answer's n-gram positions below 2**20
BATCH = 256           # answers per pass (fastest here); the answer index takes 8 bits
_POS_BITS, _ID_BITS = 20, 35   # int64 sort keys: answer (8 bits) | content id (35) | position (20)
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


# CRC-32's register update is linear over GF(2) in (register, byte), so feeding bytes B to a register r
# gives zeros(len B)(r) ^ feed(B, 0): a word n-gram's CRC follows from its tokens' registers, computed
# once per distinct token. zeros(n) = "feed n zero bytes", a linear map stored as 4 x 256 tables (the
# image of each byte of the register); XOR the 4 looked-up words to apply it.
def _lookup(flat: np.ndarray, base, reg: np.ndarray) -> np.ndarray:
    """XOR of the 4 table words for reg's bytes; the 4 x 256 tables start at ``flat[base]``."""
    return (flat[base + (reg & 0xFF)] ^ flat[base + 256 + ((reg >> np.uint32(8)) & 0xFF)]
            ^ flat[base + 512 + ((reg >> np.uint32(16)) & 0xFF)] ^ flat[base + 768 + (reg >> np.uint32(24))])


def _apply(tables: np.ndarray, reg: np.ndarray) -> np.ndarray:
    return _lookup(tables.reshape(-1), 0, reg)


_IDENTITY = np.arange(256, dtype=np.uint32) << (np.uint32(8) * np.arange(4, dtype=np.uint32)[:, None])
_ZERO_POWERS = [_CRC_TABLE[_IDENTITY & 0xFF] ^ (_IDENTITY >> np.uint32(8))]   # zeros(2**i), i = 0..16
for _ in range(16):
    _ZERO_POWERS.append(_apply(_ZERO_POWERS[-1], _ZERO_POWERS[-1]))
_ZEROS: dict = {}                                    # n -> zeros(n), for the lengths met so far


def _zeros(n: int) -> np.ndarray:
    """The tables of zeros(n), n < 2**17 (tokens are shorter than MAX_CHARS)."""
    tables = _ZEROS.get(n)
    if tables is None:
        tables = _IDENTITY
        for i in range(n.bit_length()):
            if n >> i & 1:
                tables = _apply(_ZERO_POWERS[i], tables)
        if len(_ZEROS) >= 1024:                      # 4 MB at most
            _ZEROS.clear()
        _ZEROS[n] = tables
    return tables


_ZEROS_SHORT = np.stack([_zeros(n) for n in range(64)]).reshape(-1)   # zeros(n) at n * 1024: most words


def featurize_dense(texts: list[str], config: dict) -> np.ndarray:
    """Dense float32 features, one row per text: row i == featurize.featurize(texts[i], config) made dense."""
    params = spec._params(config)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"featurize expects str, got {type(t).__name__}")
    n_buckets, (wlo, whi), (clo, chi), ww, cw, seed = params
    if _featurize_ascii_c is None and len(texts) == 1:  # numpy's per-call overhead: featurize.py is faster
        return featurize_each(texts, config)
    out = np.zeros((len(texts), n_buckets), dtype=np.float32)
    rows = range(len(texts))
    if _featurize_ascii_c is not None and texts:
        rows = _featurize_ascii_c(texts, out, n_buckets, wlo, whi, clo, chi, ww, cw,
                                  zlib.crc32(spec._WORD_PREFIX, seed), zlib.crc32(spec._CHAR_PREFIX, seed))
        if not rows:
            return out
    rest = [texts[row] for row in rows]
    if not (chi <= MAX_CHAR_N and whi <= MAX_WORD_N and n_buckets <= MAX_BUCKETS):
        out[rows] = featurize_each(rest, config)
        return out
    part = out if len(rest) == len(texts) else np.zeros((len(rest), n_buckets), dtype=np.float32)
    for lo in range(0, len(rest), BATCH):
        _featurize_batch(rest[lo:lo + BATCH], config, params, part[lo:lo + BATCH])
    if part is not out:
        out[rows] = part
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
        ascii_text = text.isascii()
        tokens = _ascii_tokens(text) if ascii_text else spec._find_tokens(text.translate(spec._TABLE))
        if not tokens:
            continue
        if len(text) > MAX_CHARS or not (ascii_text or all(map(str.isascii, tokens))):
            _fill(out, row, spec.featurize(text, config))
            continue
        rows.append(row)
        token_lists.append(tokens if ascii_text else [t.encode("ascii") for t in tokens])
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


_find_ascii_tokens = re.compile(rb"[0-9a-z]+").findall


def _ascii_tokens(text: str) -> list[bytes]:
    """featurize.py's tokens of an ASCII text, as bytes: for ASCII its rules are lower-case A-Z,
    delete ' and `, then runs of 0-9 a-z (tests/test_featurize_batch.py checks them against it)."""
    return _find_ascii_tokens(text.encode("ascii").lower().translate(None, b"'`"))


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

    def __init__(self, token_lists: list[list[bytes]]):
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
        # the distinct tokens in one buffer, each between spaces: " t1  t2  t3 " (char n-grams read
        # " token "; token i's own bytes start at base[i] + 1)
        self.buffer = np.frombuffer(b" " + b"  ".join(self.distinct) + b" ", dtype=np.uint8)
        self.base = np.concatenate(([0], np.cumsum(self.length + 2)[:-1]))


def _first_occurrences(answer: np.ndarray, content: np.ndarray, position: np.ndarray,
                       start_of_answer: np.ndarray, size: int, weight: np.ndarray | None = None):
    """Per (answer, content): index of its first occurrence (by position) and its count.

    Returns (mask over the ``size`` occurrences marking first occurrences, count at those indices:
    occurrences, or the sum of their ``weight``). One sort of packed keys answer | content |
    position, so equal contents sit together with the earliest position first.
    """
    key = answer << (_ID_BITS + _POS_BITS) | content << _POS_BITS | position
    key.sort()
    group = key >> _POS_BITS
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    index = start_of_answer[key >> (_ID_BITS + _POS_BITS)] + (key & _POS_MASK)
    if weight is None:
        count = np.diff(np.append(starts, len(key)))
    else:
        count = np.add.reduceat(weight[index], starts) if len(key) else np.zeros(0, np.int64)
    mask = np.zeros(size, dtype=bool)
    mask[index[starts]] = True
    counts = np.zeros(size, dtype=np.int64)
    counts[index[starts]] = count
    return mask, counts


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
    mask, counts = _first_occurrences(answer, content, rank, start_of_answer, len(k))
    sel = np.flatnonzero(mask)
    h = _word_crcs(toks, k[sel], n[sel], start)
    return _contributions(answer[sel], h, counts[sel], weight, n_buckets)


def _word_crcs(toks: _Tokens, first: np.ndarray, n: np.ndarray, start: int) -> np.ndarray:
    """CRC-32 of the word n-grams starting at token occurrence ``first`` with ``n`` tokens, from
    each distinct token's registers: its own bytes after the start value, and " token" after 0."""
    zero = _feed(toks.buffer, toks.base + 1, toks.length, np.zeros(toks.vocabulary, np.uint32))
    # register after the token from the start value, and after " " + token from 0
    own = _apply_each(toks.length, np.full(toks.vocabulary, start ^ 0xFFFFFFFF, np.uint32)) ^ zero
    spaced = _apply_each(toks.length, np.full(toks.vocabulary, _CRC_TABLE[ord(" ")], np.uint32)) ^ zero
    reg = own[toks.id[first]]
    for j in range(1, int(n.max()) if len(n) else 0):
        more = np.flatnonzero(n > j)
        nxt = toks.id[first[more] + j]
        reg[more] = _apply_each(toks.length[nxt] + 1, reg[more]) ^ spaced[nxt]
    return reg ^ np.uint32(0xFFFFFFFF)


def _apply_each(n: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """zeros(n[i]) applied to reg[i], for every i."""
    if len(n) and n.max() < len(_ZEROS_SHORT) // 1024:
        tables, base = _ZEROS_SHORT, n * 1024
    else:
        ns, which = np.unique(n, return_inverse=True)
        tables, base = np.stack([_zeros(int(m)) for m in ns]).reshape(-1), which.astype(np.int64) * 1024
    return _lookup(tables, base, reg)


def _char_grams(toks: _Tokens, lo: int, hi: int, weight: float, start: int, n_buckets: int) -> tuple:
    """Contributions of char n-grams, and the answers to redo with featurize.py (CRC-32 clashes)."""
    crc, content, total, token_start, clash = _token_char_grams(toks, lo, hi, start)
    # each answer's distinct tokens in first-occurrence order, with counts
    mask, counts = _first_occurrences(toks.answer, toks.id, toks.position, toks.first, len(toks.id))
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
    mask, counts = _first_occurrences(answer, content[gram], position, answer_start, len(gram),
                                      weight=np.repeat(d_count, sizes))
    sel = np.flatnonzero(mask)
    redo = np.unique(answer[np.isin(content[gram], clash)]) if len(clash) else np.zeros(0, np.int64)
    return (*_contributions(answer[sel], crc[gram[sel]], counts[sel], weight, n_buckets), redo)


def _token_char_grams(toks: _Tokens, lo: int, hi: int, start: int) -> tuple:
    """Every distinct token's char n-grams in featurize.py's order (n, then position in " token "):
    their CRC-32; a content id (CRC-32 | n - lo << 32) that tells different n-grams apart except the
    ids in ``clash``, shared by different n-grams (rare); per token its n-gram count and first index.

    CRC-32 never maps two different inputs of one length <= 4 bytes to one value (it detects every
    burst error up to 32 bits), so only n-grams of 5 bytes or more are checked against their bytes.
    """
    span = toks.length + 2
    per_n = [np.maximum(span - n + 1, 0) for n in range(lo, hi + 1)]
    total = np.sum(per_n, axis=0)
    token_start = np.concatenate(([0], np.cumsum(total)[:-1]))
    crc = np.empty(int(total.sum()), dtype=np.uint32)
    content = np.empty(len(crc), dtype=np.int64)
    clash = []
    # the n-grams at each (token, position) grow one byte per n: one register update each
    token = np.repeat(np.arange(len(span)), per_n[0])
    position = np.arange(len(token)) - np.repeat(np.cumsum(per_n[0]) - per_n[0], per_n[0])
    offset = toks.base[token] + position
    reg = np.full(len(token), start ^ 0xFFFFFFFF, dtype=np.uint32)
    exact = np.zeros(len(token), dtype=np.int64)     # the bytes, 7 bits each (ASCII)
    block = token_start.copy()
    for n, count in zip(range(lo, hi + 1), per_n):
        if n > lo:
            keep = np.flatnonzero(position < count[token])
            token, position, offset, reg, exact = token[keep], position[keep], offset[keep], reg[keep], exact[keep]
        for j in range(0 if n == lo else n - 1, n):   # all lo bytes first, then the next one
            byte = toks.buffer[offset + j]
            reg = _CRC_TABLE[(reg ^ byte) & 0xFF] ^ (reg >> np.uint32(8))
            exact |= byte.astype(np.int64) << (7 * (MAX_CHAR_N - 1 - j))
        index = block[token] + position
        h = reg ^ np.uint32(0xFFFFFFFF)
        crc[index] = h
        content[index] = h.astype(np.int64) | (n - lo) << 32
        if n > 4:
            clash.append(_shared_crcs(exact, h).astype(np.int64) | (n - lo) << 32)
        block += count
    return crc, content, total, token_start, np.concatenate(clash) if clash else np.zeros(0, np.int64)


def _distinct(values: np.ndarray) -> int:
    s = np.sort(values)
    return int(np.count_nonzero(s[1:] != s[:-1])) + (len(s) > 0)


def _shared_crcs(exact: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The CRC values that two different contents share."""
    if _distinct(exact) == _distinct(h):            # h is a function of exact: no two share one
        return np.zeros(0, np.uint32)
    _, first = np.unique(exact, return_index=True)
    crcs = np.sort(h[first])
    return np.unique(crcs[1:][crcs[1:] == crcs[:-1]])


def _feed(buffer: np.ndarray, offset: np.ndarray, length: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """CRC-32 registers after feeding bytes(buffer[o:o + n]) to reg, for every (o, n, reg): 4 bytes a
    step, then the tail (no final XOR: zlib.crc32(b, s) == _feed(b, ~s) ^ 0xFFFFFFFF)."""
    padded = np.concatenate((buffer, np.zeros(3, np.uint8))).astype(np.uint32)
    words = padded[:-3] | padded[1:-2] << np.uint32(8) | padded[2:-1] << np.uint32(16) | padded[3:] << np.uint32(24)
    order = np.argsort(-length, kind="stable")
    offset, length, reg = offset[order], length[order], reg[order]
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
    out[order] = reg
    return out


def _contributions(answer: np.ndarray, h: np.ndarray, count: np.ndarray, weight: float, n_buckets: int) -> tuple:
    """(answer, bucket, signed value) of distinct n-grams: ``sign * weight * sqrt(count)`` into ``h % n_buckets``."""
    value = weight * np.sqrt(count.astype(np.float64))   # sqrt(1) is exactly 1: featurize.py's tf == 1 path
    np.negative(value, out=value, where=h >= np.uint32(0x80000000))
    bucket = h & np.uint32(n_buckets - 1) if n_buckets & (n_buckets - 1) == 0 else h % np.uint32(n_buckets)
    return answer, bucket.astype(np.int64), value
