"""SimLink on the RTL (Verilator, the tiny network): resume from a checkpoint is bit-exact on the
simulated board, a dead simulator fails at once with its own output, a stopped one is waited for.

One simulator only (the board top is the same Verilog on both; Icarus runs it in
``verif/test_system_link.py``).
"""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from golden.core import Core
from host.accelerator import Accelerator
from host.link import EmulatorLink, LinkError, SimLink
from host.tests.conftest import random_dataset
from host.tests.test_resume import CFG as RESUME_CFG
from host.tests.test_resume import check_resume

SIM = "verilator"
LANES = 4
CFG = RESUME_CFG["bso"]


def sim_link(**kw):
    return SimLink(SIM, CFG, lanes=LANES, **kw)


def test_resume_bit_exact_sim(tmp_path):
    """4 samples on one simulated board, its checkpoint, a fresh simulator process restored
    from the file and 6 more samples == the 10 samples straight (on the emulator, which equals
    the RTL: verif/test_system_link.py), every memory word, register and flip."""
    check_resume(sim_link, CFG, 4, 6, tmp_path / "ck.npz", reference=lambda: EmulatorLink())


def _wait_beat(link):
    for _ in range(200):
        beat = link.heartbeat()
        if beat and beat["pid"]:
            return beat
        time.sleep(0.05)
    raise AssertionError("no heartbeat from the bench")


def test_killed_simulator_fails_at_once():
    link = sim_link(timeout=60.0)
    with Accelerator(link) as acc:
        acc.configure(CFG)
        pid = _wait_beat(link)["pid"]
        assert pid != link._proc.pid                      # the simulator, not the runner
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(LinkError) as ei:
            acc.status()
        dt = time.monotonic() - t0
    msg = str(ei.value)
    assert "simulation died" in msg and "exit code" in msg, msg
    assert dt < 15, f"took {dt:.1f} s to notice (the stall limit is 60 s)"


def test_stopped_simulator_is_waited_for():
    """The simulator is stopped (SIGSTOP) for 3x the link's timeout in the middle of a learning
    sample, then continued: the sample completes without a retry, equal to golden."""
    data = random_dataset(CFG, n_train=2)
    core = Core(CFG, "int")
    link = sim_link(timeout=2.0)
    with Accelerator(link) as acc:
        acc.configure(CFG)
        acc.set_outputs(spikes=False, flips=True)
        pid = _wait_beat(link)["pid"]
        r0 = acc.run_sample(data.x_train[0], int(data.y_train[0]), learn=True)
        core.run_sample(data.x_train[0], int(data.y_train[0]), learn=True)
        os.kill(pid, signal.SIGSTOP)
        cont = threading.Timer(6.0, os.kill, (pid, signal.SIGCONT))
        cont.start()
        t0 = time.monotonic()
        try:
            r = acc.run_sample(data.x_train[1], int(data.y_train[1]), learn=True)
        finally:
            cont.join()
        dt = time.monotonic() - t0
        want = core.run_sample(data.x_train[1], int(data.y_train[1]), learn=True)
        assert dt >= 5.5, dt                             # it really waited for the stop
        assert r.prediction == want.prediction and np.array_equal(r.scores, want.scores)
        assert r.flips.as_tuples() == want.flips.as_tuples()
        assert acc.stats["retries"] == 0 and acc.stats["timeouts"] == 0, acc.stats
        got = acc.state_dict()
        for k, v in core.state_dict().items():
            assert np.array_equal(got[k], v), k
    assert r0.prediction is not None
