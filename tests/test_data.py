"""Loading and validating response tables: every error names file, row, column and the fix."""

from __future__ import annotations

import pytest

from conftest import toy_rows, write_csv
from kd_train.data import (
    DataError,
    check_trainable,
    load_asap,
    read_items,
    read_responses,
    score_values,
    stratified_folds,
    stratified_split,
)

HEADER = ["id", "item", "response", "score"]


def table(tmp_path, rows, header=HEADER, name="r.csv"):
    return write_csv(tmp_path / name, header, rows)


def test_reads_csv_with_bom_crlf_and_empty_response(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("\ufeffid,item,response,score\r\n1,q,\"hello, world\",2\r\n2,q,,0\r\n3,q,later,\r\n".encode())
    t = read_responses(path)
    assert t.ids == ["1", "2", "3"]
    assert t.responses == ["hello, world", "", "later"]
    assert t.scores == [2, 0, None]
    assert len(t.labelled()) == 2


def test_to_csv_reads_back(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,item,response,score\n1,q,"hello, ""world""\nagain",2\n2,q,,0\n3,q,later,\n', encoding="utf-8")
    t = read_responses(path)
    (tmp_path / "back.csv").write_text(t.to_csv(), encoding="utf-8")
    back = read_responses(tmp_path / "back.csv")
    assert (back.ids, back.items, back.responses, back.scores) == (t.ids, t.items, t.responses, t.scores)
    (tmp_path / "unscored.csv").write_text(t.to_csv(scores=False), encoding="utf-8")
    assert read_responses(tmp_path / "unscored.csv", score_column=False).scores == [None] * 3


def test_reads_tsv(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("id\titem\tresponse\tscore\n1\tq\ta, b\t1\n", encoding="utf-8")
    assert read_responses(path).responses == ["a, b"]


def test_multiline_response_reports_the_right_row(tmp_path):
    path = table(tmp_path, [["1", "q", "line one\nline two", "1"], ["2", "q", "x", "two"]])
    with pytest.raises(DataError, match=r"r.csv, row 3 \(line 4\), column 'score': 'two' is not a whole number"):
        read_responses(path)


def test_missing_and_misspelt_columns(tmp_path):
    path = table(tmp_path, [["1", "q", "x", "1"]], header=["id", "item", "response", "scroe"])
    with pytest.raises(DataError, match=r"missing column\(s\) 'score'.*'scroe' looks like 'score'"):
        read_responses(path)


def test_duplicate_ids(tmp_path):
    path = table(tmp_path, [["1", "q", "x", "1"], ["1", "q", "y", "0"]])
    with pytest.raises(DataError, match=r"row 3, column 'id': id '1' already used at row 2"):
        read_responses(path)


@pytest.mark.parametrize("bad", ["two", "1.5", "nan"])
def test_non_integer_scores(tmp_path, bad):
    with pytest.raises(DataError, match=r"column 'score'.*not a whole number; write a whole number"):
        read_responses(table(tmp_path, [["1", "q", "x", bad]]))


def test_integral_float_scores_are_accepted(tmp_path):
    assert read_responses(table(tmp_path, [["1", "q", "x", "2.0"]])).scores == [2]


def test_score_outside_item_range(tmp_path):
    items = read_items(table(tmp_path, [["q", "Why?", "0", "2"]], ["item", "question", "score_min", "score_max"], "i.csv"))
    with pytest.raises(DataError, match=r"row 2, column 'score': score 3 is outside item 'q''s range 0–2"):
        read_responses(table(tmp_path, [["1", "q", "x", "3"]]), items)


def test_unknown_item(tmp_path):
    items = read_items(table(tmp_path, [["q", "Why?", "0", "2"]], ["item", "question", "score_min", "score_max"], "i.csv"))
    with pytest.raises(DataError, match=r"item 'z' is not in the items table"):
        read_responses(table(tmp_path, [["1", "z", "x", "1"]]), items)


def test_single_score_value(tmp_path):
    t = read_responses(table(tmp_path, [[str(i), "q", "x", "1"] for i in range(5)]))
    with pytest.raises(DataError, match=r"only one score value \(1\).*at least two different scores"):
        check_trainable(t, "q")


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,item,response,score\n1,q,fine,1\n2,q,caf\xe9,0\n")
    with pytest.raises(DataError, match=r"line 3, byte 8 is not valid UTF-8.*save the file as UTF-8"):
        read_responses(path)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="the file is empty"):
        read_responses(empty)
    with pytest.raises(DataError, match="no data rows"):
        read_responses(table(tmp_path, []))


def test_wrong_field_count(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,item,response,score\n1,q,a, b,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2: 5 fields but the header has 4; quote text"):
        read_responses(path)


def test_missing_file():
    with pytest.raises(DataError, match="file not found"):
        read_responses("no/such/file.csv")


def test_items_table_errors(tmp_path):
    header = ["item", "question", "score_min", "score_max"]
    with pytest.raises(DataError, match="give both score_min and score_max"):
        read_items(table(tmp_path, [["q", "?", "0", ""]], header, "i.csv"))
    with pytest.raises(DataError, match="score_max 1 must be greater than score_min 1"):
        read_items(table(tmp_path, [["q", "?", "1", "1"]], header, "i.csv"))
    with pytest.raises(DataError, match="item 'q' already defined at row 2"):
        read_items(table(tmp_path, [["q", "?", "0", "1"], ["q", "?", "0", "1"]], header, "i.csv"))


def test_score_values_from_items_or_observed(tmp_path):
    t = read_responses(table(tmp_path, toy_rows(9, item="q")))
    assert score_values(t, "q") == [0, 1, 2]
    items = read_items(table(tmp_path, [["q", "?", "0", "3"]], ["item", "question", "score_min", "score_max"], "i.csv"))
    assert score_values(t, "q", items) == [0, 1, 2, 3]


def test_split_is_stratified_deterministic_and_disjoint(tmp_path):
    t = read_responses(table(tmp_path, toy_rows(90)))
    a_train, a_val = stratified_split(t, 0.2, seed=1)
    b_train, b_val = stratified_split(t, 0.2, seed=1)
    assert a_val.ids == b_val.ids and a_train.ids == b_train.ids
    assert not set(a_val.ids) & set(a_train.ids)
    assert len(a_val) + len(a_train) == 90
    assert sorted(a_val.scores).count(0) == 6 and sorted(a_val.scores).count(2) == 6
    assert stratified_split(t, 0.2, seed=2)[1].ids != a_val.ids


def test_folds_cover_every_labelled_row_once(tmp_path):
    t = read_responses(table(tmp_path, toy_rows(31)))
    folds = stratified_folds(t, 4, seed=0)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(31))
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1


def test_asap_loader_reads_the_shared_layout():
    from kd_train.data import default_data_root

    if not (default_data_root() / "asap-sas" / "train.csv").is_file():
        pytest.skip("ASAP-SAS not found at ../shared/datasets (set KD_TRAIN_DATA)")
    ds = load_asap()
    assert len(ds.train) == 17043 and len(ds.test) == 5224 and len(ds.unlabeled) == 5100
    assert all(s is None for s in ds.unlabeled.scores)
    assert ds.items["1"].score_values == [0, 1, 2, 3] and ds.items["3"].score_values == [0, 1, 2]
    assert len(ds.train.extras["score2"]) == len(ds.train)


def test_asap_loader_missing_folder(tmp_path):
    with pytest.raises(DataError, match="missing train.csv"):
        load_asap(tmp_path)


def test_augmented_answers_are_seeded_perturbed_copies():
    from kd_train.data import Table, augmented_answers

    texts = ["heat flows from the warm metal into the cold ice cube quickly", "the plastic is an insulator", "ice"]
    table = Table(path="t.csv", ids=["a", "b", "c"], items=["q"] * 3, responses=texts, scores=[2, 1, 0], rows=[2, 3, 4])
    copies = augmented_answers(table, 3, seed=0)
    assert copies.ids[:4] == ["a~aug0", "a~aug1", "a~aug2", "b~aug0"] and copies.rows[:4] == [2, 2, 2, 3]
    assert copies.items == ["q"] * 9 and copies.scores == [None] * 9
    assert augmented_answers(table, 3, seed=0).responses == copies.responses != augmented_answers(table, 3, seed=1).responses
    vocabulary = {w for t in texts for w in t.split()}
    assert all(c and set(c.split()) <= vocabulary for c in copies.responses)
    assert any(c != texts[0] for c in copies.responses[:3])
    assert len(augmented_answers(table, 0, seed=0)) == 0


# ---- files as spreadsheets save them (issue 28) ----------------------------------------------------

@pytest.mark.parametrize("delimiter, name", [(";", "r.csv"), ("\t", "r.csv"), (",", "r.tsv"), (";", "r.txt")])
def test_the_delimiter_is_read_from_the_header_line(tmp_path, delimiter, name):
    path = tmp_path / name
    rows = [["id", "item", "response", "score"], ["1", "q", "2,5 degrees; warm", "1"], ["2", "q", "cold", "0"]]
    path.write_text("\n".join(delimiter.join(f'"{c}"' if delimiter in c else c for c in r) for r in rows) + "\n",
                    encoding="utf-8")
    t = read_responses(path)
    assert t.responses == ["2,5 degrees; warm", "cold"] and t.scores == [1, 0]


def test_a_header_without_the_columns_names_what_it_found(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id|item|response|score\n1|q|x|1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing column\(s\) 'id'.*found: id\|item\|response\|score"):
        read_responses(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_read_with_a_bom_and_named_without_one(tmp_path, encoding):
    path = tmp_path / "r.csv"
    path.write_bytes("id,item,response,score\n1,q,Wärme fließt,1\n".encode(encoding))
    if encoding == "utf-16":   # with a byte-order mark
        assert read_responses(path).responses == ["Wärme fließt"]
        return
    order = "little-endian" if encoding.endswith("le") else "big-endian"
    with pytest.raises(DataError) as err:
        read_responses(path)
    message = str(err.value)
    assert f"r.csv: the file looks like UTF-16 ({order}, without a byte-order mark" in message
    assert "save it as UTF-8" in message and "CSV UTF-8" in message


@pytest.mark.parametrize("value", ["1_0", "1e308", "1e1", "inf", "nan", "0x1", "٣", "1.5", "2.", "99999999999", "two"])
def test_scores_are_plain_whole_numbers(tmp_path, value):
    path = table(tmp_path, [["1", "q", "x", value]])
    with pytest.raises(DataError, match=r"r.csv, row 2, column 'score': .* is (not a whole number|too large a score); "
                                        "write a whole number such as 0, 1 or 2"):
        read_responses(path)


@pytest.mark.parametrize("value, score", [("2", 2), (" 2 ", 2), ("2.0", 2), ("+1", 1), ("-1", -1), ("03", 3)])
def test_whole_numbers_as_spreadsheets_write_them(tmp_path, value, score):
    assert read_responses(table(tmp_path, [["1", "q", "x", value]])).scores == [score]


def test_answers_to_score_may_carry_any_score_column(tmp_path):
    path = table(tmp_path, [["1", "q", "x", "good"], ["2", "q", "y", ""]])
    assert read_responses(path, score_column=False).scores == [None, None]
