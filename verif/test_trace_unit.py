"""TraceUnit bench: spike filter, trace pass, emit stream and clear against golden, exact.

The DUT is a bare TraceUnit. Every step sends a random spike vector as events in random order with
random idle cycles on ``i_spike``, duplicates (some back to back) and, where the index port is wider
than ``n``, out-of-range indices; ``o_spike`` sees random back-pressure. The scoreboard:

* ``o_spike``: the first occurrence of every in-range index, in arrival order; ``dup`` and ``bad``
  pulses: the repeats and the out-of-range indices;
* ``update``: every trace (read back on ``x_addr``/``x_a``, padding lanes 0) equal to
  :func:`golden.trace_unit.trace_step` in :class:`golden.fixed.IntArith`, ``s_a`` equal to the
  ``S_a = sum(a^2)`` of golden's traces (as :func:`golden.flip_unit.tbso_update` forms it), and
  the ``sat`` counts summed over all cycles equal to golden's ``trace`` counter;
* ``emit`` (random back-pressure on ``o_act``): the ``(pre, a)`` list of golden's non-zero traces
  (``np.flatnonzero(a)``, the columns :func:`golden.flip_unit.flip_step` visits) in ascending
  ``pre``, plus input ``n - 1`` if its trace is zero, ``last`` on the final item only.

The next step's spikes are sometimes queued while a pass runs (they must wait for it), some steps
skip ``emit``, and in the middle of the run a partial step is abandoned by a ``clear`` pass (a new
sample: traces and spike bits zero, so the abandoned spikes are no duplicates), followed by an
``emit`` of the all-zero traces. Narrow traces saturate within three consecutive spikes.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from golden.config import NetConfig
from golden.fixed import IntArith
from golden.trace_unit import trace_step
from hdl_gen.common import uidx, words
from hdl_gen.core import INDEX_BITS
from hdl_gen.trace_unit import TraceUnit
from verif.rtl_util import SumMonitor, pulse, unpack, unpack_lanes, wait_low
from verif.simulate import run_bench
from verif.streams import StreamSink, StreamSource, reset_dut

STEPS = int(os.environ.get("BSNN_TRACE_STEPS", "32"))

# (config, layer, lanes, in_bits):
# * in0_p8: layer 0 as the core builds it (16-bit event index, so most bad indices are far out of
#   range), n = 40 = 5 full words; lambda_a = 0.75, trace 4 bits: saturates on the 3rd spike;
# * hid1_p16: a hidden layer, n = 37 in 3 words of 16 (11 padding lanes), the default 6-bit index
#   port (bad indices 37..63); lambda_a = 0.875, trace 5 bits;
# * in0_c1_p8: one word (C = 1), n = 6 < P; lambda_a = 0.5, trace 3 bits (saturates on the 4th).
CASES = {
    "in0_p8": (dict(layers=(40, 24, 10), T=4, theta=(2.0,), grad_shift=(2, 3), gamma=(8, 8),
                    trace_shift=2, trace_frac=3, trace_bits=4), 0, 8, INDEX_BITS),
    "hid1_p16": (dict(layers=(20, 37, 10), T=4, theta=(2.0,), grad_shift=(2, 3), gamma=(8, 8),
                      trace_shift=3, trace_frac=4, trace_bits=5), 1, 16, None),
    "in0_c1_p8": (dict(layers=(6, 12, 4), T=4, theta=(2.0,), grad_shift=(2, 3), gamma=(8, 8),
                       trace_shift=1, trace_frac=2, trace_bits=3), 0, 8, INDEX_BITS),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_unit(sim, case):
    kw, layer, lanes, in_bits = CASES[case]
    cfg = NetConfig(**kw)
    t0 = time.monotonic()
    run_bench(sim, TraceUnit(cfg, layer, lanes, in_bits=in_bits), f"tu_{case}",
              "verif.test_trace_unit", testcase="trace_unit_vs_golden", name=case,
              env={"BSNN_CFG": cfg.to_dict(), "BSNN_LAYER": layer, "BSNN_LANES": lanes,
                   "BSNN_IN_BITS": in_bits if in_bits is not None else "", "BSNN_STEPS": STEPS})
    print(f"trace_unit {case} on {sim}: {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------------------------
class HandshakeLog:
    """Record the cycle number of every transfer (``valid & ready`` at a rising edge)."""

    def __init__(self, dut, name: str):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.cycles: list[int] = []
        cocotb.start_soon(self._run())

    async def _run(self):
        cyc = 0
        while True:
            await RisingEdge(self.clk)
            cyc += 1
            if int(self.valid.value) and int(self.ready.value):
                self.cycles.append(cyc)


def filter_expect(seq, n):
    """What the spike filter must do with ``seq`` (one step, fresh spike bits).

    Returns (passed indices in order, number of duplicates, number of out-of-range indices).
    This is only the bookkeeping of the stimulus; the trace values come from golden.
    """
    seen, passed, dup, bad = set(), [], 0, 0
    for i in seq:
        if i >= n:
            bad += 1
        elif i in seen:
            dup += 1
        else:
            seen.add(i)
            passed.append(i)
    return passed, dup, bad


@cocotb.test()
async def trace_unit_vs_golden(dut):
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    layer, P = int(os.environ["BSNN_LAYER"]), int(os.environ["BSNN_LANES"])
    in_bits = int(os.environ["BSNN_IN_BITS"]) if os.environ["BSNN_IN_BITS"] else None
    steps = int(os.environ["BSNN_STEPS"])
    rng = random.Random(int(os.environ["BSNN_SEED"]))
    n = cfg.layers[layer]
    C = words(n, P)
    tb = cfg.trace_bits
    in_w = in_bits if in_bits is not None else uidx(n).width
    act_layout = TraceUnit(cfg, layer, P, in_bits=in_bits).act_layout
    bad_hi = (1 << in_w) - 1
    assert bad_hi >= n, "every case must be able to send out-of-range indices"

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for s in ("update", "emit", "clear", "x_addr"):
        getattr(dut, s).value = 0
    src = StreamSource(dut, "i_spike", idle=0.3, rng=rng)
    spk = StreamSink(dut, "o_spike", backpressure=0.4, rng=rng)
    act = StreamSink(dut, "o_act", backpressure=0.4, rng=rng)
    await reset_dut(dut)
    in_log, act_log = HandshakeLog(dut, "i_spike"), HandshakeLog(dut, "o_act")
    sat, dups, bads = SumMonitor(dut.clk, dut.sat), SumMonitor(dut.clk, dut.dup), \
        SumMonitor(dut.clk, dut.bad)

    ar = IntArith()
    a = np.zeros(n, np.int64)
    hot = np.array([rng.random() < 0.3 for _ in range(n)])     # fire in most steps: saturation
    exp = {"dup": 0, "bad": 0}
    stats = {"spikes": 0, "emitted": 0, "emits": 0}

    def make_step():
        """Random spike vector and its event sequence (shuffled, with dups and bad indices)."""
        density = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
        s = np.array([rng.random() < density or (hot[i] and rng.random() < 0.9)
                      for i in range(n)])
        seq = [int(i) for i in np.flatnonzero(s)]
        rng.shuffle(seq)
        for _ in range(rng.choice([0, 1, 3, n // 2])):      # duplicates
            if not seq:
                break
            k = rng.randrange(len(seq))
            pos = k + 1 if rng.random() < 0.4 else rng.randrange(k + 1, len(seq) + 1)
            seq.insert(pos, seq[k])                          # back to back, or later
        for _ in range(rng.choice([0, 1, 2])):              # out of range
            bad = rng.choice([n, bad_hi, rng.randint(n, bad_hi)])
            seq.insert(rng.randrange(len(seq) + 1), bad)
        return s, seq

    def queue(seq):
        passed, dup, bad = filter_expect(seq, n)
        exp["dup"] += dup
        exp["bad"] += bad
        for i in seq:
            src.send_nowait(i)
        return len(spk.items), passed

    async def drain():
        await src.wait_empty()
        await wait_low(dut.clk, dut.busy)

    def check_filter(tag, mark, passed):
        got = spk.items[mark:]
        assert got == passed, f"{tag}: o_spike {got} != {passed}"
        assert dups.total == exp["dup"], f"{tag}: dup pulses {dups.total} != {exp['dup']}"
        assert bads.total == exp["bad"], f"{tag}: bad pulses {bads.total} != {exp['bad']}"
        stats["spikes"] += len(got)

    async def read_traces():
        vals = []
        for c in range(C):
            dut.x_addr.value = c
            await RisingEdge(dut.clk)
            await ReadOnly()
            vals += unpack_lanes(int(dut.x_a.value), P, tb, signed=False)
            await RisingEdge(dut.clk)
        assert all(v == 0 for v in vals[n:]), f"padding lanes not 0: {vals[n:]}"
        return vals[:n]

    def expected_act():
        pre = [int(i) for i in np.flatnonzero(a)]
        if not pre or pre[-1] != n - 1:
            pre.append(n - 1)                                # always ends on input n - 1
        return [(i, int(a[i]), int(i == n - 1)) for i in pre]

    def check_emit(tag, mark):
        got = [(f["pre"], f["a"], f["last"]) for f in (unpack(act_layout, v)
                                                         for v in act.items[mark:])]
        want = expected_act()
        assert got == want, f"{tag}: o_act {got} != {want}"
        stats["emitted"] += len(got)
        stats["emits"] += 1

    async def wait_last(mark):
        for _ in range(100_000):
            await RisingEdge(dut.clk)
            if len(act.items) > mark and unpack(act_layout, act.items[-1])["last"]:
                return
        raise AssertionError("o_act never sent last")

    clear_at = steps // 2
    pending = None                       # (s, seq, mark, passed) already queued during a pass
    for step in range(steps):
        if step == clear_at:             # abandon a partial step, then a new sample
            assert pending is None
            _, seq = make_step()
            mark, passed = queue(seq)
            await drain()
            check_filter(f"step {step} (before clear)", mark, passed)
            await pulse(dut.clk, dut.clear)
            await wait_low(dut.clk, dut.busy)
            a[:] = 0
            assert await read_traces() == a.tolist(), f"step {step}: traces after clear"
            mark = len(act.items)
            await pulse(dut.clk, dut.emit)
            await wait_low(dut.clk, dut.busy)
            check_emit(f"step {step} (after clear)", mark)

        if pending is None:
            s, seq = make_step()
            mark, passed = queue(seq)
        else:
            s, seq, mark, passed = pending
            pending = None
        await drain()
        check_filter(f"step {step}", mark, passed)

        # the next step's spikes may be queued while this step's passes run
        overlap = rng.choice(["none", "update", "emit"]) if step + 1 not in (clear_at, steps) \
            else "none"
        do_emit = overlap == "emit" or rng.random() < 0.8

        await pulse(dut.clk, dut.update)
        if overlap == "update":
            s2, seq2 = make_step()
            pending = (s2, seq2, *queue(seq2))
        await drain()
        a = trace_step(ar, cfg, a, s.astype(np.int64))
        assert await read_traces() == a.tolist(), f"step {step}: traces differ"
        s_a = int(np.sum(a.astype(object) ** 2))
        assert int(dut.s_a.value) == s_a, f"step {step}: s_a {int(dut.s_a.value)} != {s_a}"
        assert sat.total == ar.counters["trace"], \
            f"step {step}: trace saturations {sat.total} != {ar.counters['trace']}"

        if do_emit:
            mark = len(act.items)
            n_act = len(act_log.cycles)
            await pulse(dut.clk, dut.emit)
            n_in = len(in_log.cycles)
            if overlap == "emit":
                s2, seq2 = make_step()
                pending = (s2, seq2, *queue(seq2))
                await wait_last(mark)
            await drain()
            check_emit(f"step {step}", mark)
            if overlap == "emit" and len(in_log.cycles) > n_in:
                # no spike is taken before the emit pass has sent its last item
                assert in_log.cycles[n_in] > act_log.cycles[-1], \
                    f"step {step}: spike taken during the emit pass"
                assert len(act_log.cycles) - n_act == len(act.items) - mark

    dut._log.info("%d steps: %d spikes passed, %d dup, %d bad, %d trace saturations, "
                  "%d emit passes with %d items", steps, stats["spikes"], dups.total, bads.total,
                  sat.total, stats["emits"], stats["emitted"])
    assert sat.total > 0 and dups.total > 0 and bads.total > 0
