"""Accelerator over EmulatorLink: identical to golden, memories, checkpoints, faults, schedule."""
from __future__ import annotations

import time

import numpy as np
import pytest

import golden.train
from golden.core import Core
from host import protocol as P
from host.accelerator import Accelerator, DeviceError
from host.link import EmulatorLink, LinkError, SocketLink
from host.link.emulator import EmulatorServer
from host.link.faults import FaultyLink
from host.protocol import ErrorCode
from host.train import train as host_train

from .conftest import random_dataset


def assert_same_result(r1, r2, spikes=True):
    assert r1.prediction == r2.prediction
    assert np.array_equal(r1.scores, r2.scores)
    assert r1.flips.as_tuples() == r2.flips.as_tuples()
    assert np.array_equal(r1.flips_per_step, r2.flips_per_step)
    if spikes:
        assert len(r1.spikes) == len(r2.spikes)
        for a, b in zip(r1.spikes, r2.spikes):
            assert np.array_equal(a, b)


def assert_same_state(d1, d2):
    assert d1.keys() <= d2.keys()
    for k in d1:
        assert np.array_equal(np.asarray(d1[k]), np.asarray(d2[k])), k


def test_samples_identical_to_golden(tiny):
    data = random_dataset(tiny, n_train=20)
    core = Core(tiny, "int")
    acc = Accelerator(EmulatorLink())
    acc.configure(tiny)
    assert_same_state(core.state_dict(), acc.state_dict())
    flips = 0
    for k in range(len(data.x_train)):
        learn = k % 5 != 4
        y = int(data.y_train[k])
        r1 = core.run_sample(data.x_train[k], y, learn=learn)
        r2 = acc.run_sample(data.x_train[k], y, learn=learn)
        assert_same_result(r1, r2)
        flips += len(r2.flips)
    assert flips > 0
    assert_same_state(core.state_dict(), acc.state_dict())
    assert acc.counters == core.counters
    assert acc.predict(data.x_test[0]) == core.predict(data.x_test[0])


def test_memories_round_trip(tiny):
    rng = np.random.default_rng(1)
    acc = Accelerator(EmulatorLink())
    acc.configure(tiny)
    d = tiny.derived()
    L = tiny.layers
    w = [rng.choice(np.array([-1, 1], np.int8), (L[l + 1], L[l])) for l in range(tiny.n_layers)]
    M = [rng.integers(-d.mom_max, d.mom_max + 1, (L[l + 1], L[l])) for l in range(tiny.n_layers)]
    V = [rng.integers(0, d.v_max + 1, tiny.T) for _ in range(tiny.n_layers)]
    th = [rng.integers(1, d.mem_max + 1, L[l + 1]) for l in range(tiny.n_layers - 1)]
    b = [rng.integers(-d.mem_max, d.mem_max + 1, L[l + 1]) for l in range(tiny.n_layers)]
    regs = {"step": 2**32 - 5, "rate_shift": 7, "tbso_gamma_q": 300, "gamma": [5, 9]}
    acc.load_weights(w)
    acc.write_momentum(M)
    acc.write_v(V)
    acc.write_theta(th)
    acc.write_bias(b)
    acc.write_regs(regs)
    core = acc.link.device.core              # the device's own memories
    for l in range(tiny.n_layers):
        assert np.array_equal(core.w_sign[l], w[l]) and np.array_equal(core.M[l], M[l])
    for got, want in [(acc.read_weights(), w), (acc.read_momentum(), M), (acc.read_v(), V),
                      (acc.read_theta(), th), (acc.read_bias(), b)]:
        assert all(np.array_equal(g, x) for g, x in zip(got, want))
    assert acc.read_regs() == regs
    with pytest.raises(ValueError):
        acc.load_weights([x * 0 for x in w])


def test_large_memories_are_chunked():
    from golden.config import NetConfig

    cfg = NetConfig()
    acc = Accelerator(EmulatorLink())
    acc.configure(cfg)
    rng = np.random.default_rng(2)
    M = [rng.integers(-127, 128, (cfg.layers[l + 1], cfg.layers[l]))
         for l in range(cfg.n_layers)]
    acc.write_momentum(M)                    # 32768 words: 33 frames
    assert all(np.array_equal(a, b) for a, b in zip(acc.read_momentum(), M))
    assert all(np.array_equal(a, b) for a, b in zip(acc.read_weights(), Core(cfg).w_sign))


def test_device_error_is_raised_and_changes_nothing(tiny):
    acc = Accelerator(EmulatorLink())
    acc.configure(tiny)
    before = acc.link.device.snapshot()
    with pytest.raises(DeviceError) as e:
        acc.set_label(tiny.layers[-1])
    assert e.value.code == ErrorCode.ADDRESS and "LABEL" in str(e.value)
    with pytest.raises(DeviceError) as e:
        acc.run(tiny.T + 1)
    assert e.value.code == ErrorCode.RANGE
    assert acc.link.device.snapshot().keys() == before.keys()
    assert acc.stats["retries"] == 0          # command errors are not retried


def test_checkpoint_restore_bit_exact(tiny, tmp_path):
    data = random_dataset(tiny, n_train=12)
    acc = Accelerator(EmulatorLink())
    acc.configure(tiny)
    for k in range(6):
        acc.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
    path = acc.checkpoint(tmp_path / "ck.npz")
    saved = acc.state_dict()
    # a fresh device restored from the file holds exactly the same state ...
    acc2 = Accelerator(EmulatorLink())
    assert acc2.restore(path) == tiny
    assert_same_state(saved, acc2.state_dict())
    # ... the golden model loads the file too ...
    core = Core(tiny, "int")
    core.load_state_dict(np.load(path))
    assert_same_state(saved, core.state_dict())
    # ... and all three continue identically
    for k in range(6, 12):
        rs = [m.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
              for m in (acc, acc2, core)]
        assert_same_result(rs[0], rs[1])
        assert_same_result(rs[0], rs[2])
    assert_same_state(core.state_dict(), acc.state_dict())
    assert_same_state(core.state_dict(), acc2.state_dict())


def _clean_and_faulty(cfg, seed, **faults):
    data = random_dataset(cfg, n_train=16, seed=seed)
    clean = Accelerator(EmulatorLink())
    clean.configure(cfg)
    link = FaultyLink(EmulatorLink(), seed=seed, **faults)
    link.enabled = False
    faulty = Accelerator(link, retries=20)
    faulty.configure(cfg)
    link.enabled = True
    for k in range(len(data.x_train)):
        y = int(data.y_train[k])
        assert_same_result(clean.run_sample(data.x_train[k], y, learn=True),
                           faulty.run_sample(data.x_train[k], y, learn=True))
    link.enabled = False
    assert_same_state(clean.state_dict(), faulty.state_dict())
    return link, faulty


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fault_injection_recovers_to_the_clean_result(tiny, seed):
    link, acc = _clean_and_faulty(tiny, seed, tx_flip=2e-3, tx_truncate=0.03, rx_flip=2e-3,
                                  rx_truncate=0.03)
    n_faults = sum(link.injected.values())
    assert n_faults >= 5, link.injected
    assert acc.stats["retries"] >= 1
    st = link.inner.device.stats
    assert st["crc_errors"] + st["length_errors"] > 0      # the device saw and reported some


def test_heavy_faults_give_up_with_a_link_error(tiny):
    link = FaultyLink(EmulatorLink(), seed=0, tx_flip=0.5)
    link.enabled = False
    acc = Accelerator(link, retries=2, sync_attempts=2)
    acc.configure(tiny)
    link.enabled = True
    with pytest.raises((LinkError, TimeoutError)):
        acc.status()


def test_schedule_and_training_loop_identical_to_golden():
    from golden.config import tiny_config

    cfg = tiny_config(gamma=(3, 3), rate_shift=4, schedule_every=1, schedule_gamma_num=3,
                      schedule_gamma_den=2, schedule_rate_step=1)
    data = random_dataset(cfg, n_train=10, n_test=6)
    core = Core(cfg, "int")
    h1 = golden.train.train(core, data, epochs=3, samples=7, shuffle_seed=5)
    acc = Accelerator(EmulatorLink())
    acc.configure(cfg)
    h2 = host_train(acc, data, epochs=3, samples=7, shuffle_seed=5)
    for f in ("test_accuracy", "train_accuracy", "flips"):
        assert getattr(h1, f) == getattr(h2, f)
    assert all(np.array_equal(a, b) for a, b in zip(h1.flips_per_step, h2.flips_per_step))
    assert acc.read_regs()["gamma"] == core.gamma != list(cfg.gamma)
    assert_same_state(core.state_dict(), acc.state_dict())


def test_socket_link_to_an_emulator_server(tiny):
    data = random_dataset(tiny, n_train=4)
    core = Core(tiny, "int")
    with EmulatorServer(idle_timeout=0.02) as srv, \
            Accelerator(SocketLink("127.0.0.1", srv.port, timeout=0.5)) as acc:
        acc.configure(tiny)
        for k in range(4):
            y = int(data.y_train[k])
            assert_same_result(core.run_sample(data.x_train[k], y, learn=True),
                               acc.run_sample(data.x_train[k], y, learn=True))
        # a truncated frame: the server's idle timeout answers TRUNCATED, the host resends
        acc.link.send(P.encode_frame(P.Cmd.STATUS, 77)[:-2])
        time.sleep(0.1)                     # the line goes idle inside the frame
        assert acc.status().configured
        assert srv.device.stats["length_errors"] == 1
        assert_same_state(core.state_dict(), acc.state_dict())
