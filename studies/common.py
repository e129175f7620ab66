"""What every study shares: the base config, the Core's training loop with flip statistics, and
one method run (BSO, T-BSO, Bop, the STE baselines, BPTT; float and int).

The golden model (golden/) is the hardware contract; nothing here changes it: the studies only
configure and drive it.
"""
from __future__ import annotations

import time

import numpy as np

from golden.config import NetConfig
from golden.core import Core

from .baselines import LatentTrainer, bop_config, make_core
from .bptt import BPTTTrainer

__all__ = ["base_config", "train_core", "evaluate_core", "run_method", "METHODS",
           "BASE_OVERRIDES", "HIDDEN"]

# Overrides of golden/config.py's defaults applied to every method (none: the tuned defaults
# learn; an earlier default target of 8.0 did not, which is why this hook exists).
BASE_OVERRIDES: dict = {}
HIDDEN = 256

METHODS = ["BSO", "T-BSO", "Bop", "STE+Adam", "STE+SGD", "STE+hybrid", "STE+hybrid (fixed SGD lr)",
           "BPTT", "BSO (int)", "T-BSO (int)"]


def base_config(n_in: int, seed: int = 0, **kw) -> NetConfig:
    """golden/config.py defaults (``NetConfig.default_for(optimizer)`` where it exists) with
    ``layers=(n_in, 256, 10)`` and :data:`BASE_OVERRIDES`."""
    d = dict(BASE_OVERRIDES)
    d.update(layers=(n_in, HIDDEN, 10), seed=seed)
    d.update(kw)
    opt = d.pop("optimizer", "bso")
    if hasattr(NetConfig, "default_for"):
        return NetConfig.default_for(opt, **d)
    return NetConfig(optimizer=opt, **d)


# ------------------------------------------------------------------------------------------
# training loops with flip statistics
# ------------------------------------------------------------------------------------------

def _corr(ws, w0s):
    num = sum(float(np.sum(a.astype(np.int64) * b)) for a, b in zip(ws, w0s))
    return num / sum(a.size for a in ws)


def evaluate_core(core: Core, x, y) -> float:
    return float(np.mean([core.predict(x[k]) == int(y[k]) for k in range(len(x))]))


def train_core(core: Core, data, epochs: int, samples: int | None = None, seed: int = 0,
               log=None) -> dict:
    """Online training (one sample, T updates) with per-epoch accuracy and flip statistics.

    flip_flop[e]: mean over the epoch's samples of the fraction of synapses whose sign after
    the sample differs from before it (Liu et al. 2021's flip-flop ratio, one iteration = one
    sample). corr_init[e]: mean(w * w0) at the end of the epoch. flips[e]: flip events.
    """
    rng = np.random.default_rng(seed)
    n = len(data.x_train) if samples is None else min(samples, len(data.x_train))
    w0 = [w.copy() for w in core.w_sign]
    N = sum(w.size for w in w0)
    h = {"test_acc": [], "train_acc": [], "flip_flop": [], "corr_init": [], "flips": [],
         "sat": {}}
    for e in range(epochs):
        order = rng.permutation(len(data.x_train))[:n]
        ok = 0
        changed = 0
        flips = 0
        for k in order:
            before = [w.copy() for w in core.w_sign]
            r = core.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
            changed += sum(int(np.count_nonzero(b != a)) for b, a in zip(before, core.w_sign))
            flips += len(r.flips)
            ok += r.prediction == int(data.y_train[k])
        core.end_epoch(e)
        h["train_acc"].append(ok / n)
        h["flip_flop"].append(changed / n / N)
        h["flips"].append(flips)
        h["corr_init"].append(_corr(core.w_sign, w0))
        h["test_acc"].append(evaluate_core(core, data.x_test, data.y_test))
        if log:
            log(f"    epoch {e}: test {h['test_acc'][-1]:.3f}")
    h["sat"] = core.counters
    return h


def _latent_hist(hist) -> dict:
    return {"test_acc": list(hist.test_accuracy), "train_acc": list(hist.train_accuracy),
            "flip_flop": list(hist.flip_flop), "corr_init": list(hist.corr_init),
            "switch_lr": hist.switch_lr}


LATENT = {"STE+Adam": ("adam", LatentTrainer), "STE+SGD": ("sgd", LatentTrainer),
          "STE+hybrid": ("hybrid", LatentTrainer),
          "STE+hybrid (fixed SGD lr)": ("hybrid", LatentTrainer), "BPTT": ("adam", BPTTTrainer)}
BPTT_LR = 3e-4


def run_method(method: str, data, seed: int, epochs: int, samples: int | None = None,
               log=None) -> dict:
    """Train one method on ``data`` from seed ``seed``; return its per-epoch history."""
    cfg = base_config(data.n_in, seed=seed, T=data.T)
    t0 = time.perf_counter()
    if method in ("BSO", "T-BSO", "Bop", "BSO (int)", "T-BSO (int)"):
        mode = "int" if "(int)" in method else "float"
        c = base_config(data.n_in, seed=seed, T=data.T,
                        optimizer="tbso" if method.startswith("T-BSO") else "bso")
        if method == "Bop":
            c = bop_config(c)
        h = train_core(make_core(c, mode), data, epochs, samples, seed, log)
    elif method in LATENT:
        opt, cls = LATENT[method]
        kw = {"lr": BPTT_LR} if cls is BPTTTrainer else {}
        if method == "STE+hybrid (fixed SGD lr)":
            kw["switch_rate"] = "fixed"
        tr = cls(cfg, opt, batch=1, **kw)
        h = _latent_hist(tr.fit(data, epochs, samples=samples, shuffle_seed=seed,
                                on_epoch=_latent_log(log)))
    else:
        raise ValueError(f"unknown method {method!r}: allowed {METHODS}")
    h["seconds"] = time.perf_counter() - t0
    return h


def _latent_log(log):
    if not log:
        return None
    return lambda e, h: log(f"    epoch {e}: test {h.test_accuracy[-1]:.3f}")
