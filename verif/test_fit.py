"""The fit check before synthesis (hdl_gen.flow.fit): the placement rules, the one-line refusal
of a design that cannot fit (no synthesis, no file written), a design that fits passing, and
the estimate against real builds (docs/performance.json, written by ``python -m hdl_gen report
--json``; the end-to-end build in verif/test_fpga_build.py checks it on its own build too).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from golden.config import NetConfig, tiny_config
from hdl_gen.architectures import core_class
from hdl_gen.flow.boards import get_board
from hdl_gen.flow.fit import FitError, check_fit, design_memories, memory_budget, place
from hdl_gen.flow.tops import top_factory

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _mem(width, depth, **kw):
    return {"name": "m", "width": width, "depth": depth, "ports": 2, **kw}


def test_place_rules():
    ice, ecp = ("ice40", ("-dsp",)), ("ecp5", ())
    # EBR geometries 256x16 .. 2048x2: the cheapest split
    assert place(_mem(16, 256), *ice)["blocks"] == 1
    assert place(_mem(8, 2048), *ice)["blocks"] == 4           # 4 x 512x8 (or 1024x4 ...)
    assert place(_mem(1, 2048), *ice)["blocks"] == 1
    # a second synchronous read port is a second copy; shallow memories stay in flip-flops
    assert place(_mem(16, 1024, read_ports=2), *ice)["blocks"] == 8
    assert place(_mem(72, 8, read_ports=2), *ice)["kind"] == "FF"
    # no combinational read on the iCE40 block RAM: flip-flops; LUT RAM on the ECP5
    assert place(_mem(18, 10, async_read=True, read_ports=0), *ice)["kind"] == "FF"
    p = place(_mem(18, 10, async_read=True, read_ports=0), *ecp)
    assert (p["kind"], p["blocks"]) == ("LUTRAM", 5)
    # SPRAM: a single-port 16k x 16 memory with -spram, never a dual-port one
    sp = _mem(16, 16384, ports=1)
    assert place(sp, "ice40", ("-dsp", "-spram"))["kind"] == "SPRAM"
    assert place(sp, "ice40", ("-dsp",))["kind"] == "EBR"              # 64 EBR without -spram
    assert place(_mem(16, 16384), "ice40", ("-spram",))["kind"] == "EBR"
    # ... and like Yosys (cost 2048 vs 64 per EBR), only when it would take 32 EBR or more
    # (measured: 4k x 16 -> 16 EBR, 8k x 16 and 16k x 8 -> 1 SPRAM; hdl_gen/flow/spram.py)
    assert place(_mem(16, 4096, ports=1), "ice40", ("-spram",))["kind"] == "EBR"
    assert place(_mem(16, 8192, ports=1), "ice40", ("-spram",))["kind"] == "SPRAM"
    assert place(_mem(8, 16384, ports=1), "ice40", ("-spram",))["kind"] == "SPRAM"
    assert place(_mem(36, 16384, ports=1), "ice40", ("-spram",))["blocks"] == 3
    # an SPRAM cannot be initialised: a memory with initial contents stays in EBR
    assert place(_mem(16, 16384, ports=1, init=True), "ice40", ("-spram",))["kind"] == "EBR"
    # DP16KD: 1k x 18 .. 16k x 1, 512 x 36 with one read port
    assert place(_mem(36, 512), *ecp)["blocks"] == 1
    assert place(_mem(64, 2048), *ecp)["blocks"] == 8                  # 8 x 2048x9
    assert place(_mem(64, 2048, read_ports=2), *ecp)["blocks"] == 16


def test_cannot_fit_is_one_line_before_any_work(tmp_path, capsys):
    """The parallel core with the default digits network on the iCEBreaker (its 8-bit momenta
    alone need 64 EBR in dual-port memories, which cannot be SPRAM; the UP5K has 30 EBR,
    whatever the link): refused at once, exit 2, nothing written."""
    from golden.config import DEFAULT
    from hdl_gen.__main__ import main
    cfg = tmp_path / "digits.json"
    cfg.write_text(DEFAULT.to_json())
    out = tmp_path / "b"
    assert main(["build", "--board", "icebreaker", "--config", str(cfg), "--lanes", "8",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.fullmatch(r"error: block RAM \(SB_RAM40_4K EBR\) needs [\d,]+ EBR but the "
                        r"iCEBreaker \(iCE40 UP5K-SG48\) has 30 \(largest: .*\)", err[0]), err
    assert not out.exists()


def _budget(board: str, cfg, lanes: int, arch: str = "parallel"):
    b = get_board(board)
    design = top_factory("board", arch, lanes=lanes)(cfg, b.f_target)
    return b, design_memories(core_class(arch), cfg, lanes, design)


def test_fits_passes():
    b, mems = _budget("ulx3s-85f", tiny_config(), 2)
    budget = check_fit(mems, b)
    assert budget["fits"]
    assert 0 < budget["totals"]["DP16KD"]["needed"] <= 208
    # the same list on the UP5K does not fit: the check says so instead of passing
    ib = get_board("icebreaker")
    assert not memory_budget(mems, ib)["fits"]
    with pytest.raises(FitError, match="needs .* EBR but the iCEBreaker"):
        check_fit(mems, ib)


def test_link_memories_on_the_icebreaker():
    """The link of the iCEBreaker board top, with the board's link parameters as the build
    passes them: 10 EBR (RX FIFO 3, deframer 2, replay store 4, executor scratch 1; it was 26
    with the default 8 KiB replay store, 2 KiB FIFO and three executor memories)."""
    from hdl_gen.flow.build import board_design_kw
    b = get_board("icebreaker")
    kw = board_design_kw(b, "board", "parallel", {"lanes": 2})
    assert kw["replay_bytes"] == b.link.replay_bytes < 8192
    cfg = NetConfig.default_for("bso", layers=(128, 256, 10), momentum_bits=8)
    design = top_factory("board", "parallel", **kw)(cfg, b.f_core)
    link = [m for m in design_memories(core_class("parallel"), cfg, 2, design)
            if not m["name"].startswith("core.")]
    ebr = {m["name"]: place(m, b.family, b.synth_opts)["blocks"] for m in link}
    assert ebr == {"rxq.storage": 3, "deframer.buf": 2, "framer.buf": 4,
                   "executor.scratch": 1}, ebr


def test_estimate_matches_real_builds():
    """Block RAM of the measured builds in docs/performance.json (nextpnr utilisation) against
    the estimate for the same config, lanes and architecture: within 5 % (+-2 blocks)."""
    figures = json.loads((ROOT / "docs" / "performance.json").read_text())
    cells = {"ice40": ("ICESTORM_RAM",), "ecp5": ("DP16KD", "TRELLIS_RAMW")}
    compared = []
    for name, rep in figures["boards"].items():
        if not rep or not rep.get("utilization"):
            continue
        board = get_board(rep.get("board", name.split()[0]))
        cfg = NetConfig.from_dict(rep["config"])
        b, mems = _budget(board.name, cfg, rep["design_kw"]["lanes"], rep.get("arch") or "parallel")
        est = memory_budget(mems, b)["totals"]
        for cell in cells[b.family]:
            used = rep["utilization"][cell]["used"]
            assert abs(est[cell]["needed"] - used) <= max(2, 0.05 * used), (name, cell, est, used)
            compared.append((name, cell))
    assert compared
