"""The bundled data set: scikit-learn's digits as event streams, with a fixed train/test split.

Encoder (``encode_digits``): each 8x8 image (levels 0..16) becomes 128 input channels, an ON
channel per pixel driven by ``x/16`` and an OFF channel driven by ``(16-x)/16``, over T steps.

* ``"delta"`` (default): deterministic sigma-delta rate code. A channel with intensity p keeps
  an accumulator ``acc += p`` each step (starting at ``phase``) and spikes when ``acc >= 1``,
  subtracting 1. Over T steps it emits ``floor(T*p + phase)`` spikes, spread evenly. The phase is
  0.5 for every channel, so p = 0 never spikes and p = 1 spikes every step.
* ``"rate"``: Bernoulli(p) per step from ``numpy.random.default_rng(seed + sample index)``.

Split: a fixed permutation (``default_rng(0)``) of the 1797 images; the first 1437 train, the
last 360 test (80/20). Nothing is downloaded: the images ship inside scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "encode_digits", "load_digits_events", "N_TRAIN_DIGITS"]

N_TRAIN_DIGITS = 1437


@dataclass(frozen=True)
class Dataset:
    """Event data: ``x`` (N, T, n_in) bool, ``y`` (N,) int labels; train and test parts."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""

    @property
    def n_in(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def T(self) -> int:
        return int(self.x_train.shape[1])


def encode_digits(images: np.ndarray, T: int, encoding: str = "delta", seed: int = 0,
                  levels: int = 16) -> np.ndarray:
    """Encode (N, 64) images with values 0..levels into (N, T, 128) ON/OFF spike trains."""
    images = np.asarray(images)
    if images.ndim != 2:
        raise ValueError(f"images must be (N, pixels), got shape {images.shape}")
    if images.size and (images.min() < 0 or images.max() > levels):
        raise ValueError(f"image values must be in 0..{levels}, got "
                         f"{images.min()}..{images.max()}")
    if T < 1:
        raise ValueError(f"T={T} must be >= 1")
    p = images.astype(np.float64) / levels
    p = np.concatenate([p, 1.0 - p], axis=1)                    # ON, OFF
    n, c = p.shape
    if encoding == "delta":
        # counts after t+1 steps are floor((t+1)*p + 0.5); spikes are their increments
        steps = np.arange(T + 1, dtype=np.float64)[None, :, None]
        counts = np.floor(steps * p[:, None, :] + 0.5 + 1e-9)
        return np.diff(counts, axis=1) > 0
    if encoding == "rate":
        out = np.empty((n, T, c), bool)
        for k in range(n):
            out[k] = np.random.default_rng(seed + k).random((T, c)) < p[k]
        return out
    raise ValueError(f"encoding={encoding!r} is invalid: allowed ('delta', 'rate')")


def load_digits_events(T: int = 8, encoding: str = "delta", seed: int = 0) -> Dataset:
    """Load scikit-learn's digits, encode them and split them (see module docstring)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    x = encode_digits(d.data[perm], T, encoding, seed)
    y = d.target[perm].astype(np.int64)
    k = N_TRAIN_DIGITS
    return Dataset(x[:k], y[:k], x[k:], y[k:], name=f"digits-{encoding}-T{T}")
