"""BankedMemory bench (Amaranth simulator): seeded random reads and writes, every read checked
against the words written, ``READ_LATENCY`` cycles after its address; a partial last bank; bad
parameters rejected by name.

A memory has no golden twin: the reference is the list of words the bench has written.
"""
from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hdl_gen.banked_memory import READ_LATENCY, BankedMemory


@pytest.mark.parametrize("depth,bank_words", [(13, 4), (8, 8), (5, 16), (37, 1)])
def test_banked_memory_reads_what_was_written(depth, bank_words):
    width = 7
    rng = random.Random(depth * 100 + bank_words)
    init = [rng.randrange(1 << width) for _ in range(depth - 2)]   # the rest starts at zero
    dut = BankedMemory(width, depth, init=init, bank_words=bank_words)
    assert dut.n_banks == -(-depth // bank_words)
    model = init + [0, 0]
    checked = []

    async def bench(ctx):
        pending = []                            # (cycle due, addr, expected word)
        for cyc in range(600):
            addr = rng.randrange(depth)
            we = rng.random() < 0.4
            waddr, wdata = rng.randrange(depth), rng.randrange(1 << width)
            # a read of the word written in the same cycle returns the old word
            pending.append((cyc + READ_LATENCY, addr, model[addr]))
            ctx.set(dut.r_addr, addr)
            ctx.set(dut.w_addr, waddr)
            ctx.set(dut.w_data, wdata)
            ctx.set(dut.w_en, we)
            if pending[0][0] == cyc:
                _, a, want = pending.pop(0)
                got = ctx.get(dut.r_data)
                assert got == want, f"cycle {cyc}: word {a} read {got}, expected {want}"
                checked.append(a)
            await ctx.tick()
            if we:
                model[waddr] = wdata

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 500 and set(checked) == set(range(depth))


@pytest.mark.parametrize("kw,msg", [
    (dict(width=4, depth=0), "depth=0"),
    (dict(width=4, depth=8, bank_words=6), "bank_words=6"),
    (dict(width=4, depth=2, init=[1, 2, 3]), "init has 3 words"),
])
def test_banked_memory_rejects_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        BankedMemory(**kw)
