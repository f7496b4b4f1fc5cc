"""Scorer directories: written atomically, byte-reproducible, refused when tampered with."""

from __future__ import annotations

import json

import pytest
import torch

from kd_train import scorer
from kd_train.config import FeaturizerConfig
from kd_train.data import UserError
from kd_train.files import write_marker
from kd_train.student import Student


def write(folder, seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(model=Student(FeaturizerConfig().n_buckets, 3), item="q1", question="Why?", score_values=[0, 1, 2],
                featurizer_config=FeaturizerConfig(), metrics={"test": {"n": 3, "acc": 0.5, "qwk": 0.4, "f1": 0.3}}, teacher=None,
                training={"labelled": 3, "fit": 2, "val": 1, "transfer": 0, "alpha": 0.0, "temperature": 2.0, "seed": 0})
    args |= kw
    return scorer.write_scorer(folder, args.pop("model"), **args)


def test_scorer_directory_contents(tmp_path):
    info = write(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["MODEL_CARD.md", "kd-train.json", "model.onnx", "scorer.json"]
    assert info["featurize_sha256"] == scorer.featurize_sha256()
    assert info["model"]["params"] == 2048 * 14 + 14 + 14 * 3 + 3
    card = (tmp_path / "s" / "MODEL_CARD.md").read_text()
    assert "Not for high-stakes decisions" in card and "| test | 3 | 0.500 | 0.400 | 0.300 |" in card
    probs = scorer.Scorer(tmp_path / "s").predict_proba(["heat", ""])
    assert probs.shape == (2, 3)


def test_featurizer_config_is_written_as_featurize_dict_and_read_back_as_the_object(tmp_path):
    config = FeaturizerConfig(n_buckets=64, word_ngram_range=(1, 3), char_weight=0.5)
    info = write(tmp_path / "s", model=Student(64, 3), featurizer_config=config)
    assert info["featurizer"] == config.as_dict()
    assert json.loads((tmp_path / "s" / "scorer.json").read_text())["featurizer"]["word_ngram_range"] == [1, 3]
    assert scorer.read_scorer(tmp_path / "s") == (info, config)
    loaded = scorer.Scorer(tmp_path / "s")
    assert loaded.featurizer == config and loaded.predict_proba(["heat"]).shape == (1, 3)


def test_detectors_are_stored_used_and_described(tmp_path):
    from kd_train import detect_fit

    answers = [f"heat flows from the metal into the ice number {i}" for i in range(40)]
    info = write(tmp_path / "s", detectors=detect_fit.fit(answers, ["Why?"]))
    loaded = scorer.Scorer(tmp_path / "s")
    assert loaded.info["detectors"] == info["detectors"]
    assert loaded.flags(["heat flows from the metal into the ice", "", "qzx vvk plorb wibbel frosk zanuth"]) == \
        [[], ["empty"], ["unknown", "unseen_pairs", "off_topic"]]
    assert "## Answers it does not judge" in (tmp_path / "s" / "MODEL_CARD.md").read_text()
    old = write(tmp_path / "old")                        # written without detectors: nothing is flagged
    assert old["detectors"] is None and scorer.Scorer(tmp_path / "old").flags(["", "x"]) == [[], []]
    assert "## Answers it does not judge" not in (tmp_path / "old" / "MODEL_CARD.md").read_text()


def test_the_score_given_follows_the_cutpoints_of_scorer_json(tmp_path):
    import numpy as np

    from kd_train.metrics import decide

    write(tmp_path / "s")
    answers = [f"heat {'ice ' * i}metal {i}" for i in range(30)]
    plain = scorer.Scorer(tmp_path / "s")
    probs = plain.predict_proba(answers)
    assert plain.info["cutpoints"] is None and plain.predict(answers) == probs.argmax(axis=1).tolist()
    expected = np.sort((probs * np.arange(3)).sum(axis=1))
    cuts = [float(expected[10]), float(expected[20])]   # a third of the answers on each score
    edit_info(tmp_path / "s", sign=True, cutpoints=cuts)
    given = scorer.Scorer(tmp_path / "s").predict(answers)
    assert given == decide(probs, cuts).tolist() and sorted(given) == [0] * 11 + [1] * 10 + [2] * 9


def test_same_model_gives_identical_bytes(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b")
    for name in ("model.onnx", "scorer.json", "MODEL_CARD.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tampered_model_is_refused(tmp_path):
    write(tmp_path / "s")
    with open(tmp_path / "s" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(UserError, match="model.onnx's sha256 does not match"):
        scorer.read_scorer(tmp_path / "s")


def edit_info(folder, sign: bool, **changes) -> None:
    """Change scorer.json; ``sign`` rewrites kd-train.json as if kd-train had written the change."""
    meta = json.loads((folder / "scorer.json").read_text())
    meta.update(changes)
    (folder / "scorer.json").write_text(json.dumps(meta))
    if sign:
        write_marker(folder, "scorer")


def test_reversed_score_values_are_refused_by_predict_evaluate_and_build(tmp_path):
    write(tmp_path / "s")
    edit_info(tmp_path / "s", sign=False, score_values=[2, 1, 0])
    with pytest.raises(UserError, match="scorer.json's sha256 does not match"):
        scorer.Scorer(tmp_path / "s")   # predict, evaluate and build all load scorers through Scorer


def test_more_score_values_than_model_outputs_is_refused(tmp_path):
    write(tmp_path / "s")
    edit_info(tmp_path / "s", sign=True, score_values=[0, 1, 2, 3])
    with pytest.raises(UserError, match="model.onnx gives 3 probabilities but scorer.json lists 4"):
        scorer.Scorer(tmp_path / "s")


@pytest.mark.parametrize("change, message", [
    ({"featurize_sha256": "0" * 64}, "different featurize.py"),
    ({"model": None}, "model entry is not an object"),
    ({"item": ""}, "item '' is not a non-empty string"),
    ({"review_threshold": 1.5}, "review_threshold 1.5 is not a number from 0 to 1"),
    ({"review_threshold": float("nan")}, "review_threshold nan is not a number"),
    ({"unfit_reasons": ["ok", 3]}, "unfit_reasons \\['ok', 3\\] is not a list of strings"),
    ({"probes": []}, "probes '\\[\\]' is not an object"),
    ({"score_values": [0, 0, 1]}, "not distinct integers"),
    ({"featurizer": {"n_buckets": "many"}}, "featurizer config is invalid"),
    ({"featurizer": dict(FeaturizerConfig().as_dict(), n_buckets=0)}, "featurizer config is invalid .*'n_buckets' = 0"),
    ({"featurizer": dict(FeaturizerConfig().as_dict(), n_buckets=1024)}, "model.onnx takes 2048 features but .* 1024"),
    ({"detectors": {"version": 1, "bits": 12, "table": "AAAA"}}, "detectors are invalid"),
    ({"cutpoints": [1.5, 0.5]}, "cutpoints \\[1.5, 0.5\\] are not 2 increasing numbers"),
    ({"cutpoints": [0.5]}, "are not 2 increasing numbers"),
    ({"cutpoints": [0.5, "x"]}, "are not 2 increasing numbers"),
])
def test_malformed_scorer_json_is_refused(tmp_path, change, message):
    write(tmp_path / "s")
    edit_info(tmp_path / "s", sign=True, **change)
    with pytest.raises(UserError, match=message):
        scorer.Scorer(tmp_path / "s")


def test_scorer_json_that_is_not_json_or_lacks_keys(tmp_path):
    write(tmp_path / "s")
    (tmp_path / "s" / "scorer.json").write_text("{not json")
    write_marker(tmp_path / "s", "scorer")
    with pytest.raises(UserError, match="scorer.json is not valid JSON"):
        scorer.read_scorer(tmp_path / "s")
    (tmp_path / "s" / "scorer.json").write_text('{"format_version": 1, "item": "q1"}')
    write_marker(tmp_path / "s", "scorer")
    with pytest.raises(UserError, match="scorer.json has no 'score_values'"):
        scorer.read_scorer(tmp_path / "s")


@pytest.mark.parametrize("remove, message", [("MODEL_CARD.md", "MODEL_CARD.md is missing"),
                                             ("kd-train.json", "no valid kd-train.json")])
def test_missing_files_are_refused(tmp_path, remove, message):
    write(tmp_path / "s")
    (tmp_path / "s" / remove).unlink()
    with pytest.raises(UserError, match=message):
        scorer.read_scorer(tmp_path / "s")


def test_never_replaces_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "responses.csv").write_text("id,item,response,score\n")
    with pytest.raises(UserError, match="refusing to replace it"):
        write(tmp_path / "s")
    assert (tmp_path / "s" / "responses.csv").is_file()
    write(tmp_path / "s", force=True)
    assert (tmp_path / "s" / "scorer.json").is_file() and not (tmp_path / "s" / "responses.csv").exists()
    write(tmp_path / "s", seed=1)   # its own earlier output is replaced without --force


def test_failed_write_leaves_nothing_and_keeps_the_old_scorer(tmp_path):
    write(tmp_path / "s")
    before = (tmp_path / "s" / "model.onnx").read_bytes()
    with pytest.raises(Exception):
        write(tmp_path / "s", seed=1, metrics={"test": object()})   # fails after model.onnx is written
    assert (tmp_path / "s" / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_sequence_scorer_records_its_token_config_and_is_read_back_and_run(tmp_path):
    from kd_train.config import SequenceConfig, TokenConfig
    from kd_train.student import SequenceStudent

    seq = SequenceConfig(tokens=TokenConfig(n_buckets=256), dim=8, channels=4, init="random")
    info = write(tmp_path / "s", model=SequenceStudent(seq, 3).eval(), featurizer_config=seq.tokens)
    assert info["featurizer"] == seq.tokens.as_dict() and info["model"]["input"] == "token_ids"
    assert info["model"]["kind"] == "sequence" and info["model"]["kernels"] == [2, 3]
    loaded = scorer.Scorer(tmp_path / "s")
    assert loaded.featurizer == seq.tokens
    probs = loaded.predict_proba(["heat flows", "", "it is not true that heat flows " * 50])
    assert probs.shape == (3, 3) and abs(probs.sum(axis=1) - 1).max() < 1e-5
    assert "sequence student" in (tmp_path / "s" / "MODEL_CARD.md").read_text()


def test_a_scorer_whose_model_reads_another_input_than_its_featurizer_is_refused(tmp_path):
    from kd_train.config import SequenceConfig

    write(tmp_path / "s")   # a bag model.onnx (input 'features') ...
    edit_info(tmp_path / "s", sign=True, featurizer=SequenceConfig().tokens.as_dict())   # ... said to read token ids
    with pytest.raises(UserError, match="input 'token_ids'"):
        scorer.Scorer(tmp_path / "s")
