"""System bench: a core trains on digits samples end to end, scored by golden.core.Core (int).

Parametrised over the architectures (``hdl_gen.architectures``): the parallel core
(:class:`hdl_gen.core.Core`) and the compact core (:class:`hdl_gen.compact_core.CompactCore`)
run the same bench with the same golden scoring; only the power-up weights differ (the compact
core's synapse memory has no initial contents: the host writes the weights).

Per configuration: random weights, momenta, thresholds, biases and the step register are loaded
through the memory port; then every sample runs RESET_SAMPLE, LABEL and T x (events + STEP),
learning on (one sample with learning off, one with spike events off, one with flip events
off). Input events come in random order with random idle cycles, plus an out-of-range index and
a duplicate per step (both must be counted and dropped); every output stream sees random
back-pressure. Checked exactly against golden: every o_spike event, every o_flip event, every
step's prediction, the final weight, momentum and V memories, and the status counters.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from golden.config import DEFAULT, NetConfig
from golden.core import Core as GoldenCore
from golden.data import load_digits_events
from golden.fixed import step_key
from hdl_gen.common import unpack_weight_words, weight_words, words
from hdl_gen.architectures import core_class
from hdl_gen.core import (CTRL_LAYOUT, EVENT_LAYOUT, FLIP_LAYOUT, RESULT_LAYOUT, SPIKE_LAYOUT,
                          STATUS_LAYOUT, CtrlOp, MemSpace, Reg, ResultKind, mem_layout)
from verif.rtl_util import pack, unpack
from verif.simulate import ROOT, SIMULATORS, run_bench
from verif.streams import StreamSink, StreamSource, reset_dut

# name: (NetConfig overrides of DEFAULT, lanes, samples, simulators, momentum readback, marker,
# architecture)
CASES = {
    # BSO, small P, narrow trace/membrane so that saturation counters move
    "bso_p8": (dict(layers=(128, 32, 10), rate_shift=5, gamma=(24, 24), trace_bits=6,
                    membrane_bits=11), 8, 20, SIMULATORS, "all", "", "parallel"),
    # T-BSO, larger P, hard reset
    "tbso_p32": (dict(layers=(128, 64, 10), optimizer="tbso", rate_shift=5, tbso_gamma=0.25,
                      reset="hard"), 32, 20, SIMULATORS, "all", "", "parallel"),
    # the default network and lanes (the committed rtl/): cycles per step, Icarus only
    "default_p32": (dict(), 32, 2, ("icarus",), "sample", "slow", "parallel"),
    # the compact core: the same two learning setups, smaller (4 samples of T = 4: learning,
    # learning off, spike events off, flip events off); P = 2 (a partial last word) and P = 1
    "compact_bso_p2": (dict(layers=(128, 24, 10), T=4, rate_shift=5, gamma=(24, 24),
                            trace_bits=6, membrane_bits=11), 2, 4, SIMULATORS, "all", "",
                       "compact"),
    "compact_tbso_p1": (dict(layers=(128, 16, 10), T=4, optimizer="tbso", rate_shift=5,
                             tbso_gamma=0.25, reset="hard"), 1, 4, SIMULATORS, "all", "",
                        "compact"),
    # the digits network on the compact core at the iCEBreaker's lanes: cycles per step
    "compact_default_p2": (dict(), 2, 2, ("verilator",), "sample", "slow", "compact"),
}


def case_config(name: str) -> tuple[NetConfig, int, int]:
    kw, lanes, n, *_ = CASES[name]
    return DEFAULT.replace(**kw), lanes, n


# (simulator, case) pairs are listed explicitly: a case meant for one simulator is not collected
# for the other (instead of being skipped there)
@pytest.mark.parametrize("sim,case", [
    pytest.param(s, c, marks=[pytest.mark.slow] if CASES[c][5] else [], id=f"{s}-{c}")
    for c in sorted(CASES) for s in CASES[c][3]])
def test_core(sim, case, tmp_path):
    cfg, lanes, n = case_config(case)
    n = int(os.environ.get("BSNN_CORE_SAMPLES", n))      # a quicker look while debugging
    data = load_digits_events(T=cfg.T)            # here, not in the simulator's interpreter
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=data.x_train[:n], y=data.y_train[:n])
    out = ROOT / "out" / f"core_perf_{case}_{sim}.json"
    arch = CASES[case][6]
    run_bench(sim, core_class(arch)(cfg, lanes=lanes), f"core_{case}", "verif.test_core",
              testcase="core_trains_like_golden", name=case,
              env={"BSNN_CFG": cfg.to_dict(), "BSNN_LANES": lanes, "BSNN_SAMPLES": str(samples),
                   "BSNN_READBACK": CASES[case][4], "BSNN_PERF": str(out),
                   "BSNN_ARCH": arch})


# --------------------------------------------------------------------------------------------
class CoreTB:
    """Drivers and sinks of the Core's streams plus transaction helpers."""

    def __init__(self, dut, cfg, lanes, rng):
        self.dut, self.cfg, self.P = dut, cfg, lanes
        self.mem_layout = mem_layout(cfg, lanes)
        self.ev = StreamSource(dut, "i_event", idle=0.3, rng=rng)
        self.ctrl = StreamSource(dut, "i_ctrl", idle=0.3, rng=rng)
        self.memq = StreamSource(dut, "i_mem", idle=0.2, rng=rng)
        self.spikes = StreamSink(dut, "o_spike", backpressure=0.3, rng=rng)
        self.flips = StreamSink(dut, "o_flip", backpressure=0.3, rng=rng)
        self.results = StreamSink(dut, "o_result", backpressure=0.3, rng=rng)
        self.memr = StreamSink(dut, "o_mem", backpressure=0.2, rng=rng)

    async def op(self, op, arg=0):
        self.ctrl.send_nowait(pack(CTRL_LAYOUT, op=op, arg=arg))
        await self.ctrl.wait_empty()

    async def result(self, n_before):
        while len(self.results.items) <= n_before:
            await RisingEdge(self.dut.clk)
        return unpack(RESULT_LAYOUT, self.results.items[n_before])

    async def step(self, events):
        for e in events:
            self.ev.send_nowait(pack(EVENT_LAYOUT, pre=e))
        await self.ev.wait_empty()
        n = len(self.results.items)
        await self.op(CtrlOp.STEP)
        t0 = get_sim_time("ns")
        r = await self.result(n)
        return r, (get_sim_time("ns") - t0) / 10

    async def mem_write(self, mem, layer, items):
        for addr, val in items:
            self.memq.send_nowait(pack(self.mem_layout, write=1, mem=mem, layer=layer,
                                       addr=addr, data=int(val) & ((1 << 64) - 1)))
        await self.memq.wait_empty()

    async def mem_read(self, mem, layer, addrs, width=None, signed=False):
        n0 = len(self.memr.items)
        for a in addrs:
            self.memq.send_nowait(pack(self.mem_layout, write=0, mem=mem, layer=layer, addr=a))
        while len(self.memr.items) < n0 + len(addrs):
            await RisingEdge(self.dut.clk)
        out = []
        for v in self.memr.items[n0:]:
            if width is not None:
                v &= (1 << width) - 1
                if signed and v >> (width - 1):
                    v -= 1 << width
            out.append(v)
        return out

    def status(self):
        return unpack(STATUS_LAYOUT, int(self.dut.status.value))


async def check_state(tb, gold, where):
    """Compare scores, membranes and traces with golden (debug aid; costs memory reads)."""
    cfg = tb.cfg
    L = cfg.n_layers
    for l in range(L):
        got = await tb.mem_read(MemSpace.MEMBRANE, l, range(cfg.layers[l + 1]),
                                width=cfg.membrane_bits, signed=True)
        assert got == gold.v[l].tolist(), f"{where}: layer {l} membranes {got} != {gold.v[l]}"
        got = await tb.mem_read(MemSpace.TRACE, l, range(cfg.layers[l]), width=cfg.trace_bits)
        assert got == gold.a[l].tolist(), f"{where}: layer {l} traces {got} != {gold.a[l]}"
    sw = cfg.membrane_bits + int(np.ceil(np.log2(cfg.T)))
    got = await tb.mem_read(MemSpace.SCORE, L - 1, range(cfg.layers[-1]), width=sw, signed=True)
    assert got == gold.score.tolist(), f"{where}: scores {got} != {gold.score.tolist()}"


def syn(pre, post):
    return (pre << 14) | post


@cocotb.test()
async def core_trains_like_golden(dut):
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    P = int(os.environ["BSNN_LANES"])
    samples = np.load(os.environ["BSNN_SAMPLES"])
    xs, ys = samples["x"], samples["y"]
    n_samples = len(ys)
    deep = os.environ.get("BSNN_DEEP", "0") == "1"
    seed = int(os.environ["BSNN_SEED"])
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("i_event", "i_ctrl", "i_mem"):
        getattr(dut, f"{name}__valid").value = 0
    await reset_dut(dut)
    tb = CoreTB(dut, cfg, P, rng)
    L, d = cfg.n_layers, cfg.derived()
    gold = GoldenCore(cfg, "int")

    # the parallel core powers up with golden's initial weights (the compact core's synapse
    # memory, an SPRAM on the iCE40, has no initial contents: the host writes them)
    arch = os.environ["BSNN_ARCH"]
    for l in (range(L) if arch == "parallel" else ()):
        C = words(cfg.layers[l + 1], P)
        got = await tb.mem_read(MemSpace.WEIGHT_WORD, l, range(min(8, cfg.layers[l] * C)))
        assert got == weight_words(gold.w_sign[l], P)[:len(got)], "initial weights"

    # --- load a random state through the memory port ---------------------------------------------
    for l in range(L):
        w = (nprng.integers(0, 2, gold.w_sign[l].shape) * 2 - 1).astype(np.int8)
        gold.w_sign[l] = w
        await tb.mem_write(MemSpace.WEIGHT_WORD, l, enumerate(weight_words(w, P)))
        # a few single-bit writes through the read-modify-write path
        for _ in range(16):
            i, j = int(nprng.integers(cfg.layers[l])), int(nprng.integers(cfg.layers[l + 1]))
            b = int(nprng.integers(2))
            gold.w_sign[l][j, i] = 1 if b else -1
            await tb.mem_write(MemSpace.WEIGHT, l, [(syn(i, j), b)])
        # momenta: a random sparse pattern
        for _ in range(32):
            i, j = int(nprng.integers(cfg.layers[l])), int(nprng.integers(cfg.layers[l + 1]))
            v = int(nprng.integers(-d.mom_max, d.mom_max + 1))
            gold.M[l][j, i] = v
            await tb.mem_write(MemSpace.MOMENTUM, l, [(syn(i, j), v)])
        bias = nprng.integers(-d.one_spike, d.one_spike + 1, cfg.layers[l + 1])
        gold.bias[l] = bias.astype(np.int64)
        await tb.mem_write(MemSpace.BIAS, l, enumerate(bias.tolist()))
        if l < L - 1:
            th = d.theta[l] + nprng.integers(-d.one_spike, d.one_spike + 1, cfg.layers[l + 1])
            gold.theta[l] = th.astype(np.int64)
            await tb.mem_write(MemSpace.THETA, l, enumerate(th.tolist()))
    gold.step = 1000
    await tb.mem_write(MemSpace.REG, 0, [(Reg.STEP, gold.step)])
    # schedule registers as the host's epoch schedule would set them (saturating writes)
    gold.rate_shift = cfg.rate_shift - 1
    gold.gamma = [g - 4 for g in cfg.gamma]
    gold.tbso_gamma_q = gold.tbso_gamma_q * 3 // 2
    regs = [(Reg.RATE_SHIFT, gold.rate_shift), (Reg.TBSO_GAMMA_Q, gold.tbso_gamma_q)]
    regs += [(Reg.GAMMA + l, g) for l, g in enumerate(gold.gamma)]
    await tb.mem_write(MemSpace.REG, 0, [(Reg.RATE_SHIFT, 1000)])
    assert await tb.mem_read(MemSpace.REG, 0, [Reg.RATE_SHIFT]) == [63], "saturating write"
    await tb.mem_write(MemSpace.REG, 0, regs)
    assert await tb.mem_read(MemSpace.REG, 0, [r for r, _ in regs]) == [v for _, v in regs]
    assert (await tb.mem_read(MemSpace.REG, 0, [Reg.KEY]))[0] == step_key(cfg.seed, gold.step)
    for l in range(L):
        got = await tb.mem_read(MemSpace.BIAS, l, range(cfg.layers[l + 1]),
                                width=cfg.membrane_bits, signed=True)
        assert got == gold.bias[l].tolist(), "bias readback"
    # invalid requests: counted, a read still answers (0)
    assert await tb.mem_read(MemSpace.THETA, L - 1, [0]) == [0]
    await tb.mem_write(MemSpace.BIAS, 0, [(cfg.layers[1], 5)])
    bad_cmd = 2

    # --- train -----------------------------------------------------------------------------------
    exp_spikes, exp_flips = [], []
    dropped = dup = 0
    cycles = []
    perf = []                  # per step: phase cycles from the status counters, work done
    visited = []
    import golden.core as gcore

    def counting_flip_step(ar, cfg_, layer, w_sign, M, delta, a, *rest):
        visited.append(int(np.count_nonzero(delta)) * int(np.count_nonzero(a)))
        return _flip_step(ar, cfg_, layer, w_sign, M, delta, a, *rest)
    _flip_step = gcore.flip_step
    gcore.flip_step = counting_flip_step
    # the sample with learning off, with spike events off, with flip events off
    learn_off, spikes_off, flips_off = (3, 5, 7) if n_samples >= 8 else (1, 2, 3)
    await tb.op(CtrlOp.LEARN, 1)
    for k in range(n_samples):
        x, y = xs[k], int(ys[k])
        learn = k != learn_off
        out_mask = (0 if k == spikes_off else 1) | (0 if k == flips_off else 2)
        await tb.op(CtrlOp.OUTPUTS, out_mask)
        await tb.op(CtrlOp.LEARN, int(learn))
        await tb.op(CtrlOp.RESET_SAMPLE)
        await tb.op(CtrlOp.LABEL, y)
        gold.reset_sample()
        for t in range(cfg.T):
            act = [int(i) for i in np.flatnonzero(x[t])]
            events = act[:]
            if act:
                events.append(rng.choice(act))              # duplicate
                dup += 1
            events.append(cfg.layers[0] + rng.randrange(1 << 10))   # out of range
            dropped += 1
            rng.shuffle(events)
            st0 = tb.status()
            r, cyc = await tb.step(events)
            st1 = tb.status()
            cycles.append(cyc)
            visited.clear()
            spikes, flips = gold.step_once(x[t], y, learn)
            perf.append({"learn": learn, "events": len(act),
                         "hidden_spikes": int(sum(int(sp.sum()) for sp in spikes)),
                         "visited": sum(visited),
                         **{k: st1[k] - st0[k] for k in ("cyc_fwd", "cyc_err", "cyc_learn",
                                                         "cyc_step")}})
            if out_mask & 1:
                for l, s in enumerate(spikes):
                    exp_spikes += [pack(SPIKE_LAYOUT, t=t, layer=l, neuron=int(j))
                                   for j in np.flatnonzero(s)]
            if out_mask & 2:
                for l, post, pre in flips:
                    exp_flips += [pack(FLIP_LAYOUT, t=t, layer=l, pre=int(i), post=int(j))
                                  for i, j in zip(pre.tolist(), post.tolist())]
            assert r["kind"] == ResultKind.STEP.value and r["t"] == t
            if deep or k == 0:
                await check_state(tb, gold, f"sample {k} step {t}")
            assert tb.spikes.items == exp_spikes, f"sample {k} step {t}: spike events differ"
            assert r["pred"] == int(np.argmax(gold.score)), f"sample {k} step {t}: prediction"
            assert tb.flips.items == exp_flips, f"sample {k} step {t}: flip events differ"
        dut._log.info("sample %d (label %d): %d spikes, %d flips so far, %.0f cycles/step", k, y,
                      len(exp_spikes), len(exp_flips), np.mean(cycles[-cfg.T:]))

    # a STEP beyond T is refused; SYNC answers
    n = len(tb.results.items)
    await tb.op(CtrlOp.STEP)
    assert (await tb.result(n))["kind"] == ResultKind.REFUSED.value
    bad_cmd += 1
    await tb.op(CtrlOp.SYNC)
    assert (await tb.result(n + 1))["kind"] == ResultKind.SYNC.value

    # --- final state ------------------------------------------------------------------------------
    tb.memq.idle = tb.memr.backpressure = 0.0     # bulk readback: stalls were tested above
    for l in range(L):
        n_pre, n_post = cfg.layers[l], cfg.layers[l + 1]
        C = words(n_post, P)
        ws = await tb.mem_read(MemSpace.WEIGHT_WORD, l, range(n_pre * C))
        got_w = unpack_weight_words(ws, n_post, n_pre, P)
        assert np.array_equal(got_w, gold.w_sign[l]), f"layer {l}: weights differ"
        pairs = [(i, j) for i in range(n_pre) for j in range(n_post)]
        if os.environ.get("BSNN_READBACK", "all") != "all":      # a random 2000 of them
            pairs = [pairs[q] for q in sorted(nprng.choice(len(pairs), 2000, replace=False))]
        ms = await tb.mem_read(MemSpace.MOMENTUM, l, [syn(i, j) for i, j in pairs],
                               width=cfg.momentum_bits, signed=True)
        assert ms == [int(gold.M[l][j, i]) for i, j in pairs], f"layer {l}: momenta differ"
        if cfg.optimizer == "tbso":
            vs = await tb.mem_read(MemSpace.V, l, range(cfg.T), width=cfg.v_bits)
            assert vs == [int(v) for v in gold.V[l]], f"layer {l}: V differs"
    st = tb.status()
    c = gold.counters
    expect = {"dropped": dropped, "duplicate": dup, "bad_cmd": bad_cmd,
              "sat_membrane": c["membrane"], "sat_trace": c["trace"], "sat_delta": c["delta"],
              "sat_momentum": c["momentum"], "sat_v": c["v"], "step": gold.step,
              "key": step_key(cfg.seed, gold.step)}
    got = {k: st[k] for k in expect}
    assert got == expect, f"status {got} != golden {expect}"
    n_flips = len(exp_flips)
    dut._log.info("done: %d spikes, %d flip events (+ %d not emitted), counters %s, "
                  "mean %.0f cycles/step", len(exp_spikes), n_flips, st["flips"] - n_flips, got,
                  np.mean(cycles))
    gcore.flip_step = _flip_step
    out = os.environ.get("BSNN_PERF")
    if out:
        lp = [p_ for p_ in perf if p_["learn"]]
        C0 = words(cfg.layers[1], P)
        summary = {
            "arch": arch, "lanes": P, "layers": list(cfg.layers), "optimizer": cfg.optimizer,
            "steps": len(perf), "learning_steps": len(lp),
            "mean_input_events": float(np.mean([p_["events"] for p_ in perf])),
            "mean_hidden_spikes": float(np.mean([p_["hidden_spikes"] for p_ in perf])),
            # parallel: accumulating the input events happens before STEP, at C0 cycles per
            # event; compact: 2 cycles per event before STEP (the accumulation is in cyc_fwd)
            "mean_input_accumulation_cycles": float(np.mean([p_["events"] for p_ in perf]))
            * (C0 if arch == "parallel" else 2),
            "mean_cycles_step_learning": float(np.mean([p_["cyc_step"] for p_ in lp])),
            "mean_cycles_fwd": float(np.mean([p_["cyc_fwd"] for p_ in lp])),
            "mean_cycles_err": float(np.mean([p_["cyc_err"] for p_ in lp])),
            "mean_cycles_learn": float(np.mean([p_["cyc_learn"] for p_ in lp])),
            "mean_visited_synapses": float(np.mean([p_["visited"] for p_ in lp])),
            "updates_per_learn_cycle": float(sum(p_["visited"] for p_ in lp)
                                             / max(1, sum(p_["cyc_learn"] for p_ in lp))),
            "mean_cycles_step_inference": float(np.mean(
                [p_["cyc_step"] for p_ in perf if not p_["learn"]] or [0])),
            "flips": int(st["flips"]), "spike_events": len(exp_spikes),
        }
        dut._log.info("perf %s", summary)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump({"summary": summary, "steps": perf}, f, indent=1)
