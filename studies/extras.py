"""Study section ``extras``: shift-based BN folded into the Core, and distillation from a
full-precision teacher (one task per seed)."""
from __future__ import annotations

from golden.core import Core

from .baselines import LatentTrainer, fold_bn
from .common import base_config, evaluate_core

__all__ = ["run_extras", "extras_task"]


def extras_task(data, seed: int, epochs: int, samples) -> dict:
    """One seed: BN trained with STE+Adam and folded into the Core (exact and shift folds),
    and a distilled binary student. Returns ``{"bn": row, "kd": row}``."""
    s = seed
    cfg = base_config(data.n_in, seed=s, T=data.T)
    # BN needs batch statistics: minibatch 16, online update per step
    tr = LatentTrainer(cfg, "adam", batch=16, bn=True)
    tr.fit(data, epochs, samples=samples, shuffle_seed=s)
    float_acc = tr.evaluate(data.x_test, data.y_test)
    row = {"seed": s, "float_bn": float_acc}
    for shift in (False, True):
        core = Core(cfg, "int")
        core.w_sign = [w.copy() for w in tr.binary_weights()]
        core.theta, core.bias = fold_bn(tr, cfg, shift=shift)
        row["core_int_" + ("shift" if shift else "exact")] = evaluate_core(
            core, data.x_test, data.y_test)
    teacher = LatentTrainer(cfg, "adam", lr=1e-2, batch=8, full_precision=True)
    teacher.fit(data, epochs, samples=samples, shuffle_seed=s)
    t_acc = teacher.evaluate(data.x_test, data.y_test)
    student = LatentTrainer(cfg, "adam", batch=1, teacher=teacher, kd_alpha=0.5)
    sh = student.fit(data, epochs, samples=samples, shuffle_seed=s)
    return {"bn": row, "kd": {"seed": s, "teacher": t_acc, "student": sh.test_accuracy[-1]}}


def run_extras(data, seeds, epochs, samples, log) -> dict:
    """The whole section in this process (:mod:`studies.experiments` fans it out instead)."""
    out = {"bn": [], "kd": []}
    for s in seeds:
        r = extras_task(data, s, epochs, samples)
        out["bn"].append(r["bn"])
        out["kd"].append(r["kd"])
        log(f"  extras seed {s}: {r}")
    return out
