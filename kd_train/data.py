"""Response tables: load, validate at the boundary, split.

A response table is CSV or TSV, UTF-8 (a BOM and CRLF line ends are fine), with the header
``id, item, response, score``. ``score`` is an integer, or empty for an unlabeled answer. An empty
``response`` is valid: a student can hand in nothing, and it is kept and scored like any answer.
The optional items table has ``item`` and any of ``question, reference_answer, score_min,
score_max`` (and may carry more columns, which are ignored).

Every problem is reported as a :class:`DataError` that names the file, the row (and the line it
starts on), the column, and how to fix it. Rows are never dropped silently.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

RESPONSE_COLUMNS = ("id", "item", "response", "score")
ITEM_COLUMNS = ("item", "question", "reference_answer", "score_min", "score_max")
ASAP_FILES = {
    "train": "train.csv",
    "test": "test_public.csv",
    "unlabeled": "test_private_unlabeled.csv",
    "items": "items.csv",
}

FIELD_LIMIT = 16 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)


class UserError(Exception):
    """A mistake the user can fix; the CLI prints its message as one line and exits non-zero."""


class DataError(UserError, ValueError):
    """Bad input: the message says where (file, row, column) and how to fix it."""


UNLABELED = -100  # the label index of an answer nobody scored; cross-entropy ignores it


@dataclass(frozen=True)
class Item:
    item: str
    question: str = ""
    reference_answer: str = ""
    score_min: int | None = None
    score_max: int | None = None
    stimulus: str = ""  # the reading text or task material the question refers to (optional)

    @property
    def score_values(self) -> list[int] | None:
        if self.score_min is None or self.score_max is None:
            return None
        return list(range(self.score_min, self.score_max + 1))


@dataclass
class Table:
    """Columns of a response table; ``rows[i]`` is the file row (2 = first data row)."""

    path: str
    ids: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    scores: list[int | None] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: list[int]) -> "Table":
        return Table(
            path=self.path,
            ids=[self.ids[i] for i in indices],
            items=[self.items[i] for i in indices],
            responses=[self.responses[i] for i in indices],
            scores=[self.scores[i] for i in indices],
            rows=[self.rows[i] for i in indices],
            extras={k: [v[i] for i in indices] for k, v in self.extras.items()},
        )

    def for_item(self, item: str) -> "Table":
        return self.take([i for i, it in enumerate(self.items) if it == item])

    def labelled(self) -> "Table":
        return self.take([i for i, s in enumerate(self.scores) if s is not None])

    def item_ids(self) -> list[str]:
        return sorted(set(self.items), key=_natural_key)

    def to_csv(self, scores: bool = True) -> str:
        """The table as CSV text that :func:`read_responses` reads back: id, item, response (and score)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "item", "response", "score"][:4 if scores else 3])
        writer.writerows(row[:4 if scores else 3] for row in zip(self.ids, self.items, self.responses, self.scores))
        return buf.getvalue()


def concat(a: Table, b: Table) -> Table:
    """Rows of ``a`` then ``b`` (extras kept only where both have them)."""
    keys = [k for k in a.extras if k in b.extras]
    return Table(
        path=a.path,
        ids=a.ids + b.ids,
        items=a.items + b.items,
        responses=a.responses + b.responses,
        scores=a.scores + b.scores,
        rows=a.rows + b.rows,
        extras={k: a.extras[k] + b.extras[k] for k in keys},
    )


@dataclass
class Dataset:
    train: Table
    test: Table | None
    unlabeled: Table | None
    items: dict[str, Item]


def _natural_key(text: str) -> tuple:
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def where(path: str, row: int | None = None, line: int | None = None, column: str | None = None) -> str:
    parts = [Path(path).name if path else "<table>"]
    if row is not None:
        parts.append(f"row {row}" + (f" (line {line})" if line is not None and line != row else ""))
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


RESAVE_AS_UTF8 = ("save it as UTF-8 (in Excel: Save As, 'CSV UTF-8 (Comma delimited)'; in LibreOffice: "
                  "character set 'Unicode (UTF-8)') and try again")


def _decode(raw: bytes, path: str) -> str:
    """UTF-8 (a BOM is fine), or UTF-16 with a byte-order mark (as Excel's 'Unicode text' saves it)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(f"{where(path)}: the file starts like UTF-16 (a byte-order mark) but is not valid "
                            f"UTF-16; {RESAVE_AS_UTF8}") from None
    sample = raw[:4096]
    if len(sample) >= 4 and max(sample[0::2].count(0), sample[1::2].count(0)) > len(sample) / 4:
        order = "big-endian" if sample[0::2].count(0) > sample[1::2].count(0) else "little-endian"
        raise DataError(f"{where(path)}: the file looks like UTF-16 ({order}, without a byte-order mark: every "
                        f"other byte is zero), not UTF-8; {RESAVE_AS_UTF8}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{where(path)}: line {line}, byte {col} is not valid UTF-8 ({raw[err.start:err.start + 4]!r}); "
            "save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8') and try again"
        ) from None


DELIMITERS = (",", ";", "\t")   # comma, semicolon (spreadsheets where ',' is the decimal mark), tab


def _delimiter(path: str, first_line: str, required: tuple[str, ...] = ()) -> str:
    """The header line's delimiter, as the page finds it: the one that splits the header into the
    required columns (a TSV or a semicolon CSV saved as .csv too), else the one it holds most of
    (ties: the extension's, tab for .tsv/.tab, else comma)."""
    preferred = "\t" if path.lower().endswith((".tsv", ".tab")) else ","
    candidates = [preferred] + [d for d in DELIMITERS if d != preferred]
    for d in candidates:
        try:
            header = {h.strip() for h in next(csv.reader([first_line], delimiter=d), [])}
        except csv.Error:
            continue
        if required and all(c in header for c in required):
            return d
    return max(candidates, key=first_line.count) if any(first_line.count(d) for d in candidates) else preferred


def read_records(path: str | os.PathLike, required: tuple[str, ...], what: str):
    """Yield (row_number, line_number, dict) for each data row after checking the header."""
    path = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path (it is read relative to {os.getcwd()})") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a {what} CSV file") from None
    text = _decode(raw, path)
    _refuse_nul(text, path)
    if not text.strip():
        raise DataError(f"{where(path)}: the file is empty; expected a header row '{','.join(required)}' and data rows")
    first_line = text.split("\n", 1)[0].rstrip("\r")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, first_line, required), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        _check_header(path, header, required, what)
        previous_line = reader.line_num
        row_number = 1
        for values in reader:
            row_number += 1
            line = previous_line + 1
            previous_line = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip() and len(header) > 1):
                continue  # blank line between rows
            if len(values) != len(header):
                raise DataError(
                    f"{where(path, row_number, line)}: {len(values)} fields but the header has {len(header)}; "
                    "quote text that contains the delimiter (\"like, this\") or fix the row"
                )
            yield row_number, line, dict(zip(header, values))
    except csv.Error as err:
        if "field larger than field limit" in str(err):
            raise DataError(
                f"{where(path, None)}: line {reader.line_num}: a field is longer than {FIELD_LIMIT // (1 << 20)} MB; "
                "no answer is that long, so a quote is probably left open on or before that line (close it), "
                "or the file is not a response table"
            ) from None
        raise DataError(
            f"{where(path, None)}: line {reader.line_num}: malformed CSV ({err}); "
            "check for an unclosed quote on or before that line"
        ) from None


def _refuse_nul(text: str, path: str) -> None:
    """A NUL character means a binary or UTF-16 file, or a damaged one: say where, never score it."""
    at = text.find("\x00")
    if at < 0:
        return
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    raise DataError(
        f"{where(path)}: line {line}, character {col} is a NUL character (\\x00), which no text answer contains; "
        "the file may be binary or saved as UTF-16: save it as 'CSV UTF-8' and try again"
    )


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def item_folder(item: str) -> str:
    """A safe, unique folder name for an item id: the id itself when it is a plain name (letters,
    digits, '_', '-', inner dots; at most 64 characters), else a slug of it plus 8 hex digits of its
    sha256 (``"Frage 7: Käufe / wer bezahlt?"`` -> ``"Frage-7-Kaufe-wer-bezahlt-aebd5fce"``). Never
    contains a path separator, '..', a colon, a control character or a trailing space or dot."""
    if (len(item) <= 64 and _SAFE_NAME.fullmatch(item) and item.split(".")[0].lower() not in _WINDOWS_RESERVED):
        return item
    ascii_text = unicodedata.normalize("NFKD", item).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-")[:40].rstrip("-") or "item"
    return f"{slug}-{hashlib.sha256(item.encode('utf-8')).hexdigest()[:8]}"


def _check_header(path: str, header: list[str], required: tuple[str, ...], what: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"{where(path, 1)}: column '{name}' appears twice in the header; rename or remove one")
        seen.add(name)
    missing = [c for c in required if c not in header]
    if not missing:
        return
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, [h.lower() for h in header if h not in required], n=1, cutoff=0.6)
        if close:
            original = next(h for h in header if h.lower() == close[0])
            hints.append(f"'{original}' looks like '{name}': rename it")
    raise DataError(
        f"{where(path, 1)}: the {what} is missing column(s) {', '.join(repr(m) for m in missing)}; "
        f"the header must contain {', '.join(required)} (found: {', '.join(header) or 'nothing'})"
        + (f"; {'; '.join(hints)}" if hints else "")
    )


def parse_int(value: str, path: str, row: int, line: int, column: str, allow_empty: bool) -> int | None:
    value = value.strip()
    if value == "":
        if allow_empty:
            return None
        raise DataError(f"{where(path, row, line, column)}: empty; write a whole number")
    match = _INTEGER.fullmatch(value)   # not float(): it takes '1_0', '1e308', 'inf' and '٣'
    if match is None or len(match.group(1)) > 9:
        fix = "write a whole number such as 0, 1 or 2" + (", or leave it empty for an unlabeled answer" if allow_empty else "")
        what = "too large a score" if match is not None else "not a whole number"
        raise DataError(f"{where(path, row, line, column)}: {value!r} is {what}; {fix}")
    return int(match.group(1))   # '2.0' (a spreadsheet's whole number) is 2


_INTEGER = re.compile(r"([+-]?[0-9]+)(?:\.0+)?", re.ASCII)


def read_items(path: str | os.PathLike) -> dict[str, Item]:
    """Read the items table (question, reference answer and score range per item)."""
    items: dict[str, Item] = {}
    first_row: dict[str, int] = {}
    for row, line, rec in read_records(path, ("item",), "items table"):
        item = rec["item"].strip()
        if not item:
            raise DataError(f"{where(str(path), row, line, 'item')}: empty item id; give every item an id")
        if item in items:
            raise DataError(
                f"{where(str(path), row, line, 'item')}: item {item!r} already defined at row {first_row[item]}; "
                "keep one row per item"
            )
        lo = parse_int(rec.get("score_min", ""), str(path), row, line, "score_min", allow_empty=True)
        hi = parse_int(rec.get("score_max", ""), str(path), row, line, "score_max", allow_empty=True)
        if (lo is None) != (hi is None):
            raise DataError(f"{where(str(path), row, line)}: give both score_min and score_max, or neither")
        if lo is not None and hi is not None and hi <= lo:
            raise DataError(
                f"{where(str(path), row, line, 'score_max')}: score_max {hi} must be greater than score_min {lo}"
            )
        items[item] = Item(item, rec.get("question", ""), rec.get("reference_answer", ""), lo, hi,
                           rec.get("stimulus", "") or "")
        first_row[item] = row
    return items


def read_responses(
    path: str | os.PathLike, items: dict[str, Item] | None = None, keep: tuple[str, ...] = (),
    score_column: bool = True,
) -> Table:
    """Read and validate a response table; ``keep`` names extra columns to carry along.

    With ``score_column=False`` the ``score`` column may be left out (answers to score).
    """
    path = str(path)
    table = Table(path=path, extras={k: [] for k in keep})
    first_row: dict[str, int] = {}
    required = RESPONSE_COLUMNS if score_column else RESPONSE_COLUMNS[:3]
    for row, line, rec in read_records(path, required, "response table"):
        rid, item = rec["id"].strip(), rec["item"].strip()
        if not rid:
            raise DataError(f"{where(path, row, line, 'id')}: empty id; give every answer a unique id")
        if rid in first_row:
            raise DataError(
                f"{where(path, row, line, 'id')}: id {rid!r} already used at row {first_row[rid]}; ids must be unique"
            )
        if not item:
            raise DataError(f"{where(path, row, line, 'item')}: empty item; say which item (question) this answers")
        # answers to score (score_column=False): a score column is allowed and ignored, whatever it holds
        score = parse_int(rec.get("score", ""), path, row, line, "score", allow_empty=True) if score_column else None
        if items is not None:
            _check_item(path, row, line, item, score, items)
        first_row[rid] = row
        table.ids.append(rid)
        table.items.append(item)
        table.responses.append(rec["response"])
        table.scores.append(score)
        table.rows.append(row)
        for k in keep:
            table.extras[k].append(rec.get(k, ""))
    if not table.ids:
        raise DataError(f"{where(path)}: the header is there but there are no data rows")
    return table


def _check_item(path: str, row: int, line: int, item: str, score: int | None, items: dict[str, Item]) -> None:
    spec = items.get(item)
    if spec is None:
        known = ", ".join(sorted(items, key=_natural_key)[:10])
        raise DataError(
            f"{where(path, row, line, 'item')}: item {item!r} is not in the items table (known: {known}); "
            "add it to the items table or fix the id"
        )
    if score is not None and spec.score_values is not None and score not in spec.score_values:
        raise DataError(
            f"{where(path, row, line, 'score')}: score {score} is outside item {item!r}'s range "
            f"{spec.score_min}–{spec.score_max}; fix the score or the item's score_min/score_max"
        )


def score_values(table: Table, item: str, items: dict[str, Item] | None = None) -> list[int]:
    """The score values a scorer for ``item`` predicts: the items table's range, else those observed."""
    spec = (items or {}).get(item)
    if spec is not None and spec.score_values is not None:
        return spec.score_values
    return sorted({s for it, s in zip(table.items, table.scores) if it == item and s is not None})


def check_trainable(table: Table, item: str) -> None:
    """Raise DataError unless ``table`` has labelled answers with at least two score values for ``item``."""
    labelled = [s for it, s in zip(table.items, table.scores) if it == item and s is not None]
    if not labelled:
        known = ", ".join(table.item_ids()[:10])
        raise DataError(
            f"{where(table.path)}: no labelled answers for item {item!r} (items in the file: {known}); "
            "check --item or the score column"
        )
    values = sorted(set(labelled))
    if len(values) < 2:
        raise DataError(
            f"{where(table.path)}: item {item!r} has only one score value ({values[0]}) in its "
            f"{len(labelled)} labelled answers; a scorer needs answers with at least two different scores"
        )


def _indices_by_score(table: Table) -> dict[int, list[int]]:
    by_score: dict[int, list[int]] = {}
    for i, s in enumerate(table.scores):
        if s is not None:
            by_score.setdefault(s, []).append(i)
    return by_score


def stratified_split(table: Table, val_fraction: float, seed: int) -> tuple[Table, Table]:
    """Split labelled rows into (train, validation), stratified by score, deterministic for a seed."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    by_score = _indices_by_score(table)
    rng = random.Random(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for s in sorted(by_score):
        idx = by_score[s][:]
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction)) if len(idx) > 1 else 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    if not val_idx or not train_idx:
        raise DataError(
            f"{where(table.path)}: {len(train_idx) + len(val_idx)} labelled answers are too few for a "
            f"validation split of {val_fraction:.0%}; add answers or raise the fraction"
        )
    return table.take(sorted(train_idx)), table.take(sorted(val_idx))


def stratified_folds(table: Table, k: int, seed: int) -> list[list[int]]:
    """Assign labelled rows to k folds, stratified by score; returns the row indices of each fold."""
    if k < 2:
        raise DataError(f"--folds must be at least 2, got {k}")
    folds: list[list[int]] = [[] for _ in range(k)]
    by_score = _indices_by_score(table)
    rng = random.Random(seed)
    offset = 0
    for s in sorted(by_score):
        idx = by_score[s][:]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[(j + offset) % k].append(i)
        offset += len(idx)
    return [sorted(f) for f in folds]


AUGMENT_DROP = 0.1      # each word of a copy is left out with this probability,
AUGMENT_REPLACE = 0.1   # or replaced by a word of another answer of the item with this one;
AUGMENT_WINDOW = 0.25   # and this share of the copies keeps only a window of 50-90% of its words


def augmented_answers(table: Table, copies: int, seed: int) -> Table:
    """``copies`` perturbed versions of each answer of ``table`` (one item's), unscored, for the teacher
    to label as extra transfer answers: the student sees the teacher's probabilities on answers near
    the real ones, where its n-grams are thin (after Tang et al. 2019, "Distilling task-specific
    knowledge from BERT into simple neural networks"). Deterministic for a seed. Ids are
    "<answer id>~aug<j>", rows the original answer's; the table has no path until it is written."""
    rng = random.Random(seed)
    vocabulary = [w for text in table.responses for w in text.split()]
    out = Table(path="")
    for rid, item, text, row in zip(table.ids, table.items, table.responses, table.rows):
        words = text.split()
        for j in range(copies):
            kept = [rng.choice(vocabulary) if rng.random() < AUGMENT_REPLACE else w
                    for w in words if rng.random() >= AUGMENT_DROP]
            if len(kept) > 4 and rng.random() < AUGMENT_WINDOW:
                size = max(3, int(len(kept) * rng.uniform(0.5, 0.9)))
                start = rng.randrange(len(kept) - size + 1)
                kept = kept[start:start + size]
            out.ids.append(f"{rid}~aug{j}")
            out.items.append(item)
            out.responses.append(" ".join(kept) or text)
            out.scores.append(None)
            out.rows.append(row)
    return out


def default_data_root() -> Path:
    """``$KD_TRAIN_DATA`` if set, else ``../shared/datasets`` (from the working folder or the repo)."""
    env = os.environ.get("KD_TRAIN_DATA")
    if env:
        return Path(env)
    candidates = [Path.cwd() / ".." / "shared" / "datasets", Path(__file__).resolve().parents[2] / "shared" / "datasets"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def load_asap(root: str | os.PathLike | None = None) -> Dataset:
    """Load ASAP-SAS in the shared folder layout (train, test_public, unlabeled, items)."""
    folder = Path(root) if root is not None else default_data_root()
    if folder.name != "asap-sas":
        folder = folder / "asap-sas"
    missing = [name for name in ASAP_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; point --data (or $KD_TRAIN_DATA) at the folder that holds asap-sas/"
        )
    items = read_items(folder / ASAP_FILES["items"])
    return Dataset(
        train=read_responses(folder / ASAP_FILES["train"], items, keep=("score2",)),
        test=read_responses(folder / ASAP_FILES["test"], items),
        unlabeled=read_responses(folder / ASAP_FILES["unlabeled"], items),
        items=items,
    )
