"""The top rung: the fine-tuned teacher exported to ONNX with int8 weights (kd_train/transformer.py), as a
scorer directory (vocabulary listed and checked) and as a candidate of `kd-train train --candidates teacher`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kd_train import data, ladder, pipeline, scorer, teacher, transformer, wordpiece
from kd_train.config import TeacherConfig, WordpieceConfig
from kd_train.data import UserError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"


@pytest.fixture(scope="module")
def demo():
    items = data.read_items(DEMO / "items.csv")
    return items, data.read_responses(DEMO / "responses.csv", items), data.read_responses(DEMO / "test.csv", items)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, tiny_model, demo):
    """A teacher fine-tuned from the tiny BERT on the demo item (one epoch)."""
    items, train, test = demo
    folder = tmp_path_factory.mktemp("teacher") / "teacher"
    teacher.fine_tune(train, "demo-ice", [0, 1, 2, 3], folder,
                      TeacherConfig(model=str(tiny_model), epochs=1, lr=1e-3, max_length=48))
    return folder


@pytest.fixture(scope="module")
def exported(tiny_teacher):
    return transformer.export_teacher(tiny_teacher)


def test_the_int8_model_follows_the_float32_teacher(tiny_teacher, exported, demo):
    _, _, test = demo
    texts = test.for_item("demo-ice").responses
    reference = teacher.softmax(teacher.predict_logits(tiny_teacher, texts, progress=False))
    agreement = transformer.agreement(reference, exported.probs(texts))
    print(f"\nint8 vs float32 on {agreement['n']} demo answers: {agreement}")
    assert agreement["max_abs_diff"] < 0.02 and agreement["argmax_agreement"] >= 0.95
    fp32 = transformer.export_teacher(tiny_teacher, quantize=False)
    np.testing.assert_allclose(fp32.probs(texts), reference, atol=1e-5)   # the export itself is exact
    assert len(exported.onnx_model) < len(fp32.onnx_model) / 2


def test_its_input_is_the_teachers_tokens_and_padding_is_masked(tiny_teacher, exported, demo):
    _, _, test = demo
    texts = test.for_item("demo-ice").responses[:6]
    tokenizer, _ = teacher.encoder.load_tokenizer(str(tiny_teacher))
    meta = teacher.read_meta(tiny_teacher)
    ids = transformer.id_matrix(texts, exported.vocab_text, exported.config)
    expected = teacher.encode(tokenizer, texts, None, meta["max_length"])
    for row, enc in zip(ids, expected):
        assert row[row >= 0].tolist() == enc["input_ids"]
    assert exported.config["max_length"] == 48 and exported.config["truncation"] == "head+tail"
    fp32 = transformer.export_teacher(tiny_teacher, quantize=False)
    batch = fp32.session.run(["probs"], {"input_ids": ids})[0]    # padded with -1: masked
    np.testing.assert_allclose(batch, fp32.probs(texts), atol=1e-5)


def test_a_temperature_divides_the_logits(exported, demo):
    texts = demo[2].for_item("demo-ice").responses[:5]
    hot = exported.with_temperature(2.0)
    np.testing.assert_allclose(hot.probs(texts), teacher.softmax(exported.logits(texts), 2.0), atol=1e-5)
    assert hot.summary["temperature"] == 2.0 and "temperature" not in exported.summary


def _write(folder: Path, model, demo) -> Path:
    items, train, _ = demo
    candidate = pipeline.quality.Candidate("teacher", model, model.logits(train.for_item("demo-ice").responses[:40]))
    val = train.for_item("demo-ice").take(list(range(40)))
    shipped, quality = pipeline.ship([candidate], val, None, [0, 1, 2, 3])
    scorer.write_scorer(folder, shipped, item="demo-ice", question=items["demo-ice"].question, score_values=[0, 1, 2, 3],
                        featurizer_config=WordpieceConfig.from_dict(model.config), metrics=quality["metrics"],
                        teacher=None, training={"labelled": 40, "fit": 30, "val": 10, "transfer": 0}, quality=quality)
    return folder


def test_a_transformer_scorer_round_trips_and_checks_its_vocabulary(exported, demo, tmp_path):
    folder = _write(tmp_path / "scorer", exported, demo)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["MODEL_CARD.md", "kd-train.json", "model.onnx", "scorer.json", "vocab.txt"]
    marker = json.loads((folder / "kd-train.json").read_text())
    assert "vocab.txt" in marker["files"]
    info, featurizer = scorer.read_scorer(folder)
    assert isinstance(featurizer, WordpieceConfig) and info["model"]["kind"] == "transformer"
    assert info["model"]["input"] == "input_ids" and info["model"]["weights"] == "int8"
    assert info["wordpiece_sha256"] == scorer.wordpiece_sha256() and info["vocab"]["file"] == "vocab.txt"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "the fine-tuned teacher itself" in card and "wordpiece.py" in card
    loaded = scorer.Scorer(folder)
    texts = demo[2].for_item("demo-ice").responses[:8]
    shipped_t = info["quality"]["calibration"]["temperature"]
    want = exported.with_temperature(shipped_t).probs(texts) if shipped_t != 1.0 else exported.probs(texts)
    np.testing.assert_array_equal(loaded.predict_proba(texts), want)
    (folder / "vocab.txt").write_text("[PAD]\n" + exported.vocab_text)
    with pytest.raises(UserError, match="vocab.txt's sha256 does not match"):
        scorer.read_scorer(folder)
    (folder / "vocab.txt").unlink()
    with pytest.raises(UserError, match="vocab.txt is missing"):
        scorer.read_scorer(folder)


def test_build_ships_wordpiece_py_and_the_vocabulary_pinned_in_the_manifest(exported, demo, tmp_path):
    from kd_train import bundle
    from web_support import need_node_modules

    need_node_modules()
    folder = _write(tmp_path / "scorer", exported, demo)
    out = tmp_path / "dist"
    bundle.build([folder], out, report_sizes=False, allow_unfit=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "wordpiece.py").read_bytes() == Path(wordpiece.__file__).read_bytes()
    assert (out / "scorers" / "demo-ice" / "vocab.txt").read_text() == exported.vocab_text
    assert {"wordpiece.py", "scorers/demo-ice/vocab.txt", "vendor/pyodide/snapshot.bin"} <= set(manifest["files"])
    assert bundle.verify(str(out)) is not None


def test_teachers_it_cannot_read_are_refused(tiny_teacher, tmp_path):
    paired = tmp_path / "paired"
    shutil.copytree(tiny_teacher, paired)
    meta = json.loads((paired / "teacher.json").read_text())
    meta["config"]["with_question"], meta["question"] = True, "Why?"
    (paired / "teacher.json").write_text(json.dumps(meta))
    assert "reads the question with the answer" in transformer.exportable(paired)
    cased = tmp_path / "cased"
    shutil.copytree(tiny_teacher, cased)
    spec = json.loads((cased / "tokenizer.json").read_text())
    spec["normalizer"]["lowercase"] = False
    (cased / "tokenizer.json").write_text(json.dumps(spec))
    assert "not an uncased BERT WordPiece tokenizer" in transformer.exportable(cased)
    with pytest.raises(UserError, match="cannot export"):
        transformer.export_teacher(cased)
    (tiny_teacher / "model.safetensors").exists()


def test_train_with_the_teacher_as_a_candidate_ships_it_and_predict_scores_like_it(tiny_model, tmp_path, capsys):
    from kd_train.cli import main

    out = tmp_path / "run"
    args = ["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
            "--test", str(DEMO / "test.csv"), "--out", str(out), "--model", str(tiny_model), "--epochs", "1",
            "--lr", "1e-3", "--max-length", "48", "--student-epochs", "2", "--augment", "0", "--candidates", "teacher"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "candidate: teacher, exported to ONNX with int8 weights" in said
    report = json.loads((out / "demo-ice" / "report.json").read_text())
    assert report["quality"]["shipped"] == "teacher"
    row = report["quality"]["candidates"]["teacher"]
    assert row["bytes"] > 1_000_000 and row["params"] == report["models"]["teacher"]["params"]
    assert report["models"]["teacher"]["exported"]["agreement_with_float32_val"]["argmax_agreement"] >= 0.9
    folder = out / "demo-ice" / "scorer"
    loaded = scorer.Scorer(folder)
    assert loaded.info["featurizer"]["kind"] == "wordpiece" and loaded.info["training"]["exported_teacher"]["weights"] == "int8"
    predicted = tmp_path / "predicted.csv"
    assert main(["predict", "--scorer", str(folder), "--input", str(DEMO / "test.csv"), "--out", str(predicted)]) == 0
    import csv

    with open(predicted, newline="", encoding="utf-8") as f:
        got = [r for r in csv.DictReader(f) if r["score"]]
    table = data.read_responses(DEMO / "test.csv")
    text_of = dict(zip(table.ids, table.responses))
    texts = [text_of[r["id"]] for r in got]
    assert [int(r["score"]) for r in got] == loaded.predict(texts)
    np.testing.assert_allclose([[float(r[f"p_{v}"]) for v in range(4)] for r in got], loaded.predict_proba(texts),
                               atol=1e-6)


def test_the_teacher_is_an_extra_candidate_not_a_default():
    from kd_train.config import CANDIDATES, EXTRA_CANDIDATES

    assert "teacher" not in CANDIDATES and EXTRA_CANDIDATES == ("tinybert_like", "teacher")
    assert pipeline.PipelineConfig().candidates == CANDIDATES


def test_a_cross_validated_or_paired_teacher_is_no_candidate(tiny_teacher, demo):
    """Its final model trained on every answer the candidates are judged on: it is skipped, with the reason."""
    _, train, _ = demo
    said = []
    val = pipeline.validation_split(train, "demo-ice", pipeline.StudentConfig())[1]
    meta = teacher.read_meta(tiny_teacher)
    assert ladder.transformer_candidate("teacher", tiny_teacher, meta, train.for_item("demo-ice"), val, True, said.append) is None
    assert "cross-validated" in said[-1]
    other = train.for_item("demo-ice").labelled().take(list(range(20)))
    assert ladder.transformer_candidate("teacher", tiny_teacher, meta, train.for_item("demo-ice"), other, False, said.append) is None
    assert "validation answers are not the students'" in said[-1]


def test_a_cut_vocabulary_keeps_the_kept_tokens_probabilities_and_reads_the_others_as_unk(tiny_teacher, demo):
    _, train, test = demo
    kept_texts = train.for_item("demo-ice").responses[:40]
    whole = transformer.export_teacher(tiny_teacher, quantize=False)
    cut = transformer.export_teacher(tiny_teacher, quantize=False, keep_texts=kept_texts)
    assert cut.summary["embedding_rows"] < whole.summary.get("embedding_rows", cut.summary["vocabulary"]) \
        and cut.summary["vocabulary"] == len(whole.vocab_text.splitlines())
    assert len(cut.onnx_model) < len(whole.onnx_model) / 2
    np.testing.assert_allclose(cut.probs(kept_texts), whole.probs(kept_texts), atol=1e-6)
    vocab = wordpiece.read_vocab(whole.vocab_text)
    keep = set(transformer.kept_ids(kept_texts, whole.vocab_text, whole.config))
    unk = vocab[whole.config["unk"]]
    others = [t for t in test.for_item("demo-ice").responses
              if any(i not in keep for i in wordpiece.encode(t, vocab, whole.config))][:10]
    assert others
    for text in others:   # the same as the whole model given [UNK] for every token the kept answers never use
        ids = [i if i in keep else unk for i in wordpiece.encode(text, vocab, whole.config)]
        expected = whole.session.run(["probs"], {transformer.INPUT: np.array([ids], dtype=np.int32)})[0]
        np.testing.assert_allclose(cut.probs([text]), expected, atol=1e-6)


def test_members_export_as_one_model_of_their_averaged_probabilities(tiny_teacher, tiny_model, demo, tmp_path):
    from kd_train import ensemble

    items, train, test = demo
    second = tmp_path / "teacher-seed2"
    config = TeacherConfig(model=str(tiny_model), epochs=1, lr=1e-3, max_length=48)
    teacher.fine_tune(train, "demo-ice", [0, 1, 2, 3], second, ensemble.member_config(config, 1))
    texts = test.for_item("demo-ice").responses[:20]
    alone = [transformer.export_teacher(f, quantize=False).probs(texts) for f in (tiny_teacher, second)]
    both = transformer.export_teacher([tiny_teacher, second], quantize=False)
    assert both.summary["members"] == 2
    np.testing.assert_allclose(both.probs(texts), np.mean(alone, axis=0), atol=1e-6)
    said = []
    val = pipeline.validation_split(train, "demo-ice", pipeline.StudentConfig())[1]
    model, info = ladder.transformer_candidate("teacher", [tiny_teacher, second], teacher.read_meta(tiny_teacher),
                                               train.for_item("demo-ice"), val, False, said.append)
    assert "candidate: teacher (2 members averaged), exported" in said[0]
    assert info["exported"]["members"] == 2 and len(info["exported"]["weights_sha256"]) == 2
    assert info["exported"]["agreement_with_float32_val"]["argmax_agreement"] >= 0.9
    said = []   # both members over the budget, the first alone within it: the first alone is the candidate
    budget = (info["exported"]["bytes"] + len(transformer.export_teacher(tiny_teacher).onnx_model)) // 2
    alone, info = ladder.transformer_candidate("teacher", [tiny_teacher, second], teacher.read_meta(tiny_teacher),
                                               train.for_item("demo-ice"), val, False, said.append, max_bytes=budget)
    assert "over the" in said[1] and "first member alone" in said[1]
    assert "members" not in info["exported"] and info["exported"]["first_of_members"] == 2
    assert info["exported"]["bytes"] <= budget and alone.summary.get("members") is None
    longer = tmp_path / "teacher-longer"   # a member that reads answers unlike the first cannot join it
    teacher.fine_tune(train, "demo-ice", [0, 1, 2, 3], longer, replace(config, max_length=64))
    with pytest.raises(UserError, match="reads answers unlike"):
        transformer.export_teacher([tiny_teacher, longer])


def test_the_timed_path_reads_the_answer_with_the_pages_wordpiece(exported, demo):
    from kd_train.config import FeaturizerConfig
    from kd_train.student import answer_ms, one_answer_input

    texts = demo[2].for_item("demo-ice").responses[:5]
    one = one_answer_input(exported, FeaturizerConfig())
    for text in texts:
        np.testing.assert_array_equal(one(text), exported.ids([text]))
    assert answer_ms(exported, texts, FeaturizerConfig(), most=2) > 0
