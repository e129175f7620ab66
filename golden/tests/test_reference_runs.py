"""Seeded learning runs replayed against a recording: the golden model must not change one bit.

``golden/tests/data/reference_runs.npz`` was recorded by :func:`record` on the straightforward
golden model *before* it was vectorised (commit message of the data file says which), so any
speed-up of golden/ that moves a flip, a spike, a score, a momentum or a counter fails here.
Every case learns online over digits samples (int mode, and float mode for BSO / T-BSO), applies
the epoch schedule once in the middle, and records per sample the prediction, the scores, the
hidden spike rasters and every flip event, and at the end the weights, momenta, V, thresholds,
step counter and saturation counters.

Re-record (only when the *contract* changes, documented in docs/fixed_point.md)::

    python -m golden.tests.test_reference_runs
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from golden.config import NetConfig
from golden.core import Core
from golden.data import load_digits_events

DATA = Path(__file__).parent / "data" / "reference_runs.npz"
SAMPLES = 24          # learning samples per case; the schedule is applied after half of them
PREDICT = 4           # then inference-only samples

# name: (mode, NetConfig keyword arguments)
CASES = {
    "bso_int": ("int", dict(optimizer="bso", layers=(128, 40, 10), rate_shift=7, seed=3)),
    "tbso_int": ("int", dict(optimizer="tbso", layers=(128, 40, 10), rate_shift=6, seed=4)),
    # two hidden layers, hard reset, narrow momentum (saturates), fast EMA (many flips)
    "bso_deep_int": ("int", dict(optimizer="bso", layers=(128, 24, 16, 10), theta=(8.0, 4.0),
                                 reset="hard", momentum_bits=6, grad_shift=(2, 3, 4),
                                 gamma=(8, 8, 8), rate_shift=5, trace_bits=6, delta_bits=8, seed=5)),
    # T-BSO without momentum reset, narrow membrane/trace (saturation counters move)
    "tbso_noreset_int": ("int", dict(optimizer="tbso", layers=(128, 32, 10), reset_momentum=False,
                                     rate_shift=6, membrane_bits=11, trace_bits=6, v_bits=10,
                                     seed=6)),
    # wide widths: values beyond 32 bits in the momentum / V arithmetic
    "tbso_wide_int": ("int", dict(optimizer="tbso", layers=(128, 32, 10), delta_bits=32,
                                  trace_frac=12, trace_bits=20, momentum_bits=24, v_bits=48,
                                  grad_shift=(0, 0), rate_shift=3, membrane_bits=40, seed=7)),
    "bso_float": ("float", dict(optimizer="bso", layers=(128, 40, 10), rate_shift=7, seed=3)),
    "tbso_float": ("float", dict(optimizer="tbso", layers=(128, 40, 10), rate_shift=6, seed=4)),
}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def record(name: str) -> dict:
    """Run case ``name`` and return everything it produced as named arrays."""
    mode, kw = CASES[name]
    kw = dict(kw)
    cfg = NetConfig.default_for(kw.pop("optimizer"), **kw)
    data = load_digits_events(T=cfg.T)
    core = Core(cfg, mode)
    out: dict = {}
    preds, scores, spikes, flips = [], [], [[] for _ in cfg.layers[1:-1]], []
    for k in range(SAMPLES + PREDICT):
        learn = k < SAMPLES
        r = core.run_sample(data.x_train[k], int(data.y_train[k]) if learn else None, learn)
        preds.append(r.prediction)
        scores.append(r.scores)
        for l, sp in enumerate(r.spikes):
            spikes[l].append(sp)
        f = r.flips
        flips.append(np.stack([np.full(len(f), k), f.t, f.layer, f.post, f.pre], axis=1))
        if k == SAMPLES // 2 - 1:
            core.end_epoch(cfg.schedule_every or 1)
    out["pred"] = np.array(preds, np.int64)
    sc = np.stack(scores)
    out["scores"] = sc.astype(np.int64) if mode == "int" else sc
    for l, sp in enumerate(spikes):
        out[f"spikes{l}"] = np.packbits(np.stack(sp), axis=-1)
    out["flips"] = np.concatenate(flips).astype(np.int16)     # every index < 2^14
    st = core.state_dict()
    for key, v in st.items():
        v = np.asarray(v)
        if mode == "float" and v.dtype.kind == "f":
            out[key + "_sha256"] = np.array(_digest(v))   # float64 momenta: a digest keeps it small
        else:
            out[key] = v
    out["counters"] = np.array([core.counters[c] for c in sorted(core.counters)], np.int64)
    return out


def _save() -> None:
    DATA.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}/{key}": v for name in CASES for key, v in record(name).items()}
    np.savez_compressed(DATA, **arrays)
    print(f"wrote {DATA} ({DATA.stat().st_size} bytes, {len(arrays)} arrays)")


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_run(name):
    ref = np.load(DATA)
    want = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.split("/", 1)[0] == name}
    got = record(name)
    assert sorted(got) == sorted(want)
    # the flip list first: the most telling difference
    assert got["flips"].shape == want["flips"].shape and np.array_equal(got["flips"], want["flips"])
    for key in sorted(want):
        assert np.array_equal(got[key], want[key]), f"{name}: {key} differs"
    assert len(want["flips"]) > 0


if __name__ == "__main__":
    _save()
