import json

import numpy as np
import pytest

from conftest import write_csv
from kd_train import soft_labels
from kd_train.data import DataError


def test_write_read_round_trip_and_cache(tmp_path):
    labels = soft_labels.SoftLabels(["a", "b"], ["q", "q"], [0, 1, 2], np.array([[0.2, 0.3, 0.5], [1.0, 0, 0]]),
                                    {"teacher": "x", "temperature": 2.0})
    out = tmp_path / "labels.csv"
    soft_labels.write(out, labels)
    back = soft_labels.read(out)
    assert back.ids == ["a", "b"] and back.score_values == [0, 1, 2]
    np.testing.assert_array_equal(back.probs, labels.probs)
    assert soft_labels.is_cached(out, {"teacher": "x", "temperature": 2.0})
    assert not soft_labels.is_cached(out, {"teacher": "x", "temperature": 1.0})
    assert json.loads((tmp_path / "labels.json").read_text())["score_values"] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    np.testing.assert_array_equal(back.lookup(["b", "a"]), labels.probs[[1, 0]])
    with pytest.raises(DataError, match="lack 1 of 1 answers"):
        back.lookup(["zzz"])


def test_read_rejects_rows_that_are_not_distributions(tmp_path):
    out = tmp_path / "l.csv"
    write_csv(out, ["id", "item", "p_0", "p_1"], [["a", "q", "0.5", "0.6"]])
    (tmp_path / "l.json").write_text(json.dumps({"score_values": [0, 1]}))
    with pytest.raises(DataError, match=r"row 2.*sum to 1"):
        soft_labels.read(out)


def test_samples_become_smoothed_empirical_distributions(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["id", "item", "score"],
                     [["a", "q", 2], ["a", "q", 2], ["a", "q", 1], ["b", "q", 0]])
    labels = soft_labels.from_samples(path, [0, 1, 2], smoothing=0.0)
    np.testing.assert_allclose(labels.probs, [[0, 1 / 3, 2 / 3], [1, 0, 0]])
    smooth = soft_labels.from_samples(path, [0, 1, 2], smoothing=1.0)
    np.testing.assert_allclose(smooth.probs[1], [2 / 4, 1 / 4, 1 / 4])
    with pytest.raises(DataError, match="sampled score 2 is not one of the score values"):
        soft_labels.from_samples(path, [0, 1])


def test_a_cached_csv_that_changed_since_is_not_reused(tmp_path):
    labels = soft_labels.SoftLabels(["a", "b"], ["q", "q"], [0, 1], np.array([[0.2, 0.8], [1.0, 0.0]]), {"teacher": "x"})
    out = tmp_path / "labels.csv"
    soft_labels.write(out, labels)
    assert soft_labels.is_cached(out, {"teacher": "x"})
    assert "csv_sha256" not in soft_labels.read(out).fingerprint
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n")   # a row lost
    assert not soft_labels.is_cached(out, {"teacher": "x"})
    soft_labels.write(out, labels)
    sidecar = json.loads((tmp_path / "labels.json").read_text())
    del sidecar["csv_sha256"]                          # written before the CSV's hash was recorded
    (tmp_path / "labels.json").write_text(json.dumps(sidecar))
    assert not soft_labels.is_cached(out, {"teacher": "x"})
