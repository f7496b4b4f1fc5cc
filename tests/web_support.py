"""Helpers shared by test_build.py and test_web.py: a small scorer trained in seconds, and the bundler."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.browser import START_WORKER_JS  # noqa: F401  (tests/test_web.py's; bench/browser.py runs it too)
from kd_train import runtime

REPO = Path(__file__).resolve().parents[1]


def node_modules() -> Path:
    """The npm packages the bundler would use, found without fetching them; skips the test when there are none."""
    found = runtime.node_modules(fetch=False)
    if found is None or not (found / "pyodide" / "pyodide.mjs").is_file():
        pytest.skip("the npm packages are not installed: run 'npm ci' in web/ (make setup does)")
    return found


def need_node_modules() -> None:
    node_modules()


CUTPOINTS = [0.6, 1.4, 2.4]   # the test scorer's decision rule: fixed, so the page must apply cutpoints to agree


def make_scorer(folder: Path, epochs: int = 60, cutpoints: list[float] | None = CUTPOINTS) -> Path:
    """A scorer directory for the demo item, trained on the demo answers (a few seconds), shipped by the
    pipeline's own step (calibrated and gated on the validation split), scoring by ``cutpoints``."""
    from kd_train import data, detect_fit, pipeline, scorer
    from kd_train.config import FeaturizerConfig
    from kd_train.distill import StudentConfig, distill_item
    from kd_train.quality import Candidate
    from kd_train.student import featurize_all, logits

    demo = REPO / "examples" / "demo"
    items = data.read_items(demo / "items.csv")
    train = data.read_responses(demo / "responses.csv", items)
    config, values = StudentConfig(epochs=epochs), [0, 1, 2, 3]
    model, report = distill_item(train, "demo-ice", values, FeaturizerConfig(), config, progress=False)
    val = pipeline.validation_split(train, "demo-ice", config)[1]
    candidate = Candidate("student", model, logits(model, featurize_all(val.responses, FeaturizerConfig())))
    shipped, quality = pipeline.ship([candidate], val, None, values)
    quality["calibration"]["decision"]["cutpoints"] = cutpoints
    item = items["demo-ice"]
    detectors = detect_fit.fit(train.responses, [item.question, item.reference_answer], others=other_question_answers())
    scorer.write_scorer(folder, shipped, item="demo-ice", question=item.question, score_values=values,
                        featurizer_config=FeaturizerConfig(), metrics=quality["metrics"], teacher=None,
                        training=report["training"], quality=quality, detectors=detectors)
    return folder


def make_sequence_scorer(folder: Path, epochs: int = 8) -> Path:
    """A sequence scorer for the demo item (kd_train/student.py's SequenceStudent, random embeddings: the
    teacher's are not needed to check that the page runs it as kd-train predict does), shipped like
    :func:`make_scorer`'s, scoring by its most probable score."""
    from kd_train import data, pipeline, scorer
    from kd_train.config import FeaturizerConfig, SequenceConfig
    from kd_train.distill import StudentConfig, distill_item
    from kd_train.quality import Candidate
    from kd_train.student import SequenceStudent, logits, token_matrix

    demo = REPO / "examples" / "demo"
    items = data.read_items(demo / "items.csv")
    train = data.read_responses(demo / "responses.csv", items)
    seq, values = SequenceConfig(init="random", dim=16, channels=16), [0, 1, 2, 3]
    config = StudentConfig(epochs=epochs, lr=seq.lr)
    model, report = distill_item(train, "demo-ice", values, FeaturizerConfig(), config, progress=False,
                                 features=lambda t: token_matrix(t.responses, seq),
                                 make_model=lambda _, n: SequenceStudent(seq, n))
    val = pipeline.validation_split(train, "demo-ice", config)[1]
    candidate = Candidate("sequence", model, logits(model, token_matrix(val.responses, seq)))
    shipped, quality = pipeline.ship([candidate], val, None, values)
    item = items["demo-ice"]
    scorer.write_scorer(folder, shipped, item="demo-ice", question=item.question, score_values=values,
                        featurizer_config=seq.tokens, metrics=quality["metrics"], teacher=None,
                        training=report["training"], quality=quality, detectors=None)
    return folder


def other_question_answers(n: int = 80, seed: int = 0) -> list[str]:
    """Answers to another question of the same test (why a puddle dries in the sun), written for these
    tests: the test scorer's detectors learn other_question from them."""
    import random

    rng = random.Random(seed)
    starts = ["The water in the puddle", "The puddle", "The water", "Water on the ground"]
    middles = ["evaporates", "turns into water vapour", "dries up", "goes into the air as vapour"]
    ends = ["because the sun heats it", "when the sun warms the ground", "faster on a hot windy day",
            "and the vapour rises into the clouds"]
    return [f"{rng.choice(starts)} {rng.choice(middles)} {rng.choice(ends)}." for _ in range(n)]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`: relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def second_item(scorer_dir: Path, folder: Path, item: str, question: str) -> Path:
    """A copy of a scorer directory posing as another item (its kd-train.json rewritten to sign the change)."""
    import json
    import shutil

    from kd_train.files import write_marker

    shutil.copytree(scorer_dir, folder)
    info = json.loads((folder / "scorer.json").read_text(encoding="utf-8"))
    info.update(item=item, question=question)
    (folder / "scorer.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_marker(folder, "scorer")
    return folder


def make_transformer_scorer(folder: Path, base_model: Path, epochs: float = 3, cut_vocabulary: bool = False) -> Path:
    """A transformer scorer for the demo item: a teacher fine-tuned from ``base_model`` (the tests' tiny BERT)
    on the demo answers, exported to ONNX with int8 weights (kd_train/transformer.py), shipped like
    :func:`make_scorer`'s with the detectors, scoring by its most probable score. With ``cut_vocabulary``, its
    embedding table keeps only the tokens of the first 40 training answers (as the small transformer's does)."""
    from kd_train import data, detect_fit, pipeline, scorer, teacher, teacher_judge, transformer
    from kd_train.config import TeacherConfig, WordpieceConfig
    from kd_train.quality import Candidate

    demo = REPO / "examples" / "demo"
    items = data.read_items(demo / "items.csv")
    train = data.read_responses(demo / "responses.csv", items)
    values, item = [0, 1, 2, 3], items["demo-ice"]
    teacher_dir = folder.parent / (folder.name + "-teacher")
    teacher.fine_tune(train, "demo-ice", values, teacher_dir,
                      TeacherConfig(model=str(base_model), epochs=epochs, lr=3e-3, max_length=48, patience=epochs))
    model = transformer.export_teacher(teacher_dir, keep_texts=train.responses[:40] if cut_vocabulary else None)
    val, val_logits = teacher_judge.teacher_validation(teacher_dir, teacher.read_meta(teacher_dir), None, train)
    candidate = Candidate("teacher", model, model.logits(val.responses))
    shipped, quality = pipeline.ship([candidate], val, None, values)
    detectors = detect_fit.fit(train.responses, [item.question, item.reference_answer], others=other_question_answers())
    scorer.write_scorer(folder, shipped, item="demo-ice", question=item.question, score_values=values,
                        featurizer_config=WordpieceConfig.from_dict(model.config), metrics=quality["metrics"],
                        teacher=None, training={"labelled": len(train), "fit": 0, "val": len(val), "transfer": 0},
                        quality=quality, detectors=detectors)
    return folder
