"""Baselines (studies/baselines.py, studies/bptt.py) and experiment helpers: fast checks."""
import numpy as np
import pytest

from golden.config import NetConfig, tiny_config
from golden.core import Core
from golden.fixed import IntArith
from studies.baselines import (HalfUpArith, LatentTrainer, ap2, binary_init, bop_config,
                               flip_stats, fold_bn, make_core)
from studies.bits import bits_config, smallest_within
from studies.bptt import BPTTTrainer
from studies.memory import measure_memory


def _events(cfg, n=3, rate=0.4, seed=0):
    return np.random.default_rng(seed).random((n, cfg.T, cfg.layers[0])) < rate


def test_bop_is_bso_without_reset():
    cfg = bop_config(tiny_config(optimizer="tbso"))
    assert cfg.optimizer == "bso" and cfg.reset_momentum is False
    assert not cfg.do_reset_momentum
    assert tiny_config().do_reset_momentum


def test_bop_keeps_momentum_after_a_flip():
    def run(cfg):
        core = Core(cfg, "int")
        core.w_sign[1][:] = 1
        core.M[1][:] = 100                      # w*M > gamma: the next visit flips
        core.reset_sample()
        core.step_once(np.ones(16, bool), 0, learn=True)
        return core
    base = tiny_config(gamma=(8, 8), rate_shift=12)
    bso, bop = run(base), run(bop_config(base))
    flipped_bso = bso.w_sign[1] < 0
    flipped_bop = bop.w_sign[1] < 0
    assert flipped_bso.any() and flipped_bop.any()
    assert np.all(bso.M[1][flipped_bso] == 0)
    assert np.all(bop.M[1][flipped_bop] != 0)


def test_half_up_arith_ignores_random_word():
    x = np.array([-3, -2, -1, 0, 1, 2, 3, 5, 6])
    for rnd in (np.zeros_like(x), np.full_like(x, 3)):
        assert np.array_equal(HalfUpArith.sround(x, 2, rnd), IntArith.shr_round(x, 2))
    core = make_core(tiny_config(), "int", stochastic_rounding=False)
    assert isinstance(core.ar, HalfUpArith)
    assert type(make_core(tiny_config(), "int").ar) is IntArith


def test_without_sr_small_updates_vanish():
    cfg = tiny_config(rate_shift=14, gamma=(100, 100))
    x = _events(cfg, 5)
    cores = {sr: make_core(cfg, "int", sr) for sr in (True, False)}
    for sr, core in cores.items():
        for k in range(len(x)):
            core.run_sample(x[k], 1, learn=True)
    assert all(np.all(m == 0) for m in cores[False].M)
    assert any(np.any(m != 0) for m in cores[True].M)


@pytest.mark.parametrize("bits", range(2, 13))
def test_bits_config_keeps_the_real_threshold(bits):
    cfg = NetConfig.default_for("bso") if hasattr(NetConfig, "default_for") else NetConfig()
    c = bits_config(cfg, bits)
    assert c.momentum_bits == bits
    mom_max = (1 << (bits - 1)) - 1
    for g0, th0, g, th in zip(cfg.grad_shift, cfg.gamma, c.grad_shift, c.gamma):
        assert 0 <= th <= mom_max
        want = th0 * 2.0 ** (g0 - g)
        if 0 < g < 24 and want <= mom_max:
            assert abs(th - want) <= 0.5


def test_latent_forward_is_the_core_network():
    cfg = tiny_config()
    x = _events(cfg)
    tr = LatentTrainer(cfg, "adam")
    core = Core(cfg, "float")
    for a, b in zip(binary_init(cfg), core.w_sign):
        assert np.array_equal(a, b)
    _, outs = tr.run_batch(x, return_outputs=True)
    for k in range(len(x)):
        assert np.allclose(outs[:, k].sum(0), core.run_sample(x[k]).scores)


def test_ste_sgd_step_equals_core_momentum_step():
    # T = 1, batch 1: SGD with lr 2^-rate_shift moves W by exactly -M of the Core's first step
    cfg = tiny_config(T=1, gamma=(100, 100))
    x = _events(cfg, 1)
    core = Core(cfg, "float")
    core.run_sample(x[0], 2, learn=True)
    tr = LatentTrainer(cfg, "sgd", lr=2.0 ** -cfg.rate_shift)
    w0 = [w.copy() for w in tr.W]
    tr.run_batch(x, np.array([2]), learn=True)
    for l in range(cfg.n_layers):
        assert np.allclose(tr.W[l] - w0[l], -core.M[l])


def test_bptt_equals_online_gradient_at_T1():
    cfg = tiny_config(T=1)
    x = _events(cfg, 2)
    y = np.array([1, 3])
    on = LatentTrainer(cfg, "sgd", lr=1e-6, batch=2)
    bp = BPTTTrainer(cfg, "sgd", lr=1e-6, batch=2)
    on.run_batch(x, y, learn=True)
    bp.run_batch(x, y, learn=True)
    for a, b in zip(on.W, bp.W):
        assert np.allclose(a, b)


def test_bptt_adds_temporal_credit_at_T4():
    cfg = tiny_config(T=4)
    x = _events(cfg, 2)
    y = np.array([1, 3])
    on = LatentTrainer(cfg, "sgd", lr=1e-6, batch=2)
    bp = BPTTTrainer(cfg, "sgd", lr=1e-6, batch=2)
    on.run_batch(x, y, learn=True)
    bp.run_batch(x, y, learn=True)
    assert not np.allclose(on.W[0], bp.W[0])


def test_training_learns_a_separable_toy_task():
    cfg = tiny_config(T=4, target=16.0, layers=(16, 64, 4))
    rng = np.random.default_rng(0)
    proto = rng.random((4, 16)) < 0.5
    y = rng.integers(0, 4, 160)
    x = np.array([[p ^ (rng.random(16) < 0.05) for _ in range(4)] for p in proto[y]])

    class D:
        x_train, y_train, x_test, y_test = x[:120], y[:120], x[120:], y[120:]
    h = LatentTrainer(cfg, "adam", lr=1e-2).fit(D, 4)
    assert h.test_accuracy[-1] > 0.8
    assert len(h.flip_flop) == 4 and len(h.corr_init) == 4


def test_hybrid_switches_to_sgd():
    cfg = tiny_config()
    x = _events(cfg, 8)

    class D:
        x_train, y_train, x_test, y_test = x, np.arange(8) % 4, x[:2], np.arange(2)
    tr = LatentTrainer(cfg, "hybrid", switch_frac=0.5)
    h = tr.fit(D, 2)
    assert tr.phase == "sgd"
    assert h.switch_lr is not None and h.switch_lr > 0


def test_kd_alpha_zero_is_plain_training():
    cfg = tiny_config()
    x = _events(cfg, 4)
    y = np.array([0, 1, 2, 3])
    teacher = LatentTrainer(cfg, "adam", full_precision=True)
    a = LatentTrainer(cfg, "adam")
    b = LatentTrainer(cfg, "adam", teacher=teacher, kd_alpha=0.0)
    c = LatentTrainer(cfg, "adam", teacher=teacher, kd_alpha=1.0)
    for tr in (a, b, c):
        tr.run_batch(x, y, learn=True)
    assert all(np.allclose(p, q) for p, q in zip(a.W, b.W))
    assert not all(np.allclose(p, q) for p, q in zip(a.W, c.W))


def test_ap2_and_flip_stats():
    assert np.array_equal(ap2([3.0, -0.3, 0.0, 1.0]), [4.0, -0.25, 0.0, 1.0])
    w0 = np.array([1, 1, -1, -1])
    ff, corr = flip_stats(w0, np.array([1, -1, -1, 1]), w0)
    assert ff == 0.5 and corr == 0.0


def test_bn_fold_exact_matches_float_bn():
    cfg = tiny_config(T=4)
    x = _events(cfg, 4)
    tr = LatentTrainer(cfg, "adam", bn=True, v_th_bn=1.0)
    # a = gamma / sqrt(var + eps) = 1/2 exactly; integer means keep b/a on the LSB grid
    tr.bn_gamma[0][:] = 0.5
    tr.bn_var[0][:] = 1.0 - 1e-5
    tr.bn_mean[0][:] = np.arange(cfg.layers[1]) % 3 - 1.0
    th, bias = fold_bn(tr, cfg, shift=False)
    th_s, bias_s = fold_bn(tr, cfg, shift=True)
    assert np.array_equal(th[0], th_s[0]) and np.array_equal(bias[0], bias_s[0])
    core = Core(cfg, "float")
    core.w_sign = tr.binary_weights()
    core.theta, core.bias = th, bias
    _, outs = tr.run_batch(x, return_outputs=True)
    for k in range(len(x)):
        # the Core's output is in the same LSB units; the BN net's hidden layer runs in units
        # of a, so compare spikes through the output scores
        assert np.allclose(outs[:, k].sum(0), core.run_sample(x[k]).scores)


def test_bn_fold_shift_is_power_of_two():
    cfg = tiny_config()
    tr = LatentTrainer(cfg, "adam", bn=True)
    tr.bn_gamma[0][:] = 0.7
    tr.bn_var[0][:] = 3.0
    th, _ = fold_bn(tr, cfg, shift=True)
    a = cfg.derived().one_spike / th[0]
    assert np.allclose(np.log2(a), np.round(np.log2(a)))


def test_memory_online_flat_bptt_grows():
    m = measure_memory(Ts=(8, 32, 64), n_in=64)
    assert m["bptt_b32"][2] > 1.5 * m["bptt_b32"][0]
    assert m["online_bso"][2] <= 1.1 * m["online_bso"][1]
    assert m["state_bits_online"][0] == m["state_bits_online"][2]


def test_smallest_within():
    r = {"widths": [2, 3, 4], "runs": {"BSO float": [0.9], "BSO SR 2": [0.5],
                                       "BSO SR 3": [0.895], "BSO SR 4": [0.9]}}
    assert smallest_within(r, "BSO", "SR") == 3
