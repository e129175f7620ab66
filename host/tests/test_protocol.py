"""Frame format, CRC, payload layouts, element codecs, the streaming deframer, and the docs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.config import NetConfig, tiny_config
from host import protocol as P
from host.protocol import Cmd, ErrorCode, Mem, Reg, Rsp

ROOT = Path(__file__).resolve().parents[2]


def test_crc_is_ccitt_false_and_matches_amaranth_catalog():
    assert P.crc16(b"123456789") == P.CRC16.check == 0x29B1
    from amaranth.lib.crc import catalog

    alg = getattr(catalog, P.CRC16.amaranth_name)
    assert (alg.crc_width, alg.polynomial, alg.initial_crc, alg.reflect_input,
            alg.reflect_output, alg.xor_output) == (P.CRC16.width, P.CRC16.poly, P.CRC16.init,
                                                    P.CRC16.refin, P.CRC16.refout,
                                                    P.CRC16.xorout)


def test_frame_bytes_and_residue():
    f = P.encode_frame(Cmd.RUN, 7, b"\x00\x08")
    assert f[:2] == b"\xA5\x5A" and f[2] == Cmd.RUN and f[3] == 7 and f[4:6] == b"\x00\x02"
    assert len(f) == P.OVERHEAD + 2
    assert P.crc16(f[2:]) == P.CRC16.residue == 0       # the gateware's check


def test_importable_without_numpy():
    code = "import sys, host.protocol; assert 'numpy' not in sys.modules, 'numpy imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


frames = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))


@given(st.lists(frames, max_size=6), st.data())
@settings(max_examples=150, deadline=None)
def test_deframer_round_trip_any_chunking(fs, data):
    stream = b"".join(P.encode_frame(*f) for f in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    for rescan in (True, False):
        d = P.Deframer(rescan=rescan)
        out = []
        for a, b in zip([0] + cuts, cuts + [len(stream)]):
            out += d.feed(stream[a:b])
        assert [(x.op, x.seq, x.payload) for x in out] == [tuple(f) for f in fs]
        assert d.idle() == [] and d.garbage == 0


@given(st.binary(max_size=200), st.lists(frames, min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_host_deframer_resynchronises_after_garbage(garbage, fs):
    d = P.Deframer(rescan=True)
    out = d.feed(garbage + b"".join(P.encode_frame(*f) for f in fs)) + d.idle()
    got = [(x.op, x.seq, x.payload) for x in out if isinstance(x, P.Frame)]
    assert got[-len(fs):] == [tuple(f) for f in fs]


@given(st.binary(max_size=200).map(lambda g: g.replace(b"\xA5", b"\x00")),
       st.lists(frames, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_device_deframer_skips_garbage_without_sync(garbage, fs):
    d = P.Deframer(rescan=False)
    out = d.feed(garbage + b"".join(P.encode_frame(*f) for f in fs))
    assert [(x.op, x.seq, x.payload) for x in out] == [tuple(f) for f in fs]
    assert d.garbage == len(garbage)


def test_deframer_errors():
    good = P.encode_frame(Cmd.LABEL, 3, b"\x00\x01")
    bad = bytearray(good)
    bad[7] ^= 0x10
    d = P.Deframer(rescan=False)
    assert d.feed(bytes(bad) + good) == [P.FrameError(ErrorCode.CRC, Cmd.LABEL, 3),
                                         P.Frame(Cmd.LABEL, 3, b"\x00\x01", P.crc16(good[2:-2]))]
    assert d.feed(b"\xA5\x5A\x07\x09\xFF\xFF") == [P.FrameError(ErrorCode.TOO_LONG, 7, 9)]
    assert d.feed(good[:-3]) == [] and d.in_frame
    assert d.idle() == [P.FrameError(ErrorCode.TRUNCATED, Cmd.LABEL, 3)]
    assert d.feed(good)[0].op == Cmd.LABEL
    # a frame hidden in a truncated one is found by the host's rescan
    h = P.Deframer(rescan=True)
    assert h.feed(good[:5] + good) == []          # LEN of the first swallows the second
    out = h.idle()
    assert out[0].code == ErrorCode.TRUNCATED and out[1] == P.Frame(Cmd.LABEL, 3, b"\x00\x01",
                                                                    P.crc16(good[2:-2]))


def _field_values(draw, fields):
    return {f.name: draw(st.integers(-(1 << (8 * f.size - 1)) if f.signed else 0,
                                     (1 << (8 * f.size - (1 if f.signed else 0))) - 1))
            for f in fields}


ALL_LAYOUTS = ([(op, None, lay) for op, lay in P.CMD_LAYOUTS.items()]
               + [(op, None, lay) for op, lay in P.RSP_LAYOUTS.items()]
               + [(Rsp.ACK, c, lay) for c, lay in P.ACK_LAYOUTS.items()])


@pytest.mark.parametrize("op,ack_of,layout", ALL_LAYOUTS,
                         ids=[f"{P.Cmd(c).name if c else ''}{getattr(o, 'name', o)}"
                              for o, c, _ in ALL_LAYOUTS])
@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_payload_round_trip(op, ack_of, layout, data):
    values = _field_values(data.draw, layout.fields)
    items = [tuple(_field_values(data.draw, layout.item).values())
             for _ in range(data.draw(st.integers(0, 4)))] if layout.item else []
    tail = data.draw(st.binary(max_size=40)) if layout.tail else b""
    payload = P.pack(op, values, items, tail, ack_of=ack_of)
    assert layout.length_ok(len(payload))
    frame = P.Deframer().feed(P.encode_frame(op, 1, payload))[0]
    assert P.unpack(op, frame.payload, ack_of=ack_of) == (values, items, tail)


def test_layout_offsets_and_length_checks():
    lay = P.CMD_LAYOUTS[Cmd.WRITE_MEM]
    assert [lay.offset(n) for n in ("mem", "layer", "offset", "count")] == [0, 1, 2, 6]
    assert lay.fixed_size == 8
    assert P.RSP_LAYOUTS[Rsp.FLIPS].item_size == 6
    assert not P.CMD_LAYOUTS[Cmd.LABEL].length_ok(3)
    with pytest.raises(P.PayloadLengthError):
        P.unpack(Cmd.RUN, b"\x00")
    with pytest.raises(P.PayloadLengthError):
        P.unpack(Rsp.FLIPS, b"\x00" * 7)
    with pytest.raises(P.ProtocolError):
        P.pack(Cmd.LABEL, {"label": 1 << 16})


@pytest.mark.parametrize("cfg", [tiny_config(), NetConfig(),
                                 tiny_config(momentum_bits=12, v_bits=40, membrane_bits=20)],
                         ids=["tiny", "default", "wide"])
@given(data=st.data())
@settings(max_examples=20, deadline=None)
def test_element_codec_round_trip(cfg, data):
    for mem in Mem:
        for layer in range(P.mem_layers(cfg, mem)):
            size = P.mem_size(cfg, mem, layer)
            n = data.draw(st.integers(1, min(size, 64)))
            fmts = [P.mem_format(cfg, mem, a) for a in range(n)]
            words = np.array([data.draw(st.integers(f.lo, f.hi)) for f in fmts], np.int64)
            fmt = fmts[0]
            blob = P.encode_elements(fmt, words)
            assert len(blob) == fmt.data_size(n)
            assert np.array_equal(P.decode_elements(fmt, blob, n), words)


def test_memory_map_sizes():
    cfg = NetConfig()
    assert P.mem_size(cfg, Mem.WEIGHT, 0) == 128 * 256 and P.mem_size(cfg, Mem.WEIGHT, 2) == 0
    assert P.mem_size(cfg, Mem.THETA, 1) == 0 and P.mem_size(cfg, Mem.BIAS, 1) == 10
    assert P.mem_size(cfg, Mem.V, 1) == cfg.T
    assert P.mem_size(cfg, Mem.REG, 0) == Reg.GAMMA + 2
    assert P.mem_format(cfg, Mem.MOMENTUM).nbytes == 1 and P.mem_format(cfg, Mem.V).nbytes == 4
    assert P.score_bytes(cfg) == 4
    assert P.config_crc(cfg) == P.config_crc(NetConfig.from_json(P.config_bytes(cfg).decode()))


def test_docs_list_every_code():
    """docs/protocol.md has a table row for every opcode, error code, memory and register."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    rows = set(re.findall(r"^\|\s*`?(0x[0-9A-Fa-f]{2}|\d+)`?\s*\|\s*`?([A-Z_]+)`?", doc, re.M))
    rows = {(int(v, 0), n) for v, n in rows}
    for enum in (Cmd, Rsp, ErrorCode, Mem, Reg):
        for m in enum:
            assert (int(m), m.name) in rows, f"docs/protocol.md lacks {enum.__name__}.{m.name}"
    for name in ("MAX_PAYLOAD", "MAX_BATCH_EVENTS", "CRC-16/CCITT-FALSE"):
        assert name in doc
    assert str(P.MAX_PAYLOAD) in doc and str(P.MAX_BATCH_EVENTS) in doc
