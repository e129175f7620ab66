"""ErrorUnit bench: the output and the hidden error units of a 2-layer network, chained as in the
core (the output unit's delta copy feeds the hidden unit), against golden.error_unit, exact.

Each round loads random membranes ``u`` (many near threshold, so the surrogate is non-zero),
thresholds, output-layer weights and a label, runs the output unit then the hidden unit, and
compares every delta word written (each address exactly once), ``S_d`` and the number of
saturated deltas. Narrow ``delta_bits`` make saturation frequent.
"""
from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from amaranth import Module, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from golden.config import NetConfig
from golden.error_unit import hidden_error, output_error
from golden.fixed import IntArith
from hdl_gen.banked_memory import BankedMemory
from hdl_gen.common import uidx, weight_words, words
from hdl_gen.error_unit import ErrorUnit
from verif.rtl_util import pulse, unpack_lanes
from verif.simulate import run_bench
from verif.streams import reset_dut

CFG = dict(layers=(16, 37, 20), T=4, membrane_bits=10, membrane_frac=3, theta=(3.0,),
           delta_bits=8, surrogate_shift=4, err_shift=2, target=6.0, grad_shift=(2, 3),
           gamma=(8, 8))
LANES = 8


class EUBench(wiring.Component):
    """ErrorUnit(1) (output) -> ErrorUnit(0) (hidden) with loadable u, theta and W1 memories."""

    def __init__(self, cfg, lanes):
        self.cfg, self.P = cfg, lanes
        self.eu0 = ErrorUnit(cfg, 0, lanes)
        self.eu1 = ErrorUnit(cfg, 1, lanes)
        n0, n1 = cfg.layers[1], cfg.layers[2]
        self.C0, self.C1 = words(n0, lanes), words(n1, lanes)
        mb, db = cfg.membrane_bits, cfg.delta_bits
        super().__init__({
            "ld_sel": In(2), "ld_addr": In(16), "ld_data": In(lanes * mb), "ld_en": In(1),
            "label": In(uidx(n1)),
            "start0": In(1), "start1": In(1), "busy0": Out(1), "busy1": Out(1),
            "d0_addr": Out(uidx(self.C0)), "d0_data": Out(lanes * db), "d0_en": Out(1),
            "d1_addr": Out(uidx(self.C1)), "d1_data": Out(lanes * db), "d1_en": Out(1),
            "s_d0": Out(self.eu0.s_d.shape()), "s_d1": Out(self.eu1.s_d.shape()),
            "sat0": Out(1), "sat1": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, P = self.cfg, self.P
        n0 = cfg.layers[1]
        m.submodules.eu0 = eu0 = self.eu0
        m.submodules.eu1 = eu1 = self.eu1
        shape = data.ArrayLayout(signed(cfg.membrane_bits), P)
        mems = {}
        for sel, (name, shp, depth) in enumerate([("u0", shape, self.C0), ("th0", shape, self.C0),
                                                  ("u1", shape, self.C1)]):
            mem = memory.Memory(shape=shp, depth=depth, init=[])
            m.submodules[name] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(self.ld_addr), wp.data.eq(self.ld_data),
                         wp.en.eq(self.ld_en & (self.ld_sel == sel))]
            mems[name] = mem
        for name, addr, out in (("u0", eu0.x_addr, eu0.x_u), ("th0", eu0.x_addr, eu0.x_theta),
                                ("u1", eu1.x_addr, eu1.x_u)):
            rp = mems[name].read_port()
            m.d.comb += [rp.addr.eq(addr), out.eq(rp.data)]
        # the Core's weight memory (read latency 2), small banks to exercise the multiplexer
        m.submodules.w1 = w1 = BankedMemory(P, n0 * self.C1, bank_words=8)
        m.d.comb += [w1.w_addr.eq(self.ld_addr), w1.w_data.eq(self.ld_data),
                     w1.w_en.eq(self.ld_en & (self.ld_sel == 3)),
                     w1.r_addr.eq(eu0.w_addr), eu0.w_data.eq(w1.r_data)]
        m.d.comb += [
            eu1.dl_addr.eq(eu0.dn_addr), eu0.dn_data.eq(eu1.dl_data),
            eu1.label.eq(self.label), eu0.start.eq(self.start0), eu1.start.eq(self.start1),
            self.busy0.eq(eu0.busy), self.busy1.eq(eu1.busy),
            self.d0_addr.eq(eu0.d_wr_addr), self.d0_data.eq(eu0.d_wr_data),
            self.d0_en.eq(eu0.d_wr_en),
            self.d1_addr.eq(eu1.d_wr_addr), self.d1_data.eq(eu1.d_wr_data),
            self.d1_en.eq(eu1.d_wr_en),
            self.s_d0.eq(eu0.s_d), self.s_d1.eq(eu1.s_d),
            self.sat0.eq(eu0.sat), self.sat1.eq(eu1.sat),
        ]
        return m


def test_error_unit(sim):
    cfg = NetConfig(**CFG)
    run_bench(sim, EUBench(cfg, LANES), "eu_bench", "verif.test_error_unit",
              testcase="error_unit_vs_golden", env={"BSNN_CFG": cfg.to_dict()})


# --------------------------------------------------------------------------------------------
class WriteMonitor:
    """Record ``(addr, data)`` of every cycle with ``en`` high."""

    def __init__(self, clk, en, addr, dat):
        self.clk, self.en, self.addr, self.dat = clk, en, addr, dat
        self.writes = []
        self.sat = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            if int(self.en.value):
                self.writes.append((int(self.addr.value), int(self.dat.value)))


class PulseCounter:
    def __init__(self, clk, sig):
        self.clk, self.sig, self.count = clk, sig, 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.count += int(self.sig.value)


def _pack(vals, width):
    return sum((int(v) & ((1 << width) - 1)) << (k * width) for k, v in enumerate(vals))


def _deltas(writes, n, P, db):
    addrs = [a for a, _ in writes]
    assert sorted(addrs) == list(range(words(n, P))), f"delta words written: {addrs}"
    out = [0] * (words(n, P) * P)
    for a, w in writes:
        out[a * P:(a + 1) * P] = unpack_lanes(w, P, db)
    assert all(x == 0 for x in out[n:]), "padding lanes must be 0"
    return out[:n]


@cocotb.test()
async def error_unit_vs_golden(dut):
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    rng = np.random.default_rng(int(os.environ["BSNN_SEED"]))
    P, d = LANES, cfg.derived()
    n0, n1 = cfg.layers[1], cfg.layers[2]
    mb, db = cfg.membrane_bits, cfg.delta_bits
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for s in ("ld_sel", "ld_addr", "ld_data", "ld_en", "label", "start0", "start1"):
        getattr(dut, s).value = 0
    await reset_dut(dut)
    mon0 = WriteMonitor(dut.clk, dut.d0_en, dut.d0_addr, dut.d0_data)
    mon1 = WriteMonitor(dut.clk, dut.d1_en, dut.d1_addr, dut.d1_data)
    sat0, sat1 = PulseCounter(dut.clk, dut.sat0), PulseCounter(dut.clk, dut.sat1)

    async def load(sel, words_):
        for a, w in enumerate(words_):
            dut.ld_sel.value, dut.ld_addr.value, dut.ld_data.value = sel, a, w
            dut.ld_en.value = 1
            await RisingEdge(dut.clk)
        dut.ld_en.value = 0

    def lanes_words(vals, n):
        v = list(vals) + [0] * (words(n, P) * P - n)
        return [_pack(v[c * P:(c + 1) * P], mb) for c in range(words(n, P))]

    n_nonzero = golden_sat = 0
    for rnd in range(12):
        ar = IntArith()
        spread = [d.mem_max, 4 * (1 << cfg.surrogate_shift), 1 << cfg.surrogate_shift][rnd % 3]
        theta0 = rng.integers(1, d.mem_max // 2, n0)
        u0 = np.clip(theta0 + rng.integers(-spread, spread + 1, n0), -d.mem_max, d.mem_max)
        u1 = rng.integers(-d.mem_max, d.mem_max + 1, n1) >> int(rng.integers(0, 4))
        w1 = (rng.integers(0, 2, (n1, n0)) * 2 - 1).astype(np.int8)
        label = int(rng.integers(0, n1))
        await load(0, lanes_words(u0, n0))
        await load(1, lanes_words(theta0, n0))
        await load(2, lanes_words(u1, n1))
        await load(3, weight_words(w1, P))
        dut.label.value = label
        mon0.writes.clear()
        mon1.writes.clear()
        await pulse(dut.clk, dut.start1)
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if not int(dut.busy1.value):
                break
        await RisingEdge(dut.clk)
        await pulse(dut.clk, dut.start0)
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if not int(dut.busy0.value):
                break
        await RisingEdge(dut.clk)

        d1 = output_error(ar, cfg, u1.astype(np.int64), label)
        d0 = hidden_error(ar, cfg, w1, d1, u0.astype(np.int64), theta0.astype(np.int64))
        got1 = _deltas(mon1.writes, n1, P, db)
        got0 = _deltas(mon0.writes, n0, P, db)
        assert got1 == d1.tolist(), f"round {rnd}: output deltas differ"
        assert got0 == d0.tolist(), f"round {rnd}: hidden deltas differ"
        assert int(dut.s_d1.value) == int(np.sum(d1.astype(object) ** 2)), "S_d output"
        assert int(dut.s_d0.value) == int(np.sum(d0.astype(object) ** 2)), "S_d hidden"
        golden_sat += ar.counters["delta"]
        assert sat0.count + sat1.count == golden_sat, f"round {rnd}: saturation count"
        n_nonzero += int(np.count_nonzero(d0))
    dut._log.info("hidden deltas non-zero: %d; saturated deltas: %d", n_nonzero,
                  sat0.count + sat1.count)
    assert n_nonzero > 0 and sat0.count > 0 and sat1.count > 0
