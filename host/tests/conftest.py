"""Shared fixtures: small configs, random event data, the digits data set (loaded once)."""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import tiny_config
from golden.data import Dataset


def random_dataset(cfg, n_train=24, n_test=8, p=0.4, seed=0) -> Dataset:
    """Random binary events for ``cfg`` (labels uniform)."""
    rng = np.random.default_rng(seed)
    n_in, n_out = cfg.layers[0], cfg.layers[-1]
    x = rng.random((n_train + n_test, cfg.T, n_in)) < p
    y = rng.integers(0, n_out, n_train + n_test)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name="random")


@pytest.fixture(params=["bso", "tbso"])
def tiny(request):
    """The tiny test network, for both optimizers (gamma low enough that flips happen)."""
    return tiny_config(optimizer=request.param, gamma=(2, 2), rate_shift=4, tbso_gamma=0.25)


@pytest.fixture(scope="session")
def digits():
    from golden.data import load_digits_events

    return load_digits_events(T=8)
