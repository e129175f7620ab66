"""Study section ``bits``: int-mode accuracy vs momentum width, with and without stochastic
rounding (one task per optimizer x arithmetic x width x seed)."""
from __future__ import annotations

import numpy as np

from golden.config import NetConfig

from .baselines import make_core
from .common import base_config, train_core

__all__ = ["bits_config", "bits_tasks", "bits_task", "assemble_bits", "task_key", "run_bits",
           "smallest_within", "ARITHS"]


def bits_config(cfg: NetConfig, bits: int) -> NetConfig:
    """``cfg`` with a ``bits``-wide momentum covering the same real range.

    The momentum LSB is ``G * 2^-grad_shift``; going from the default width ``b0`` to ``b``
    shifts ``grad_shift`` by ``b0 - b`` (clamped to 0..24) and scales ``gamma`` by the same
    power of two (rounded, clamped to the new range), so the flip threshold stays the same
    real number wherever the width allows it.
    """
    b0 = cfg.momentum_bits
    mom_max = (1 << (bits - 1)) - 1
    gs, gam = [], []
    for g, th in zip(cfg.grad_shift, cfg.gamma):
        g2 = min(24, max(0, g + b0 - bits))
        gs.append(g2)
        gam.append(int(min(mom_max, max(0, round(th * 2.0 ** (g - g2))))))
    return cfg.replace(momentum_bits=bits, grad_shift=tuple(gs), gamma=tuple(gam))


ARITHS = ("float", "SR", "noSR")     # float reference, int with / without stochastic rounding
NAMES = {"bso": "BSO", "tbso": "T-BSO"}


def bits_tasks(widths, seeds) -> list[dict]:
    """The independent runs of the section: (optimizer, arithmetic, width, seed); the float
    reference has no width."""
    out = []
    for opt in NAMES:
        for arith in ARITHS:
            for b in ([None] if arith == "float" else widths):
                out += [{"opt": opt, "arith": arith, "width": b, "seed": s} for s in seeds]
    return out


def bits_task(data, opt: str, arith: str, width, seed: int, epochs: int, samples) -> dict:
    """One run: final test accuracy and momentum saturation count."""
    cfg = base_config(data.n_in, seed=seed, T=data.T, optimizer=opt)
    if arith == "float":
        h = train_core(make_core(cfg, "float"), data, epochs, samples, seed)
    else:
        h = train_core(make_core(bits_config(cfg, width), "int", arith == "SR"), data, epochs,
                       samples, seed)
    return {"acc": h["test_acc"][-1], "sat": int(h["sat"].get("momentum", 0))}


def assemble_bits(results: dict, widths, seeds, epochs, samples) -> dict:
    """The section's table from ``{task key: bits_task result}`` (see :func:`task_key`)."""
    out = {"widths": list(widths), "seeds": list(seeds), "epochs": epochs, "samples": samples,
           "runs": {}}
    for opt, name in NAMES.items():
        out["runs"][f"{name} float"] = [results[task_key(opt, "float", None, s)]["acc"]
                                        for s in seeds]
        for arith in ("SR", "noSR"):
            for b in widths:
                rs = [results[task_key(opt, arith, b, s)] for s in seeds]
                out["runs"][f"{name} {arith} {b}"] = [r["acc"] for r in rs]
                out["runs"][f"{name} {arith} {b} sat"] = sum(r["sat"] for r in rs)
    return out


def task_key(opt: str, arith: str, width, seed: int) -> str:
    return f"bits/{NAMES[opt]}/{arith}/{width if width is not None else '-'}/{seed}"


def run_bits(data, widths, seeds, epochs, samples, log) -> dict:
    """The whole section in this process (:mod:`studies.experiments` fans it out instead)."""
    res = {}
    for t in bits_tasks(widths, seeds):
        res[task_key(t["opt"], t["arith"], t["width"], t["seed"])] = bits_task(
            data, t["opt"], t["arith"], t["width"], t["seed"], epochs, samples)
        log(f"  {task_key(t['opt'], t['arith'], t['width'], t['seed'])}")
    return assemble_bits(res, widths, seeds, epochs, samples)


def smallest_within(bits_res: dict, name: str, sr: str, tol: float = 0.01,
                    stable: bool = False):
    """Smallest width whose mean accuracy is within ``tol`` of float (``stable``: and so are
    all wider widths)."""
    ref = float(np.mean(bits_res["runs"][f"{name} float"]))
    ok = [float(np.mean(bits_res["runs"][f"{name} {sr} {b}"])) >= ref - tol
          for b in bits_res["widths"]]
    for i, b in enumerate(bits_res["widths"]):
        if ok[i] and (not stable or all(ok[i:])):
            return b
    return None
