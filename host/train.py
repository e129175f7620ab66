"""On-device training loop: golden.train.train's schedule, order and figures, over an Accelerator.

The loop is the same statement for statement as :func:`golden.train.train` (same per-epoch
permutation from ``default_rng(shuffle_seed)``, same ``end_epoch`` and evaluation), so on the
emulator the :class:`golden.train.History` is identical; a test holds it to that. On a device
with ``run_samples`` (an :class:`host.accelerator.Accelerator`) the samples of an epoch and of
an evaluation are pipelined (protocol v2: a window of ``SAMPLE`` frames in flight).
"""
from __future__ import annotations

import time

import numpy as np

from golden.train import History
from golden.train import evaluate as _golden_evaluate

__all__ = ["train", "evaluate"]


def evaluate(acc, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of inference (learning off), as ``golden.train.evaluate``; pipelined on a
    device that has ``run_samples``."""
    if not hasattr(acc, "run_samples"):
        return _golden_evaluate(acc, x, y)
    if len(x) == 0:
        raise ValueError("evaluate: empty data set")
    ok = sum(r.prediction == int(y[k]) for k, r in enumerate(acc.run_samples(x)))
    return ok / len(x)


def _results(acc, data, order):
    """One SampleResult per training sample of ``order`` (learning on), in order."""
    if hasattr(acc, "run_samples"):
        yield from acc.run_samples((data.x_train[k] for k in order),
                                   (int(data.y_train[k]) for k in order), learn=True)
        return
    for k in order:
        yield acc.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)


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
        for k, r in zip(it, _results(acc, data, order)):
            ok += r.prediction == int(data.y_train[k])
            flips += int(r.flips_per_step.sum())
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
