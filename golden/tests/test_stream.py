"""golden.stream: a continuous run over windows equals one long run; deadline bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import tiny_config
from golden.core import Core
from golden.events import bin_events, bin_windows
from golden.stream import Deadline, run_stream, run_window
from golden.tests.test_events import _davis


def _windows(T, n, d=16):
    ev, size = _davis()
    return bin_windows(ev, size, T, 8_000, downsample=d, n_windows=n)


@pytest.mark.parametrize("optimizer,learn", [("bso", False), ("bso", True), ("tbso", False)])
def test_stream_equals_one_long_run(optimizer, learn):
    T, n = 8, 12                                           # 96 steps of the real recording
    x = _windows(T, n)
    n_in = x.shape[2]
    short = tiny_config(optimizer=optimizer, gamma=(2, 2), rate_shift=4).replace(
        layers=(n_in, 24, 10), T=T, theta=(2.0,))
    long = short.replace(T=T * n)
    a, b = Core(short, "int"), Core(long, "int")
    res = run_stream(a, x, labels=np.full(n, 3) if learn else None, learn=learn)
    ref = b.run_sample(x.reshape(T * n, n_in), label=3 if learn else None, learn=learn)
    spikes = np.concatenate([r.spikes[0] for r in res])
    assert spikes.any() and spikes.sum() < spikes.size            # not a trivial stream
    np.testing.assert_array_equal(spikes, ref.spikes[0])
    for l in range(short.n_layers):
        np.testing.assert_array_equal(a.v[l], b.v[l])
        np.testing.assert_array_equal(a.a[l], b.a[l])
        np.testing.assert_array_equal(a.w_sign[l], b.w_sign[l])
        np.testing.assert_array_equal(a.M[l], b.M[l])
    np.testing.assert_array_equal(sum(r.scores for r in res), ref.scores)
    assert [int(np.argmax(r.scores)) for r in res] == [r.prediction for r in res]
    if learn:
        assert sum(len(r.flips) for r in res) == len(ref.flips) > 0
        np.testing.assert_array_equal(np.concatenate([r.flips_per_step for r in res]),
                                      ref.flips_per_step)
    # and it is not what windows from reset give
    c = Core(short, "int")
    reset = np.concatenate([c.run_sample(w).spikes[0] for w in x])
    assert not np.array_equal(reset, spikes)


def test_run_window_continues_and_checks_shape():
    x = _windows(4, 3)
    cfg = tiny_config().replace(layers=(x.shape[2], 16, 10), T=4, theta=(2.0,))
    a, b = Core(cfg), Core(cfg)
    run_stream(a, x[:2])
    run_stream(b, x[:1])
    run_stream(b, x[1:2], reset_first=False)
    for l in range(cfg.n_layers):
        np.testing.assert_array_equal(a.v[l], b.v[l])
    with pytest.raises(ValueError, match="expected"):
        run_window(a, np.zeros((5, x.shape[2]), bool))


def test_deadline_bookkeeping():
    d = Deadline(budget=10)
    for cost, ev in ((3, 100), (10, 50), (11, 7), (2, 1), (12, 0)):
        d.observe(cost, ev)
    assert (d.units, d.missed, d.first_missed, d.events_before_first_miss, d.worst,
            d.events) == (5, 2, 2, 150, 12.0, 158)
    with pytest.raises(ValueError, match="budget must be > 0"):
        Deadline(0)


def test_windows_match_bin_events():
    ev, size = _davis()
    x = _windows(8, 3)
    t0 = int(ev["t"][0])
    np.testing.assert_array_equal(x[2], bin_events(ev, size, 8, t_start=t0 + 2 * 64_000,
                                                   t_end=t0 + 3 * 64_000, downsample=16))
