"""The student's settings, with their only defaults.

Standard library only, so that the command line can show the defaults in ``--help`` without
importing torch (kd_train/distill.py, which trains with them, re-exports ``StudentConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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
    cv_below: int = 30   # a validation split smaller than this: choose by k-fold cross-validation instead
    cv_folds: int = 5

    def without_teacher(self) -> StudentConfig:
        """The ANN baseline's settings: the same network and training on human scores only (α = λ = 0)."""
        return replace(self, alpha=0.0, lam=0.0)
