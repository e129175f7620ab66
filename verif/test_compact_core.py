"""CompactCore (hdl_gen/compact_core.py) without simulation: it elaborates for every lane count
the architecture promises (P = 1 .. 32), BSO and T-BSO; its memory list is the elaborated one
with the synapse memory single-port, SPRAM-able and without initial contents; bad lanes are a
clear error. The behaviour is checked against golden in verif/test_core.py (``compact_*``)."""
from __future__ import annotations

import pytest
from golden.config import DEFAULT, tiny_config
from hdl_gen.compact.memmap import MemoryMap
from hdl_gen.compact_core import CompactCore
from hdl_gen.core import Core

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("optimizer", ["bso", "tbso"])
def test_elaborates(lanes, optimizer):
    cfg = tiny_config(optimizer=optimizer, layers=(16, 40, 4))    # 40: a partial last word
    core = CompactCore(cfg, lanes=lanes)
    assert core.signature == Core(cfg, lanes=max(2, lanes)).signature
    mems = {m["name"]: m for m in CompactCore.memories(cfg, lanes)}     # elaborates the core
    mp = MemoryMap(cfg, lanes)
    syn = mems["syn"]
    assert (syn["ports"], syn["style"], syn["init"]) == (1, "huge", False)
    assert (syn["width"], syn["depth"]) == (lanes * (1 + cfg.momentum_bits), mp.syn_depth)
    assert mp.syn_depth == sum(n * -(-p // lanes) for n, p in zip(cfg.layers, cfg.layers[1:]))


def test_digits_memory_map():
    """The digits network at P = 2: weights + momenta in one 18-bit word per 2 synapses, every
    other memory at most 384 deep (the traces of 128 inputs and 256 hidden neurons)."""
    mp = MemoryMap(DEFAULT, 2)
    assert (mp.syn_width, mp.syn_depth) == (18, 128 * 128 + 256 * 5)
    assert max(r["depth"] for r in mp.table() if r["name"] != "syn") == 384


@pytest.mark.parametrize("lanes", [0, 3, 6, -2])
def test_bad_lanes(lanes):
    with pytest.raises(ValueError, match=f"lanes={lanes} is invalid: allowed a power of two"):
        CompactCore(tiny_config(), lanes=lanes)
