"""Self-test of the stream drivers through amaranth.lib.fifo: nothing lost, duplicated or reordered."""
import random

import cocotb
from amaranth import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from verif.simulate import run_bench
from verif.streams import StreamSink, StreamSource, reset_dut


class FifoPipe(wiring.Component):
    """A 4-deep FIFO between two 16-bit streams."""

    i_data: In(stream.Signature(16))
    o_data: Out(stream.Signature(16))

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = fifo.SyncFIFOBuffered(width=16, depth=4)
        wiring.connect(m, wiring.flipped(self.i_data), f.w_stream)
        wiring.connect(m, f.r_stream, wiring.flipped(self.o_data))
        return m


def test_stream_drivers(sim):
    run_bench(sim, FifoPipe(), "fifo_pipe", "verif.test_streams", testcase="stream_loopback")


@cocotb.test()
async def stream_loopback(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    rng = random.Random(int(__import__("os").environ["BSNN_SEED"]))
    src = StreamSource(dut, "i_data", idle=0.4, rng=rng)
    snk = StreamSink(dut, "o_data", backpressure=0.5, rng=rng)
    await reset_dut(dut)
    data = [rng.randrange(1 << 16) for _ in range(300)]
    for d in data:
        src.send_nowait(d)
    await src.wait_empty()
    for _ in range(2000):
        if len(snk.items) >= len(data):
            break
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 20)
    assert snk.items == data
