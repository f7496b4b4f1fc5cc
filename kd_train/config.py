"""The featurizer's, the student's and the teacher's settings, with their only defaults.

Standard library only, so that the command line can show the defaults in ``--help`` without
importing torch (kd_train/distill.py, which trains with them, re-exports ``StudentConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from kd_train import featurize, wordpiece

_F = featurize.DEFAULT_CONFIG

# The small-item rule, shared by the teacher (kd_train/teacher.py) and the student: a validation split
# smaller than CV_BELOW answers is too small to stop early on or to choose by, so CV_FOLDS-fold
# cross-validation over all scored answers is used instead.
CV_BELOW = 30
CV_FOLDS = 5

# Perturbed copies of each answer the student fits on, labelled by the teacher and added to its
# transfer set (kd_train/data.py's augmented_answers; `kd-train train --augment`).
AUGMENT = 2

# The models `kd-train train` may ship, chosen by validation QWK; on a tie the first listed (the smaller) wins.
CANDIDATES = ("student", "ann", "hashing_lr", "sequence")
# Candidates trained only when --candidates names them (kd_train/ladder.py), exported to ONNX with int8 weights
# (kd_train/transformer.py): "tinybert_like", the small transformer student (the fine-tuned teacher's first
# layers distilled from it; about 7 MB per scorer from all-MiniLM-L6-v2), and "teacher", the fine-tuned teacher
# itself (about 23 MB).
EXTRA_CANDIDATES = ("tinybert_like", "teacher")


@dataclass(frozen=True)
class FeaturizerConfig:
    """featurize.py's config, typed and valid by construction: making one runs ``featurize.validate_config``
    (the rules and the defaults are featurize.py's), so the code that carries it checks nothing again.
    Make it where a config comes in: from options (``FeaturizerConfig(n_buckets=...)``) or from a dict
    (``from_dict``: scorer.json's "featurizer"); ``as_dict()`` is the plain dict that featurize.py,
    scorer.json and the page take. Ranges are (lo, hi) tuples here and [lo, hi] lists in the dict."""

    version: int = _F["version"]
    n_buckets: int = _F["n_buckets"]
    word_ngram_range: tuple[int, int] = tuple(_F["word_ngram_range"])
    char_ngram_range: tuple[int, int] = tuple(_F["char_ngram_range"])
    word_weight: float = _F["word_weight"]
    char_weight: float = _F["char_weight"]
    seed: int = _F["seed"]

    def __post_init__(self) -> None:
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        featurize.validate_config(raw)       # ValueError naming the bad key
        for key, typed in (("version", int), ("word_ngram_range", tuple), ("char_ngram_range", tuple),
                           ("word_weight", float), ("char_weight", float)):
            object.__setattr__(self, key, typed(raw[key]))

    @classmethod
    def from_dict(cls, config: dict) -> FeaturizerConfig:
        """The config of a featurize.py dict; ValueError when it is not one (naming the bad, missing or unknown key)."""
        if not isinstance(config, dict) or config.keys() != _F.keys():
            featurize.validate_config(config)   # raises, in featurize.py's words
        return cls(**config)

    def as_dict(self) -> dict:
        """The plain dict featurize.featurize takes, as scorer.json stores it (a new dict each call)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass
class StudentConfig:
    hidden: int = 14
    dropout: float = 0.1
    alpha: float = 0.5        # alpha and T chosen on the val split (bench/results/asap-sas.md, ablations)
    temperature: float = 1.0
    lam: float = 0.0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    epochs: int = 60
    batch_size: int = 32
    patience: int = 20  # 8 let some runs stop before val QWK first rose (ablations)
    seed: int = 0
    val_fraction: float = 0.1
    cv_below: int = CV_BELOW   # a validation split smaller than this: choose by k-fold cross-validation instead
    cv_folds: int = CV_FOLDS

    def without_teacher(self) -> StudentConfig:
        """The ANN baseline's settings: the same network and training on human scores only (α = λ = 0)."""
        return replace(self, alpha=0.0, lam=0.0)


_T = featurize.TOKENS_CONFIG


@dataclass(frozen=True)
class TokenConfig:
    """featurize.token_ids' config (the sequence student's input), typed and checked where it is made,
    like :class:`FeaturizerConfig`; ``as_dict()`` is the dict featurize.py, scorer.json and the page take."""

    version: int = _T["version"]
    kind: str = _T["kind"]
    n_buckets: int = _T["n_buckets"]
    max_tokens: int = _T["max_tokens"]
    seed: int = _T["seed"]

    def __post_init__(self) -> None:
        featurize.validate_tokens_config(self.as_dict())

    @classmethod
    def from_dict(cls, config: dict) -> TokenConfig:
        featurize.validate_tokens_config(config)
        return cls(**config)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class WordpieceConfig:
    """kd_train/wordpiece.py's config (a transformer scorer's input: the teacher's own tokenizer), checked by
    wordpiece.py's rules where it is made, like :class:`FeaturizerConfig`; ``specials`` is a tuple here and a
    list in ``as_dict()``, the dict wordpiece.py, scorer.json and the page take."""

    version: int
    kind: str
    vocab_file: str
    max_length: int
    truncation: str
    head_share: float
    unk: str
    cls: str
    sep: str
    pad: str
    specials: tuple[str, ...]
    max_chars_per_word: int
    prefix: str

    def __post_init__(self) -> None:
        if isinstance(self.specials, list):
            object.__setattr__(self, "specials", tuple(self.specials))
        wordpiece.validate_config(self.as_dict())

    @classmethod
    def from_dict(cls, config: dict) -> WordpieceConfig:
        wordpiece.validate_config(config)
        return cls(**config)

    def as_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class SequenceConfig:
    """The sequence student: hashed token ids -> embeddings (initialised from the teacher's encoder) ->
    1-D convolutions -> max and mean pooling -> one logit per score. Its distillation settings (α, T, λ,
    batch, seed, splits) are the student's (:class:`StudentConfig`); these are its own."""

    tokens: TokenConfig = TokenConfig()
    dim: int = 48            # embedding width (the table is stored as float16 in model.onnx)
    channels: int = 128      # filters per kernel width (64, 128; chosen on ASAP-SAS validation: bench/results/sequence-settings)
    kernels: tuple[int, ...] = (2, 3)
    dropout: float = 0.2
    lr: float = 2e-3
    epochs: int = 40
    patience: int = 8
    init: str = "teacher"    # "teacher": embeddings from the teacher's encoder; "random"

    def __post_init__(self) -> None:
        if not (self.dim > 0 and self.channels > 0 and self.kernels and all(k >= 1 for k in self.kernels)):
            raise ValueError(f"sequence student: dim, channels and kernel widths must be positive, got {self}")
        if self.init not in ("teacher", "random"):
            raise ValueError(f"sequence student init {self.init!r}: use 'teacher' or 'random'")
        object.__setattr__(self, "kernels", tuple(self.kernels))


@dataclass
class TeacherConfig:
    """How a teacher is fine-tuned. These defaults are the only ones: the command line shows and uses them."""

    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    epochs: float = 20.0  # the most epochs; early stopping on validation QWK (patience) usually ends sooner
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 0  # tokens per input; 0: auto, from the training answers' token counts (resolve_max_length)
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 3  # epochs without a better validation QWK, counted once it is above 0 (PatienceRule)
    min_steps: int = 0  # ... and once this many optimizer steps have run
    with_question: bool = False
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of all optimizer steps (of the most epochs) spent warming the learning rate up
    folds: int = 0
    layers: int = 0  # > 0: keep only the encoder's first N layers (a smaller student transformer)
    class_weights: str = "balanced"  # "balanced": n / (classes * count) per score on the fit split; "none"
    cv_below: int = CV_BELOW  # a validation split smaller than this: choose the epochs by cross-validation (0: never)
    cv_folds: int = CV_FOLDS
    frozen: bool = True  # cross-validated items: also try the frozen encoder + logistic regression, keep the better
    split_seed: int | None = None  # seed of the validation split and folds; None: ``seed`` (members of an ensemble share one)

    @property
    def splits_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed
