"""Fuzz bench (issue 17): seeded malformed traffic from :mod:`verif.fuzz`.

* ``test_fuzz_emulator``: the reference device (:class:`host.link.emulator.EmulatorDevice`,
  fixed config) takes every fault of :data:`verif.fuzz.FAULTS` in v1 and v2 sessions, over
  10,000 frames in all; no fault changes its state, the probe after each fault is answered, and
  every fault class was met and answered with its error code.
* ``test_fuzz_rtl``: the board top (UART, deframer, executor, framer, Core) on Icarus and
  Verilator takes a v1 fuzz session of at least 500 exchanges (the board speaks v1); every
  answer equals the reference's byte for byte. ``python -m verif.soak`` runs longer sessions.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import pytest

from golden.config import NetConfig
from host import protocol as P
from host.protocol import ErrorCode, Rsp
from verif.fuzz import FAULTS, FuzzSession
from verif.test_link import DIVISOR, REPLAY, case_config
from verif.uart_bridge import CLK_NS, build_board, settle, start_board, uart_models, write_line

RTL_FAULTS = 250           # each fault is followed by a probe, with valid traffic between

#: the error codes each fault must have produced at least once (v2 adds SEQUENCE)
EXPECTED = {"flip": {ErrorCode.CRC}, "truncate": {ErrorCode.TRUNCATED},
            "crc": {ErrorCode.CRC}, "too_long": {ErrorCode.TOO_LONG},
            "opcode": {ErrorCode.UNKNOWN_OPCODE}, "length": {ErrorCode.BAD_LENGTH},
            "range": {ErrorCode.ADDRESS, ErrorCode.RANGE, ErrorCode.OVERSIZE},
            "config": {ErrorCode.CONFIG_MISMATCH}}


def answer_codes(data: bytes) -> set[int]:
    return {P.unpack(Rsp.ERROR, f.payload)[0]["code"]
            for f in P.Deframer(rescan=False).feed(data)
            if isinstance(f, P.Frame) and f.op == Rsp.ERROR}


@pytest.mark.parametrize("case", ["bso", "tbso"])
@pytest.mark.parametrize("version", [1, 2])
def test_fuzz_emulator(case, version):
    cfg, _ = case_config(case)
    s = FuzzSession(cfg, seed=11 + version, version=version, replay_bytes=REPLAY)
    codes = {k: set() for k in FAULTS}
    frames = 0
    for ex in s.exchanges(1300):
        frames += 1
        if ex.what in codes:
            codes[ex.what] |= answer_codes(ex.expect)
    assert frames >= 2500, frames
    for name, want in EXPECTED.items():
        assert want & codes[name], (name, codes[name])
    if version == 2:
        assert ErrorCode.SEQUENCE in codes["sequence"], codes["sequence"]
    assert s.dev.stats["replays" if version == 2 else "frames_ok"] > 0


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_fuzz_rtl(sim):
    from hdl_gen.board_top import BoardTop
    cfg, lanes = case_config("bso")
    top = BoardTop(cfg, lanes=lanes, baud_divisor=DIVISOR, replay_bytes=REPLAY)
    build_board(sim, top, "verif.test_fuzz", testcase="fuzz_matches_emulator", name="fuzz",
                env={"BSNN_CFG": cfg.to_dict(), "BSNN_DIVISOR": DIVISOR,
                     "BSNN_IDLE": top.idle_cycles, "BSNN_FAULTS": RTL_FAULTS})


@cocotb.test()
async def fuzz_matches_emulator(dut):
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    divisor, idle_cycles = int(os.environ["BSNN_DIVISOR"]), int(os.environ["BSNN_IDLE"])
    rng = random.Random(int(os.environ["BSNN_SEED"]))
    session = FuzzSession(cfg, seed=rng.randrange(1 << 30), version=1, replay_bytes=REPLAY)
    await start_board(dut)
    src, sink = uart_models(dut, divisor)
    byte_ns = 10 * divisor * CLK_NS
    n = 0
    for ex in session.exchanges(int(os.environ["BSNN_FAULTS"])):
        await write_line(dut, src, ex.data, byte_ns, rng, gaps=0.05 if ex.kind == "w" else 0.0)
        await settle(dut, src, sink, 4 * idle_cycles + 4_000_000 // divisor)
        got = bytes(sink.read_nowait())
        n += 1
        if got != ex.expect:
            feed = P.Deframer(rescan=False).feed
            raise AssertionError(f"exchange {n} ({ex.what}, {ex.data[:24].hex()}): board sent "
                                 f"{feed(got)} {got[:64].hex()}, emulator {feed(ex.expect)} "
                                 f"{ex.expect[:64].hex()}")
    assert n >= 500, n
    dut._log.info("%d exchanges identical to the emulator (%s)", n, session.counts)
