"""On-device training loop: golden.train.train's schedule, order and figures, over an Accelerator.

The loop is the same statement for statement as :func:`golden.train.train` (same per-epoch
permutation from ``default_rng(shuffle_seed)``, same ``end_epoch`` and evaluation), so on the
emulator the :class:`golden.train.History` is identical; a test holds it to that.
"""
from __future__ import annotations

import time

import numpy as np

from golden.train import History, evaluate

__all__ = ["train", "evaluate"]


def train(acc, data, epochs: int, samples: int | None = None, shuffle_seed: int = 0,
          progress=None, eval_every_epoch: bool = True, on_epoch=None,
          start_epoch: int = 0, history: History | None = None) -> History:
    """Train online on the device for ``epochs`` over ``data`` (a golden.data.Dataset).

    ``progress``: optional callable(iterable) -> iterable (e.g. tqdm); ``on_epoch(e, history)``
    is called after each epoch's evaluation. ``History.samples_per_s`` includes link time.
    ``start_epoch``, ``history``: resume a run whose first ``start_epoch`` epochs are done (the
    device restored from their checkpoint): the shuffle draws of those epochs are replayed, so
    the rest equals the unsplit run.
    """
    h = History() if history is None else history
    rng = np.random.default_rng(shuffle_seed)
    n = len(data.x_train) if samples is None else min(samples, len(data.x_train))
    for e in range(epochs):
        order = rng.permutation(len(data.x_train))[:n]
        if e < start_epoch:
            continue
        it = progress(order) if progress else order
        ok = 0
        flips = 0
        per_step = np.zeros(acc.cfg.T, np.int64)
        t0 = time.perf_counter()
        for k in it:
            r = acc.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
            ok += r.prediction == int(data.y_train[k])
            flips += len(r.flips)
            per_step += r.flips_per_step
        dt = time.perf_counter() - t0
        acc.end_epoch(e)
        h.train_accuracy.append(ok / n)
        h.flips.append(flips)
        h.flips_per_step.append(per_step)
        h.samples_per_s.append(n / dt)
        if eval_every_epoch:
            h.test_accuracy.append(evaluate(acc, data.x_test, data.y_test))
        if on_epoch is not None:
            on_epoch(e, h)
    return h
