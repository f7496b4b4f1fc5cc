"""Cross-validation of the distilled students with fold teachers.

On a cross-validated item the teacher keeps the teacher of each fold of its cross-validation
(``teacher.fold_teachers``). Here each fold teacher labels the scored and transfer answers, so that the KD and
sequence students, cross-validated on the same folds, learn fold k from fold k's teacher alone
(``distill.FoldTeacher``): no held-out score reaches their out-of-fold figures, which selection compares with
the baselines' (human scores only).
"""

from __future__ import annotations

from pathlib import Path

from kd_train import ensemble, soft_labels, teacher
from kd_train.data import Table
from kd_train.distill import FoldTeacher


def fold_teachers(out: Path, dirs: list[Path], train: Table, transfer: Table | None,
                  log=print) -> list[tuple[list[Path], FoldTeacher]] | None:
    """The teacher's fold teachers (``teacher.fold_teachers``; every member's fold k together) with their soft
    labels of the scored and transfer answers, written to out/folds/<k>/: [(fold k's folders, its FoldTeacher)],
    or None where the teacher kept none."""
    per_member = [teacher.fold_teachers(d) for d in dirs]
    if not all(per_member) or len({len(f) for f in per_member}) != 1 or \
            any(m[1] != members[0][1] for members in zip(*per_member) for m in members):
        log("  the teacher kept no fold teachers (a teacher folder from before kd-train kept them): the KD and "
            "sequence students learn from a teacher that saw every fold, and their out-of-fold QWK is optimistic")
        return None
    found = []
    for k, members in enumerate(zip(*per_member)):
        fold_dirs, names = [m[0] for m in members], [d.name for d in dirs]
        parts = [ensemble.label(fold_dirs, train, out / "folds" / str(k) / "soft-train.csv", names)]
        if transfer is not None and len(transfer):
            parts.append(ensemble.label(fold_dirs, transfer, out / "folds" / str(k) / "soft-transfer.csv", names))
        found.append((fold_dirs, FoldTeacher(held_out=list(members[0][1]), soft=soft_labels.merge(parts))))
    log(f"  cross-validation: in each of the {len(found)} folds the KD and sequence students learn from that fold's "
        "teacher, which never saw the fold's scores (their out-of-fold QWK is as honest as the baselines')")
    return found


def note(folds: list | None) -> dict:
    """report.json's word on how the distilled students were cross-validated."""
    if folds:
        return {"used": True, "folds": len(folds),
                "why": "each fold's students learnt from a teacher that never saw that fold's scores"}
    return {"used": False, "why": "the teacher kept no fold teachers: the distilled students' out-of-fold QWK is "
                                  "optimistic (their teacher saw every fold)"}
