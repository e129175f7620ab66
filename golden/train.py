"""Training and evaluation loops over a :class:`golden.data.Dataset` (one sample at a time)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .core import Core

__all__ = ["evaluate", "train", "History"]


@dataclass
class History:
    """Per-epoch figures of a training run."""

    test_accuracy: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    flips: list = field(default_factory=list)
    flips_per_step: list = field(default_factory=list)   # per epoch: (T,) totals
    samples_per_s: list = field(default_factory=list)


def evaluate(core: Core, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of inference (learning off) on events ``x`` (N, T, n_in) with labels ``y``."""
    if len(x) == 0:
        raise ValueError("evaluate: empty data set")
    ok = sum(core.predict(x[k]) == int(y[k]) for k in range(len(x)))
    return ok / len(x)


def train(core: Core, data, epochs: int, samples: int | None = None, shuffle_seed: int = 0,
          progress=None, eval_every_epoch: bool = True) -> History:
    """Train online (one sample, T updates) for ``epochs`` over the training split.

    ``samples`` limits each epoch to the first K of a per-epoch permutation.
    ``progress`` is an optional callable(iterable) -> iterable (e.g. tqdm).
    """
    h = History()
    rng = np.random.default_rng(shuffle_seed)
    n = len(data.x_train) if samples is None else min(samples, len(data.x_train))
    for e in range(epochs):
        order = rng.permutation(len(data.x_train))[:n]
        it = progress(order) if progress else order
        ok = 0
        flips = 0
        per_step = np.zeros(core.cfg.T, np.int64)
        t0 = time.perf_counter()
        for k in it:
            r = core.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
            ok += r.prediction == int(data.y_train[k])
            flips += len(r.flips)
            per_step += r.flips_per_step
        dt = time.perf_counter() - t0
        core.end_epoch(e)
        h.train_accuracy.append(ok / n)
        h.flips.append(flips)
        h.flips_per_step.append(per_step)
        h.samples_per_s.append(n / dt)
        if eval_every_epoch:
            h.test_accuracy.append(evaluate(core, data.x_test, data.y_test))
    return h
