"""Hypothesis properties of the golden model: invariants of the state and of the two modes."""
import numpy as np
from hypothesis import given, settings, strategies as st

from golden.config import NetConfig
from golden.core import Core


def random_run(core, seed, samples=3, learn=True):
    rng = np.random.default_rng(seed)
    cfg = core.cfg
    out = []
    for _ in range(samples):
        ev = rng.random((cfg.T, cfg.layers[0])) < rng.uniform(0.05, 0.9)
        out.append(core.run_sample(ev, int(rng.integers(cfg.layers[-1])), learn=learn))
    return out


small = st.fixed_dictionaries({
    "n_in": st.integers(1, 24), "n_hid": st.integers(1, 20), "n_out": st.integers(1, 6),
    "T": st.integers(1, 6), "momentum_bits": st.integers(2, 6), "trace_bits": st.integers(4, 6),
    "membrane_bits": st.integers(8, 10), "delta_bits": st.integers(3, 8),
    "optimizer": st.sampled_from(["bso", "tbso"]), "reset": st.sampled_from(["soft", "hard"]),
    "rate_shift": st.integers(0, 6), "seed": st.integers(0, 2**32 - 1),
})


def make(p, **kw):
    mb = p["momentum_bits"]
    return NetConfig(layers=(p["n_in"], p["n_hid"], p["n_out"]), T=p["T"], theta=(2.0,),
                     membrane_frac=3, membrane_bits=p["membrane_bits"], target=4.0,
                     trace_frac=3, trace_bits=p["trace_bits"], delta_bits=p["delta_bits"],
                     momentum_bits=mb, grad_shift=(0, 0), gamma=(1, (1 << (mb - 1)) - 1),
                     rate_shift=p["rate_shift"], optimizer=p["optimizer"], reset=p["reset"],
                     v_bits=12, seed=p["seed"], **kw)


@settings(max_examples=60, deadline=None)
@given(small, st.integers(0, 1000))
def test_state_stays_within_declared_widths(p, seed):
    core = Core(make(p), "int")
    d = core.cfg.derived()
    results = random_run(core, seed)
    for l in range(core.cfg.n_layers):
        assert set(np.unique(core.w_sign[l])) <= {-1, 1}
        assert np.abs(core.M[l]).max() <= d.mom_max
        assert core.V[l].min() >= 0 and core.V[l].max() <= d.v_max
        assert np.abs(core.v[l]).max() <= d.mem_max
        assert core.a[l].min() >= 0 and core.a[l].max() <= d.trace_max
        assert core.M[l].dtype == np.int64
    for r in results:
        assert 0 <= r.prediction < core.cfg.layers[-1]


@settings(max_examples=40, deadline=None)
@given(small, st.integers(0, 1000))
def test_wide_int_mode_reproduces_float_spikes(p, seed):
    # with enough fraction bits every leak step is exact, so both modes spike identically
    cfg = make(p).replace(membrane_frac=16, membrane_bits=48, trace_frac=12, trace_bits=20,
                          target=4.0)
    ri = random_run(Core(cfg, "int"), seed, learn=False)
    rf = random_run(Core(cfg, "float"), seed, learn=False)
    for a, b in zip(ri, rf):
        for sa, sb in zip(a.spikes, b.spikes):
            assert np.array_equal(sa, sb)
        assert np.array_equal(a.scores, b.scores)
        assert a.prediction == b.prediction


@settings(max_examples=20, deadline=None)
@given(small, st.integers(0, 1000))
def test_checkpoint_round_trip_is_bit_exact(p, seed):
    cfg = make(p)
    a = Core(cfg, "int")
    random_run(a, seed)
    b = Core(cfg, "int")
    b.load_state_dict(a.state_dict())
    ra, rb = random_run(a, seed + 1), random_run(b, seed + 1)
    for x, y in zip(ra, rb):
        assert x.flips.as_tuples() == y.flips.as_tuples()
    for l in range(cfg.n_layers):
        assert np.array_equal(a.w_sign[l], b.w_sign[l]) and np.array_equal(a.M[l], b.M[l])
