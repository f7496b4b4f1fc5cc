"""The defaults live in code (StudentConfig, TeacherConfig, featurize.DEFAULT_CONFIG); every one the README or
docs/design.md quotes must be the code's value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kd_train import featurize
from kd_train import data
from kd_train.config import AUGMENT, StudentConfig
from kd_train.quality import CUT_FOLDS
from kd_train.teacher import TeacherConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/design.md")
S, T, F = StudentConfig(), TeacherConfig(), featurize.DEFAULT_CONFIG


def student_params(n_classes: int) -> int:
    from kd_train.student import Student, param_count

    return param_count(Student(F["n_buckets"], n_classes, S.hidden, S.dropout))


# A command-line option quoted with a number ("`--alpha` 0.5", "`--epochs` (20)", "`--val-fraction`, 10%"): the
# code default it stands for. A quoted option missing here fails the test, so that no quote goes unchecked.
OPTIONS = {"--alpha": S.alpha, "--temperature": S.temperature, "--lam": S.lam, "--student-patience": S.patience,
           "--student-epochs": S.epochs, "--hidden": S.hidden, "--val-fraction": S.val_fraction,
           "--buckets": F["n_buckets"], "--epochs": T.epochs, "--patience": T.patience, "--augment": AUGMENT,
           "--port": 8000}   # --port: checked against the parser below
OPTION_QUOTE = re.compile(r"`(--[a-z-]+)`,? \(?(\d[\d,]*(?:\.\d+)?%?)")

# Defaults stated in prose: (pattern, its groups' code values). Each must be found in README.md or
# docs/design.md (reworded prose: change the pattern here, or drop it where the numbers went).
PROSE = [
    (r"one hidden layer of (\S+) units over (\S+) hashed buckets of word (\d)–(\d)-grams and character (\d)–(\d)-grams: "
     r"(\S+) parameters for an item scored 0–3",
     lambda: [S.hidden, F["n_buckets"], *F["word_ngram_range"], *F["char_ngram_range"], student_params(4)]),
    (r"would hold fewer than (\S+) answers, (\d+)-fold cross-validation", lambda: [S.cv_below, S.cv_folds]),
    (r"Below (\S+) validation answers, (\d+)-fold cross-validation", lambda: [S.cv_below, S.cv_folds]),
    (r"early-stopping patience (\S+) ", lambda: [S.patience]),
    (r"then α (\S+) and T (\S+) ", lambda: [S.alpha, S.temperature]),
    (r"`--max-length (\d+)` \(the default\)", lambda: [T.max_length]),
    (r"each word dropped or replaced by another answer's word with probability (\S+), a quarter",
     lambda: [data.AUGMENT_DROP] if data.AUGMENT_DROP == data.AUGMENT_REPLACE else ["(two probabilities now)"]),
    (r"Cutpoints are judged out of fold \((\d+)-fold cross-validation over the validation answers\)",
     lambda: [CUT_FOLDS]),
    (r"`--teacher-min-steps N` \(default (\d+)\)", lambda: [T.min_steps]),
    (r"a quarter of the copies cut to a window", lambda: [] if data.AUGMENT_WINDOW == 0.25 else ["(not a quarter)"]),
]


# Any student setting written as a symbol and a number ("α 0.5", "T = 1", "λ = 0", "patience 20", "14 hidden
# units") is taken for a quoted default, except these phrases about other settings (ablations).
SYMBOLS = {"α": S.alpha, "T": S.temperature, "λ": S.lam, "patience": S.patience}
SYMBOL_QUOTE = re.compile(r"(?<![\w/`-])(α|λ|T|patience) ?=? ?(\d+(?:\.\d+)?)(?![\d-])")
HIDDEN_QUOTE = re.compile(r"(\d+) hidden units")
NOT_DEFAULTS = ("α 1, pure distillation",)


def number(text: str) -> float:
    text = text.rstrip(".,;").replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def docs() -> dict[str, str]:
    """Each document with its whitespace collapsed (a sentence may break across lines)."""
    return {name: " ".join((REPO / name).read_text(encoding="utf-8").split()) for name in DOCS}


def test_quoted_option_defaults_are_the_code_defaults():
    quotes = [(name, m) for name, text in docs().items() for m in OPTION_QUOTE.finditer(text)]
    assert quotes, "no quoted option default found: is OPTION_QUOTE still the README's form?"
    for name, m in quotes:
        option, value = m.groups()
        assert option in OPTIONS, f"{name} quotes {m.group(0)!r}: add {option} and its code default to OPTIONS"
        assert number(value) == pytest.approx(OPTIONS[option]), \
            f"{name} says {m.group(0)!r}; the code's default is {OPTIONS[option]}"


def test_settings_written_as_symbol_and_number_are_the_code_defaults():
    for name, text in docs().items():
        for m in SYMBOL_QUOTE.finditer(text):
            if not text.startswith(NOT_DEFAULTS, m.start()):
                assert number(m.group(2)) == pytest.approx(SYMBOLS[m.group(1)]), \
                    f"{name} says {m.group(0)!r}; the code's default is {SYMBOLS[m.group(1)]} (or add it to NOT_DEFAULTS)"
        for m in HIDDEN_QUOTE.finditer(text):
            assert int(m.group(1)) == S.hidden, f"{name} says {m.group(0)!r}; the code's default is {S.hidden}"


@pytest.mark.parametrize("pattern, code", PROSE, ids=[p[:40] for p, _ in PROSE])
def test_defaults_stated_in_prose_are_the_code_defaults(pattern, code):
    found = [(name, m) for name, text in docs().items() for m in re.finditer(pattern, text)]
    assert found, f"no sentence in {DOCS} matches {pattern!r} any more: update the pattern (or drop it)"
    for name, m in found:
        assert [number(g) for g in m.groups()] == pytest.approx(code()), \
            f"{name} says {m.group(0)!r}; the code's values are {code()}"


def test_featurize_documents_its_own_defaults():
    """featurize.py's docstring lists each config key with its default."""
    stated = dict(re.findall(r"^\s{4}(\w+)\s+.*\(default ([^)]+)\)", featurize.__doc__, re.MULTILINE))
    assert set(stated) == set(F) - {"version"}
    for key, value in stated.items():
        want = F[key]
        assert (str(want) == value if isinstance(want, list) else number(value) == want), (key, value, want)


def test_featurizer_config_takes_featurize_defaults_and_rules():
    """FeaturizerConfig has no defaults or rules of its own: featurize.py's, typed; as_dict() is featurize.py's dict."""
    from dataclasses import FrozenInstanceError, replace

    from kd_train.config import FeaturizerConfig

    config = FeaturizerConfig()
    assert config.as_dict() == F and list(config.as_dict()) == list(F) and config.as_dict() is not config.as_dict()
    assert FeaturizerConfig.from_dict(F) == config and hash(FeaturizerConfig.from_dict(dict(F))) == hash(config)
    other = FeaturizerConfig.from_dict(dict(F, n_buckets=64, word_ngram_range=[1, 3], word_weight=2, seed=7))
    assert other.word_ngram_range == (1, 3) and type(other.word_weight) is float
    assert other.as_dict() == dict(F, n_buckets=64, word_ngram_range=[1, 3], word_weight=2.0, seed=7)
    assert FeaturizerConfig.from_dict(other.as_dict()) == other
    with pytest.raises(FrozenInstanceError):
        config.n_buckets = 4
    for bad, words in [(dict(F, n_buckets=0), "'n_buckets' = 0"), (dict(F, word_ngram_range="12"), "word_ngram_range"),
                       ({"n_buckets": 4}, "missing keys"), (dict(F, lowercase=True), "unknown keys ['lowercase']"),
                       ([("n_buckets", 4)], "must be a dict"), (dict(F, word_weight=0, char_weight=0.0), "both 0")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            FeaturizerConfig.from_dict(bad)
    with pytest.raises(ValueError, match="n_buckets"):
        replace(config, n_buckets=-1)   # every way of making one checks it


def test_featurizer_config_is_checked_once_from_the_command_line_to_the_scorer(tmp_path, monkeypatch):
    """--buckets is checked where it comes in (the options), carried as a FeaturizerConfig through
    training, the ONNX export and scorer.json unchecked, and checked once more where scorer.json is read."""
    from conftest import DEMO
    from kd_train import scorer
    from kd_train.cli import main

    checked = []
    validate = featurize.validate_config
    monkeypatch.setattr(featurize, "validate_config", lambda config: checked.append(dict(config)) or validate(config))
    out = tmp_path / "scorer"
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--buckets", "512", "--word-ngrams", "1", "3", "--student-epochs", "1", "--out", str(out)]) == 0
    assert [(c["n_buckets"], list(c["word_ngram_range"])) for c in checked] == [(512, [1, 3])]
    loaded = scorer.Scorer(out)
    assert len(checked) == 2 and loaded.featurizer.n_buckets == 512 == loaded.info["featurizer"]["n_buckets"]
    assert loaded.predict_proba(["heat flows into the ice"]).shape == (1, 4)
    assert len(checked) == 2


# ---- the command line's options and outputs, as README.md tells them (issue 28) --------------------

# Options README.md quotes that belong to other programs, each with the file that defines it.
OTHER_PROGRAMS = {"--cache": "bench/__main__.py", "--skip-browser": "bench/__main__.py",
                  "--skip-probes": "bench/__main__.py", "--data": "bench/__main__.py",
                  "--ignore-scripts": "kd_train/runtime.py", "--no-audit": "kd_train/runtime.py",
                  "--no-fund": "kd_train/runtime.py", "--no-deps": "README.md", "--nproc": "README.md",   # pip wheel, torchrun
                  "--head": "bench/cluster.py", "--address": "bench/cluster.py"}                   # ray start
README_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def verb_options() -> dict[str, set[str]]:
    """Each verb's options, from the parser that `kd-train VERB --help` prints."""
    import argparse

    from kd_train.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {verb: {o for a in p._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
            for verb, p in verbs.choices.items()}


def test_the_port_quoted_is_the_parsers_default():
    from kd_train.cli import build_parser

    for verb in ("serve", "demo"):
        assert build_parser().parse_args([verb, "x"] if verb == "serve" else [verb]).port == OPTIONS["--port"]


def test_every_option_of_every_verb_is_in_the_readme_and_every_quoted_option_exists():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quoted = set(README_OPTION.findall(readme))
    options = verb_options()
    for verb, flags in options.items():
        missing = sorted(flags - quoted)
        assert not missing, f"kd-train {verb} --help lists {missing}, which README.md never mentions"
    known = set().union(*options.values(), {"--version", "--help"})
    for flag in sorted(quoted - known):
        assert flag in OTHER_PROGRAMS, f"README.md quotes {flag}, which no kd-train verb has (or add it to OTHER_PROGRAMS)"
        assert flag in (REPO / OTHER_PROGRAMS[flag]).read_text(encoding="utf-8"), (flag, OTHER_PROGRAMS[flag])


def test_predict_help_and_readme_list_every_flag_and_output_column():
    from kd_train import detect
    from kd_train.cli import PREDICT_COLUMNS, build_parser

    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    table = readme[readme.index("| flag | when |"):]
    table = table[:table.index("- **")]
    assert re.findall(r"\| `([a-z_]+)` \|", table) == list(detect.REASONS)
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["predict"].format_help().split())
    codes = re.search(r"separated by ';' \(([^;)]+);", help_text).group(1)
    assert codes.split(", ") == list(detect.REASONS)
    assert f"Writes the columns {', '.join(PREDICT_COLUMNS)}" in help_text
    assert "writes the columns " + ", ".join(f"`{c.replace('...', '…')}`" for c in PREDICT_COLUMNS[:3]) in readme
    for column in PREDICT_COLUMNS:
        assert f"`{column.replace('...', '…')}`" in readme, column


def test_predict_writes_the_columns_it_documents(tmp_path):
    from conftest import DEMO
    from kd_train.cli import PREDICT_COLUMNS, main

    scorer, out = tmp_path / "scorer", tmp_path / "scores.csv"
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--student-epochs", "1", "--out", str(scorer)]) == 0
    assert main(["predict", "--scorer", str(scorer), "--input", str(DEMO / "test.csv"), "--out", str(out)]) == 0
    header = out.read_text().splitlines()[0].split(",")
    expanded = [name for c in PREDICT_COLUMNS for name in (["p_0", "p_1", "p_2", "p_3"] if c == "p_<score>..." else [c])]
    assert header == expanded
