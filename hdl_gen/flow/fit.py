"""Fit check before synthesis: the memory budget of a design on a board, from its memory list.

:func:`memory_budget` places every memory the way Yosys' ``memory_libmap`` does (per memory, the
cheapest of the family's RAM primitives or flip-flops, with the costs of Yosys' own libraries
``ice40/brams.txt``, ``ice40/spram.txt``, ``lattice/brams_16kd.txt``,
``lattice/lutrams_trellis.txt``
and its logic cost of 1 per RAM bit), sums the primitives and compares them with the device.
:func:`check_fit` turns the first shortfall into one line::

    block RAM (SB_RAM40_4K EBR) needs 76 EBR but the iCEBreaker (iCE40 UP5K-SG48) has 30

The memory list comes from the core class (``memories(cfg, lanes)``, the architectures'
interface in :mod:`hdl_gen.architectures`) plus, for everything around the core (UART link,
FIFOs), from the elaborated design (:func:`hdl_gen.inventory.memory_inventory`).

Modelled: primitive geometries (EBR 256x16 .. 2048x2; SPRAM 16k x 16, single port only, no
initial contents, with ``-spram``, see :mod:`hdl_gen.flow.spram`; DP16KD 1k x 18 .. 16k x 1,
512 x 36 for one read + one write port; DPR16X4 16 x 4),
one copy of the memory per synchronous read port beyond what the primitive has, combinational
reads (no block RAM on the iCE40: flip-flops; LUT RAM on the ECP5). Not modelled: the logic
around the memories, Yosys merging or splitting memories. The estimate is checked against real
builds in verif/test_fit.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Primitive", "place", "memory_budget", "check_fit", "design_memories", "FitError",
           "PRIMITIVES"]


@dataclass(frozen=True)
class Primitive:
    """One RAM primitive kind of an FPGA family, as Yosys' memory library describes it."""
    kind: str                 # "EBR", "SPRAM", "DP16KD", "LUTRAM"
    cell: str                 # nextpnr's utilisation name
    title: str                # for messages
    cost: float               # Yosys' cost per primitive
    geometries: tuple         # (width, depth) per port configuration
    read_ports: int           # synchronous read ports besides the write port
    async_read: bool = False  # has a combinational read port
    single_port: bool = False # one address for read and write only
    needs_opt: str | None = None   # synth option that enables automatic inference
    wide_pdp: tuple | None = None  # (width, depth) usable with one read + one write port

    def blocks(self, width: int, depth: int, pdp: bool = True) -> int:
        """Primitives for a ``width`` x ``depth`` memory: full-width slices in one geometry, the
        remaining bits in the cheapest geometry, folding several words into one primitive
        word when they divide it, as Yosys does (measured: 9 x 35,328 -> 79 EBR, 3 SPRAM with
        ``ram_style = "huge"``; 18 x 17,664 -> 3 SPRAM)."""
        geos = list(self.geometries) + ([self.wide_pdp] if pdp and self.wide_pdp else [])

        def rest(r, w, d):                   # r < full width bits in geometry (w, d)
            if w < r:
                return math.ceil(r / w) * math.ceil(depth / d)
            fold = w // r if w % r == 0 else 1
            return math.ceil(depth / (d * fold))

        best = None
        for w, d in geos:
            full, r = divmod(width, w)
            n = full * math.ceil(depth / d)
            if r:
                n += min(rest(r, w2, d2) for w2, d2 in geos)
            best = n if best is None else min(best, n)
        return best


PRIMITIVES = {
    "ice40": (
        Primitive("EBR", "ICESTORM_RAM", "block RAM (SB_RAM40_4K EBR)", 64,
                  ((16, 256), (8, 512), (4, 1024), (2, 2048)), read_ports=1),
        Primitive("SPRAM", "ICESTORM_SPRAM", "single-port RAM (SB_SPRAM256KA SPRAM)", 2048,
                  ((16, 16384),), read_ports=1, single_port=True, needs_opt="-spram"),
    ),
    "ecp5": (
        # DP16KD: two read/write ports; with one of them writing, one more read per block.
        Primitive("DP16KD", "DP16KD", "block RAM (DP16KD)", 128,
                  ((18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)), read_ports=1,
                  wide_pdp=(36, 512)),
        Primitive("LUTRAM", "TRELLIS_RAMW", "LUT RAM (TRELLIS_DPR16X4)", 4, ((4, 16),),
                  read_ports=0, async_read=True),
    ),
}

#: Flip-flops per device for memories left in logic: nextpnr's cell and its title.
FF_CELL = {"ice40": ("ICESTORM_LC", "memory in flip-flops"),
           "ecp5": ("TRELLIS_FF", "memory in flip-flops")}


class FitError(ValueError):
    """The design cannot fit the board (message: one line)."""


def place(mem: dict, family: str, synth_opts=()) -> dict:
    """Where Yosys puts ``mem`` on ``family``: ``{"kind", "cell", "blocks", "bits", "copies"}``
    (``kind`` "FF" for flip-flops, ``blocks`` then = bits)."""
    w, d = int(mem["width"]), int(mem["depth"])
    n = int(mem.get("count", 1))
    bits = w * d
    reads = max(1, int(mem.get("read_ports", 1)))
    rom = mem.get("write_ports", 1) == 0
    best = {"kind": "FF", "cell": FF_CELL[family][0], "blocks": bits * n, "bits": bits * n,
            "copies": 1, "cost": bits * (1 / 16 if rom else 1.0)}
    prims = PRIMITIVES[family]
    if mem.get("style") == "huge" and any(p.kind == "SPRAM" for p in prims):
        prims = [p for p in prims if p.kind == "SPRAM"]     # ram_style = "huge": SPRAM or error
        best["cost"] = math.inf
    for prim in prims:
        if prim.needs_opt and prim.needs_opt not in synth_opts:
            continue
        if prim.single_port and (mem.get("ports", 2) != 1 or reads > 1
                                 or mem.get("async_read") or mem.get("init")):
            continue                # an SPRAM has one port and no initial contents
        if mem.get("async_read") and not prim.async_read:
            continue
        if prim.async_read:
            copies = reads                       # one async read port per primitive
        else:
            copies = math.ceil(reads / prim.read_ports)
        blocks = prim.blocks(w, d, pdp=reads == 1) * copies
        cost = prim.cost * blocks
        # a tie between 32 EBR and one SPRAM goes to the SPRAM: Yosys adds the cost of the
        # EBRs' address decoding and read multiplexing (measured: 8k x 16 -> 1 SPRAM)
        if cost < best["cost"] or (cost == best["cost"] and prim.kind == "SPRAM"):
            best = {"kind": prim.kind, "cell": prim.cell, "blocks": blocks * n,
                    "bits": bits * n, "copies": copies, "cost": cost}
    return best


def _available(board, cell: str) -> int:
    return int(board.resources.get(cell, 0))


def memory_budget(memories: list[dict], board) -> dict:
    """Placement of every memory and the totals against ``board``'s resources.

    Returns ``{"memories": [{name, width, depth, kind, blocks, ...}], "totals": {cell: {"kind",
    "needed", "available", "bits"}}, "fits": bool}``.
    """
    placed, totals = [], {}
    for mem in memories:
        p = place(mem, board.family, board.synth_opts)
        placed.append({**mem, **{k: p[k] for k in ("kind", "cell", "blocks", "copies")}})
        t = totals.setdefault(p["cell"], {"kind": p["kind"], "needed": 0, "bits": 0,
                                          "available": _available(board, p["cell"])})
        t["needed"] += p["blocks"]
        t["bits"] += p["bits"]
    for prim in PRIMITIVES[board.family]:
        totals.setdefault(prim.cell, {"kind": prim.kind, "needed": 0, "bits": 0,
                                      "available": _available(board, prim.cell)})
    fits = all(t["needed"] <= t["available"] for t in totals.values())
    return {"memories": placed, "totals": totals, "fits": fits}


def _title(family: str, cell: str) -> tuple[str, str]:
    for prim in PRIMITIVES[family]:
        if prim.cell == cell:
            return prim.title, prim.kind
    return FF_CELL[family][1], "FF"


def check_fit(memories: list[dict], board) -> dict:
    """:func:`memory_budget`, raising :class:`FitError` with one line for the first resource
    that is short: ``<memory> needs N <unit> but the <board> has M``."""
    budget = memory_budget(memories, board)
    short = [(c, t) for c, t in budget["totals"].items() if t["needed"] > t["available"]]
    short.sort(key=lambda ct: ct[1]["kind"] == "FF")       # block RAM first, flip-flops last
    for cell, t in short:
        title, unit = _title(board.family, cell)
        worst = max((m for m in budget["memories"] if m["cell"] == cell),
                    key=lambda m: m["blocks"])
        has = f"{t['available']:,}" + (" logic cells" if cell == "ICESTORM_LC" else "")
        raise FitError(f"{title} needs {t['needed']:,} {unit} but the {board.title} has {has} "
                       f"(largest: {worst['name']}, {worst['depth']:,} x {worst['width']} bit, "
                       f"{worst['blocks']:,} {unit})")
    return budget


def design_memories(core_cls, cfg, lanes: int, design=None) -> list[dict]:
    """The memory list of a board design: ``core_cls.memories(cfg, lanes)`` (names prefixed
    ``core.``) plus every other memory of ``design`` (its submodule ``core`` left out)."""
    from hdl_gen.inventory import memory_inventory

    mems = [{**m, "name": f"core.{m['name']}"} for m in core_cls.memories(cfg, lanes)]
    if design is not None:
        mems += memory_inventory(design, skip=[("core",)])
    return mems
