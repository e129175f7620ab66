"""NeuronArray bench: XNOR-accumulate + LIF of one layer against golden.neuron_array, exact.

The DUT is the NeuronArray with a weight memory initialised from a seeded +-1 matrix. Every
time step sends a random spike vector as events in random order with random idle cycles, runs the
LIF pass under random back-pressure on ``o_spike``, and compares the spike list, the pre-reset
membrane ``u``, the membrane ``v``, the output scores and the saturation count with golden.
Host writes of theta and bias (random, both signs) exercise the reset and saturation paths; a
clear pass in the middle starts a new sample.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from golden.config import NetConfig
from golden.fixed import IntArith
from golden.neuron_array import accumulate, lif_step
from hdl_gen.banked_memory import BankedMemory
from hdl_gen.common import weight_words
from hdl_gen.neuron_array import NeuronArray
from verif.rtl_util import SumMonitor, forward_ports, pulse, unpack_lanes, wait_low
from verif.simulate import run_bench
from verif.streams import StreamSink, StreamSource, reset_dut

# (config, layer, lanes): a spiking layer with padding lanes and saturation, and an output layer
# with C = 1 (back-to-back events read-modify-write the same accumulator word)
CASES = {
    "hidden_p8": (dict(layers=(40, 37, 10), T=8, membrane_bits=9, membrane_frac=3,
                       theta=(3.0,), grad_shift=(2, 3), gamma=(8, 8)), 0, 8),
    "output_p16": (dict(layers=(24, 48, 10), T=8, membrane_bits=10, membrane_frac=3,
                        theta=(3.0,), grad_shift=(2, 3), gamma=(8, 8), reset="hard"), 1, 16),
}


def bench_weights(cfg: NetConfig, layer: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (cfg.layers[layer + 1], cfg.layers[layer])
    return (rng.integers(0, 2, shape) * 2 - 1).astype(np.int8)


class NABench(wiring.Component):
    """NeuronArray plus its weight memory; every other NeuronArray port is passed through."""

    def __init__(self, cfg, layer, lanes):
        self.na = NeuronArray(cfg, layer, lanes)
        self._init = weight_words(bench_weights(cfg, layer), lanes)
        self._lanes = lanes
        super().__init__({k: v for k, v in self.na.signature.members.items()
                          if k not in ("w_addr", "w_data")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.na = na = self.na
        # the Core's weight memory (read latency 2), with small banks so that the bank
        # multiplexer is exercised
        m.submodules.wmem = wmem = BankedMemory(self._lanes, len(self._init), init=self._init,
                                                bank_words=16)
        m.d.comb += [wmem.r_addr.eq(na.w_addr), na.w_data.eq(wmem.r_data)]
        forward_ports(m, self, na, skip=("w_addr", "w_data"))
        return m


@pytest.mark.parametrize("case", sorted(CASES))
def test_neuron_array(sim, case):
    kw, layer, lanes = CASES[case]
    cfg = NetConfig(**kw)
    run_bench(sim, NABench(cfg, layer, lanes), f"na_{case}", "verif.test_neuron_array",
              testcase="neuron_array_vs_golden", name=case,
              env={"BSNN_CFG": cfg.to_dict(), "BSNN_LAYER": layer, "BSNN_LANES": lanes})


@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_accumulate_throughput(lanes):
    """SOP/cycle of the default network's first layer (128 -> 256), back-to-back events."""
    from golden.config import DEFAULT
    out = os.path.join(os.path.dirname(__file__), "..", "out", f"sop_p{lanes}.json")
    run_bench("icarus", NABench(DEFAULT, 0, lanes), f"na_default_p{lanes}",
              "verif.test_neuron_array", testcase="accumulate_throughput", name=f"p{lanes}",
              env={"BSNN_CFG": DEFAULT.to_dict(), "BSNN_LAYER": 0, "BSNN_LANES": lanes,
                   "BSNN_OUT": os.path.abspath(out)})


# --------------------------------------------------------------------------------------------
def _env():
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    return cfg, int(os.environ["BSNN_LAYER"]), int(os.environ["BSNN_LANES"])


async def _read_words(dut, sig, words, lanes, width):
    vals = []
    for c in range(words):
        dut.x_addr.value = c
        await RisingEdge(dut.clk)
        await ReadOnly()
        vals += unpack_lanes(int(sig.value), lanes, width)
        await RisingEdge(dut.clk)
    return vals


@cocotb.test()
async def neuron_array_vs_golden(dut):
    cfg, layer, P = _env()
    rng = random.Random(int(os.environ["BSNN_SEED"]))
    n_pre, n_post = cfg.layers[layer], cfg.layers[layer + 1]
    spiking = layer < cfg.n_layers - 1
    C = -(-n_post // P)
    mb = cfg.membrane_bits
    d = cfg.derived()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for s in ("start", "clear", "h_we_bias", "h_addr", "h_data", "x_addr") + \
            (("h_we_theta",) if spiking else ()):
        getattr(dut, s).value = 0
    src = StreamSource(dut, "i_event", idle=0.3, rng=rng)
    snk = StreamSink(dut, "o_spike", backpressure=0.4, rng=rng) if spiking else None
    sat = SumMonitor(dut.clk, dut.sat)
    await reset_dut(dut)

    ar = IntArith()
    w = bench_weights(cfg, layer)
    theta = np.full(n_post, d.theta[layer] if spiking else 0, np.int64)
    bias = np.zeros(n_post, np.int64)
    # host writes: random thresholds (spiking) and biases of both signs
    nprng = np.random.default_rng(rng.randrange(1 << 30))
    # a third of the neurons get a bias near the membrane bound (saturation), the rest small
    big = nprng.random(n_post) < 0.33
    bias[:] = np.where(big, nprng.integers(-d.mem_max, d.mem_max + 1, n_post),
                       nprng.integers(-3 * d.one_spike, 3 * d.one_spike + 1, n_post))
    if spiking:
        theta[:] = np.where(big, nprng.integers(1, d.mem_max + 1, n_post),
                            nprng.integers(1, 6 * d.one_spike, n_post))
    for j in range(n_post):
        dut.h_addr.value = j
        dut.h_data.value = int(bias[j])
        dut.h_we_bias.value = 1
        await RisingEdge(dut.clk)
        dut.h_we_bias.value = 0
        if spiking:
            dut.h_data.value = int(theta[j])
            dut.h_we_theta.value = 1
            await RisingEdge(dut.clk)
            dut.h_we_theta.value = 0

    v = np.zeros(n_post, np.int64)
    score = np.zeros(n_post, np.int64)
    n_steps = 2 * cfg.T
    for step in range(n_steps):
        if step == cfg.T:                      # a new sample: clear pass
            await pulse(dut.clk, dut.clear)
            await wait_low(dut.clk, dut.busy)
            v[:] = 0
            score[:] = 0
        density = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
        s_in = np.array([rng.random() < density for _ in range(n_pre)])
        order = list(np.flatnonzero(s_in))
        rng.shuffle(order)
        for i in order:
            src.send_nowait(int(i))
        await src.wait_empty()
        await wait_low(dut.clk, dut.busy)
        n_before = len(snk.items) if snk else 0
        await pulse(dut.clk, dut.start)
        await wait_low(dut.clk, dut.busy)

        z = accumulate(w, s_in)
        u, s_out, v = lif_step(ar, cfg, v, z, theta if spiking else None, bias, spiking)
        if spiking:
            got = snk.items[n_before:]
            assert got == list(np.flatnonzero(s_out)), f"step {step}: spikes differ"
        else:
            score = score + v
        got_u = (await _read_words(dut, dut.x_u, C, P, mb))[:n_post]
        got_v = (await _read_words(dut, dut.x_v, C, P, mb))[:n_post]
        assert got_u == u.tolist(), f"step {step}: u differs"
        assert got_v == v.tolist(), f"step {step}: v differs"
        if not spiking:
            sw = mb + int(np.ceil(np.log2(cfg.T)))
            got_s = (await _read_words(dut, dut.x_score, C, P, sw))[:n_post]
            assert got_s == score.tolist(), f"step {step}: score differs"
        assert sat.total == ar.counters["membrane"], \
            f"step {step}: membrane saturations {sat.total} != {ar.counters['membrane']}"
    dut._log.info("membrane saturations %d, spikes %d over %d steps", sat.total,
                  len(snk.items) if snk else 0, n_steps)
    assert sat.total > 0


@cocotb.test()
async def accumulate_throughput(dut):
    cfg, layer, P = _env()
    n_pre, n_post = cfg.layers[layer], cfg.layers[layer + 1]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for s in ("start", "clear", "h_we_bias", "h_we_theta", "x_addr"):
        getattr(dut, s).value = 0
    src = StreamSource(dut, "i_event", idle=0.0)
    StreamSink(dut, "o_spike", backpressure=0.0)
    await reset_dut(dut)
    events = list(range(0, n_pre, 2))          # 64 distinct events
    busy = SumMonitor(dut.clk, dut.busy)       # cycles with an event in flight
    for i in events:
        src.send_nowait(i)
    await src.wait_empty()
    await wait_low(dut.clk, dut.busy)
    cycles = busy.total
    sop = len(events) * n_post
    rate = sop / cycles
    dut._log.info("P=%d: %d events x %d posts = %d SOP in %d cycles: %.2f SOP/cycle",
                  P, len(events), n_post, sop, cycles, rate)
    out = os.environ.get("BSNN_OUT")
    if out:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump({"lanes": P, "events": len(events), "n_post": n_post, "sop": sop,
                       "cycles": cycles, "sop_per_cycle": rate}, f)
    assert rate >= 0.8 * P, f"{rate:.2f} SOP/cycle < 0.8 * P"
