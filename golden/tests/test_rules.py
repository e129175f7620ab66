"""Hand-computed cases for each rule of the integer contract (docs/fixed_point.md)."""
import numpy as np
import pytest

from golden.config import NetConfig
from golden.core import Core
from golden.fixed import IntArith, isqrt, srand, step_key, synapse_address
from golden.flip_unit import flip_step, tbso_update


def one_neuron(theta, **kw):
    cfg = NetConfig(layers=(1, 1, 1), T=6, theta=(theta,), grad_shift=(0, 0), gamma=(8, 8), **kw)
    core = Core(cfg, "int")
    core.w_sign[0][:] = 1
    return core


def fire_times(core, steps=5):
    core.reset_sample()
    return [bool(core.step_once(np.ones(1, bool))[0][0][0]) for _ in range(steps)]


def test_neuron_fires_at_step_3_not_before():
    # one_spike = 16 LSB, leak 1/2: u = 16, 16-8+16 = 24, 24-12+16 = 28 -> theta 27 LSB
    assert fire_times(one_neuron(27 / 16))[:3] == [False, False, True]


def test_threshold_tie_fires():
    assert fire_times(one_neuron(28 / 16))[:3] == [False, False, True]
    assert fire_times(one_neuron(29 / 16))[:3] == [False, False, False]


def test_soft_and_hard_reset():
    soft = one_neuron(27 / 16)
    soft.reset_sample()
    for _ in range(3):
        soft.step_once(np.ones(1, bool))
    assert soft.v[0][0] == 28 - 27
    hard = one_neuron(27 / 16, reset="hard")
    hard.reset_sample()
    for _ in range(3):
        hard.step_once(np.ones(1, bool))
    assert hard.v[0][0] == 0


def test_leak_is_floor_shift_for_negative_membrane():
    core = one_neuron(4.0)
    core.w_sign[0][:] = -1
    core.reset_sample()
    core.step_once(np.ones(1, bool))
    assert core.v[0][0] == -16
    core.step_once(np.zeros(1, bool))
    assert core.v[0][0] == -16 - (-16 >> 1) == -8
    core.step_once(np.ones(1, bool))
    assert core.v[0][0] == -8 + 4 - 16


def _single_synapse(gamma, optimizer="bso", rate_shift=2):
    cfg = NetConfig(layers=(1, 1, 1), T=4, theta=(1.0,), grad_shift=(0, 0),
                    gamma=(gamma, gamma), rate_shift=rate_shift, optimizer=optimizer)
    return cfg, np.ones((1, 1), np.int8), np.zeros((1, 1), np.int64)


def _bso_steps(gamma, steps=3):
    cfg, w, M = _single_synapse(gamma)
    out = []
    for s in range(steps):
        # G = 8 * 8 = 64; G - M is a multiple of 4 at steps 1..3, so rounding cannot matter
        post, pre = flip_step(IntArith(), cfg, 0, w, M, np.array([8]), np.array([8]),
                              step_key(1, s), cfg.rate_shift, gamma)
        out.append((int(M[0, 0]), int(w[0, 0]), post.size))
    return out


def test_bso_flips_exactly_when_wM_crosses_gamma_and_resets():
    # M: 0 -> 16 -> 28 -> 37; gamma 30 is crossed at step 3
    assert _bso_steps(30) == [(16, 1, 0), (28, 1, 0), (0, -1, 1)]


def test_bso_tie_does_not_flip():
    # at step 2, w*M == 28 == gamma: no flip; step 3 crosses
    assert _bso_steps(28) == [(16, 1, 0), (28, 1, 0), (0, -1, 1)]
    assert _bso_steps(37) == [(16, 1, 0), (28, 1, 0), (37, 1, 0)]


def test_negative_weight_flips_on_negative_momentum():
    cfg, w, M = _single_synapse(30)
    w[:] = -1
    for s in range(3):
        post, _ = flip_step(IntArith(), cfg, 0, w, M, np.array([-8]), np.array([8]),
                            step_key(1, s), cfg.rate_shift, 30)
    assert (int(w[0, 0]), int(M[0, 0]), post.size) == (1, 0, 1)


def test_tbso_threshold_from_known_v():
    # n = 1, grad_shift 0, v_frac 8: q = S_d * S_a * 2^8 = 9 * 64 * 256; rate 2^0 -> V = q
    cfg = NetConfig(layers=(1, 1, 1), T=4, theta=(1.0,), grad_shift=(0, 0), gamma=(8, 8),
                    optimizer="tbso", tbso_gamma=0.5, v_rate_shift=0, v_frac=8)
    V = np.zeros(4, np.int64)
    thr = tbso_update(IntArith(), cfg, 0, V, 2, np.array([3]), np.array([8]), 128)
    assert V[2] == 147456 and isqrt(147456) == 384
    assert thr == (128 * 384) >> (8 + 4) == 12      # = 0.5 * |G| with G = 24
    assert V[0] == V[1] == V[3] == 0


def test_tbso_does_not_reset_momentum_by_default():
    cfg = NetConfig(layers=(1, 1, 1), T=4, theta=(1.0,), grad_shift=(0, 0), gamma=(8, 8),
                    optimizer="tbso", rate_shift=2)
    assert not cfg.do_reset_momentum
    w, M = np.ones((1, 1), np.int8), np.zeros((1, 1), np.int64)
    flip_step(IntArith(), cfg, 0, w, M, np.array([8]), np.array([8]), step_key(1, 0), 2, 10)
    assert int(w[0, 0]) == -1 and int(M[0, 0]) == 16
    assert cfg.replace(reset_momentum=True).do_reset_momentum


def test_zero_gradient_synapses_are_untouched():
    cfg, w, M = _single_synapse(30)
    M[:] = 5
    flip_step(IntArith(), cfg, 0, w, M, np.array([0]), np.array([8]), 0, 2, 30)
    flip_step(IntArith(), cfg, 0, w, M, np.array([8]), np.array([0]), 0, 2, 30)
    assert int(M[0, 0]) == 5 and int(w[0, 0]) == 1


def test_stochastic_rounding_is_unbiased():
    # EMA step of x / 2^k with x = 3: expectation 3/16 per synapse
    addr = synapse_address(0, np.arange(64)[:, None], np.arange(64)[None, :]).ravel()
    vals = [((3 + srand(addr, step_key(7, s), 4)) >> 4).mean() for s in range(50)]
    assert abs(np.mean(vals) - 3 / 16) < 0.01


def test_srand_known_value():
    # xorshift32 twice on addr ^ key, written out by hand for addr 1, key 0
    x = 1
    for _ in range(2):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    assert int(srand(np.array([1]), 0, 32)[0]) == x
    assert int(srand(np.array([1]), 0, 5)[0]) == x & 31
    assert step_key(1, 2) == (1 + 2 * 0x9E3779B9) & 0xFFFFFFFF
    assert int(synapse_address(2, 3, 5)) == (2 << 28) | (3 << 14) | 5


def test_momentum_saturates_symmetric_and_counts():
    cfg = NetConfig(layers=(1, 1, 1), T=4, theta=(1.0,), grad_shift=(0, 0), gamma=(1, 1),
                    momentum_bits=3, rate_shift=0)
    ar = IntArith()
    w, M = -np.ones((1, 1), np.int8), np.zeros((1, 1), np.int64)
    flip_step(ar, cfg, 0, w, M, np.array([10]), np.array([10]), 0, 0, 1)
    assert int(M[0, 0]) == 3 and ar.counters["momentum"] == 1      # 100 clipped to +3
    flip_step(ar, cfg, 0, w, M, np.array([-10]), np.array([10]), 0, 0, 1)
    assert int(M[0, 0]) == 0 and int(w[0, 0]) == 1 and ar.counters["momentum"] == 2


def test_membrane_saturation_is_counted():
    core = Core(NetConfig(layers=(40, 1, 1), T=4, theta=(15.0,), membrane_bits=9,
                          grad_shift=(0, 0), gamma=(1, 1)), "int")
    core.w_sign[0][:] = 1
    core.reset_sample()
    core.step_once(np.ones(40, bool))                                # 40 * 16 > 255
    assert core.v[0][0] <= 255 and core.counters["membrane"] >= 1


def test_schedule_saturates_at_register_limits():
    from golden.config import SCHEDULE_LIMITS
    cfg = NetConfig(layers=(1, 1, 1), T=4, theta=(1.0,), grad_shift=(0, 0), gamma=(100, 100),
                    momentum_bits=8, rate_shift=24, schedule_every=1, schedule_rate_step=30,
                    schedule_gamma_num=1000, schedule_gamma_den=1, tbso_gamma=100.0,
                    tbso_gamma_frac=8)
    core = Core(cfg, "int")
    core.end_epoch(1)
    core.end_epoch(2)
    assert core.rate_shift == SCHEDULE_LIMITS["rate_shift"] == 63
    assert core.gamma == [SCHEDULE_LIMITS["gamma"]] * 2
    assert core.tbso_gamma_q == SCHEDULE_LIMITS["tbso_gamma_q"]
