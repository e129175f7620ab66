"""Protocol v2 definitions: SAMPLE step records (encode/decode round trip, the host's choice of
the shorter form, splitting), the v2 SYNC/STATUS layouts, and range checks of every encoder."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.config import NetConfig
from host import protocol as P
from host.protocol import Cmd, ErrorCode, Rsp, SampleFlags, StepFlags

ROOT = Path(__file__).resolve().parents[2]


def decode_all(payloads, n_in, T):
    """Replay the payloads as a device does: the union of each step's records."""
    ev = np.zeros((T, n_in), bool)
    t_next, open_step = 0, False
    for k, pl in enumerate(payloads):
        v, _, tail = P.unpack(Cmd.SAMPLE, pl)
        assert bool(v["flags"] & SampleFlags.CONTINUE) == (k > 0)
        assert v["t0"] == (t_next if k else 0)
        recs = P.decode_steps(tail, n_in, T, v["t0"])
        for t, idx, more in recs:
            ev[t, idx] = True
        t_next = recs[-1][0] + (0 if recs[-1][2] else 1)
        open_step = recs[-1][2]
    assert t_next == T and not open_step
    return ev


@given(st.integers(1, 12), st.integers(1, 2000), st.floats(0, 1), st.integers(0, 2**32 - 1),
       st.sampled_from([P.MAX_PAYLOAD, 64, 40]))
@settings(max_examples=120, deadline=None)
def test_encode_sample_round_trip(T, n_in, density, seed, max_payload):
    rng = np.random.default_rng(seed)
    ev = rng.random((T, n_in)) < density * density
    pls = P.encode_sample(ev, label=3, flags=SampleFlags.LEARN, max_payload=max_payload)
    assert all(len(p) <= max_payload for p in pls)
    assert np.array_equal(decode_all(pls, n_in, T), ev)
    v, _, _ = P.unpack(Cmd.SAMPLE, pls[0])
    assert v == {"flags": SampleFlags.LEARN, "label": 3, "t0": 0}


def test_host_picks_the_shorter_form():
    n_in = 128                                   # bitmap 16 bytes
    ev = np.zeros((3, n_in), bool)
    ev[0, :7] = True                             # 7 indices = 14 bytes < 16: list
    ev[1, :8] = True                             # 16 = 16: the tie goes to the bitmap
    ev[2, ::2] = True                            # 64 events: bitmap
    (pl,) = P.encode_sample(ev)
    _, _, tail = P.unpack(Cmd.SAMPLE, pl)
    heads = []
    pos = 0
    while pos < len(tail):
        h = int.from_bytes(tail[pos:pos + 2], "big")
        heads.append(h)
        pos += 2 + (16 if h & StepFlags.BITMAP else 2 * (h & P.STEP_COUNT_MASK))
    assert heads == [7, StepFlags.BITMAP, StepFlags.BITMAP]
    assert len(pl) == 4 + (2 + 14) + 2 * (2 + 16)
    v, _, _ = P.unpack(Cmd.SAMPLE, pl)
    assert v["label"] == P.NO_LABEL


def test_big_steps_split_with_more_and_continue():
    n_in, T = 20000, 3                           # bitmap 2500 bytes: never fits a frame
    ev = np.zeros((T, n_in), bool)
    ev[1, :700] = True                           # > MAX_BATCH_EVENTS and > one frame
    pls = P.encode_sample(ev)
    assert len(pls) == 2
    recs = [P.decode_steps(P.unpack(Cmd.SAMPLE, p)[2], n_in, T, P.unpack(Cmd.SAMPLE, p)[0]["t0"])
            for p in pls]
    # whole records are packed greedily: the second 256-index record does not fit the first frame
    assert [(t, len(i), m) for t, i, m in recs[0]] == [(0, 0, False), (1, 256, True)]
    assert [(t, len(i), m) for t, i, m in recs[1]] == [(1, 256, True), (1, 188, False),
                                                        (2, 0, False)]
    assert P.unpack(Cmd.SAMPLE, pls[1])[0]["t0"] == 1
    assert np.array_equal(decode_all(pls, n_in, T), ev)


@pytest.mark.parametrize("tail,code,arg", [
    (b"", ErrorCode.BAD_LENGTH, 4),
    (b"\x00", ErrorCode.BAD_LENGTH, 5),
    (b"\x00\x02\x00\x01", ErrorCode.BAD_LENGTH, 8),            # 2 indices announced, 1 there
    (b"\x80\x01" + bytes(2), ErrorCode.RANGE, 0x8001),         # bitmap with a count
    ((257).to_bytes(2, "big") + bytes(514), ErrorCode.OVERSIZE, 257),
    (b"\x00\x01\x00\x10", ErrorCode.ADDRESS, 16),              # index 16 >= n_in
    (b"\x80\x00\x00\x80", ErrorCode.ADDRESS, 15),              # padding bit 15 set
    (b"\x00\x00" * 3, ErrorCode.ADDRESS, 2),                   # a third step, T = 2
])
def test_decode_steps_errors(tail, code, arg):
    with pytest.raises(P.StepError) as e:
        P.decode_steps(tail, 15, 2, 0)
    assert (e.value.code, e.value.arg) == (code, arg)


@pytest.mark.parametrize("kw,match", [
    ({"events": np.zeros((2, 3, 4))}, "shape"),
    ({"events": np.full((2, 3), 2)}, "binary"),
    ({"events": np.zeros((2, 3)), "flags": 0x40}, "flags"),
    ({"events": np.zeros((2, 3)), "flags": SampleFlags.CONTINUE}, "flags"),
    ({"events": np.zeros((2, 3)), "label": P.NO_LABEL}, "label"),
    ({"events": np.zeros((2, 3)), "label": -1}, "label"),
    ({"events": np.zeros((2, 3)), "label": 1.0}, "label"),
    ({"events": np.zeros((2, 3)), "label": True}, "label"),
    ({"events": np.zeros((2, 3)), "flags": SampleFlags.LEARN}, "LEARN needs a label"),
    ({"events": np.zeros((2, 3)), "max_payload": 5}, "no room"),
])
def test_encode_sample_refuses(kw, match):
    with pytest.raises(P.ProtocolError, match=match):
        P.encode_sample(kw.pop("events"), **kw)


V2_LAYOUTS = [(Cmd.SYNC, None, P.SYNC2_LAYOUT), (Rsp.ACK, Cmd.SYNC, P.SYNC2_ACK_LAYOUT),
              (Rsp.STATUS, None, P.STATUS2_LAYOUT)]
ALL = ([(op, None, lay, 1) for op, lay in P.CMD_LAYOUTS.items()]
       + [(op, None, lay, 1) for op, lay in P.RSP_LAYOUTS.items()]
       + [(Rsp.ACK, c, lay, 1) for c, lay in P.ACK_LAYOUTS.items()]
       + [(op, c, lay, 2) for op, c, lay in V2_LAYOUTS])


def test_v2_layouts():
    assert P.SYNC2_LAYOUT.fixed_size == P.SYNC2_SIZE == 7
    assert P.SYNC2_ACK_LAYOUT.fixed_size == 9
    assert P.STATUS2_LAYOUT.fixed_size == 72 and P.STATUS_LAYOUT.fixed_size == 60
    assert P.STATUS2_LAYOUT.offset("window") == 60 and P.STATUS2_LAYOUT.offset("replays") == 68
    assert P.layout(Cmd.SYNC, version=2) is P.SYNC2_LAYOUT
    assert P.layout(Cmd.SYNC) is P.CMD_LAYOUTS[Cmd.SYNC]
    assert P.layout(Rsp.RESULT, version=2) is P.RSP_LAYOUTS[Rsp.RESULT]
    assert Rsp.RESULT in P.TERMINAL and ErrorCode.SEQUENCE in P.TRANSPORT_ERRORS
    assert P.RSP_LAYOUTS[Rsp.RESULT].fixed_size == 16
    assert P.CMD_LAYOUTS[Cmd.SAMPLE].fixed_size == 4


@pytest.mark.parametrize("op,ack_of,lay,version", ALL,
                         ids=[f"v{v}-{P.Cmd(c).name if c else ''}{getattr(o, 'name', o)}"
                              for o, c, _, v in ALL])
@given(data=st.data())
@settings(max_examples=15, deadline=None)
def test_every_field_is_range_checked(op, ack_of, lay, version, data):
    """No silent wrapping: one field just outside its range (or not an integer) is refused."""
    fields = lay.fields or lay.item
    if not fields:
        return
    good = {f.name: data.draw(st.integers(f.lo, f.hi)) for f in fields}
    f = data.draw(st.sampled_from(fields))
    bad = dict(good)
    bad[f.name] = data.draw(st.sampled_from([f.lo - 1, f.hi + 1, 1.0, True, "1", None]))
    if lay.fields:
        P.pack(op, good, ack_of=ack_of, version=version)
        with pytest.raises(P.ProtocolError, match=f.name):
            P.pack(op, bad, ack_of=ack_of, version=version)
    else:
        P.pack(op, items=[tuple(good.values())], ack_of=ack_of, version=version)
        with pytest.raises(P.ProtocolError, match=f.name):
            P.pack(op, items=[tuple(bad.values())], ack_of=ack_of, version=version)


@given(st.integers(1, 40), st.booleans(), st.integers(-(1 << 45), 1 << 45))
@settings(max_examples=100, deadline=None)
def test_encode_elements_refuses_words_that_do_not_fit(bits, signed, value):
    fmt = P.ElementFormat(bits, signed, False, 0, 0)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if lo <= value <= hi:
        assert P.decode_elements(fmt, P.encode_elements(fmt, [value]), 1).tolist() == [value]
    else:
        with pytest.raises(P.ProtocolError, match="does not fit"):
            P.encode_elements(fmt, [value])


def test_encode_elements_refuses_floats_and_non_bits():
    with pytest.raises(P.ProtocolError, match="integers"):
        P.encode_elements(P.mem_format(NetConfig(), P.Mem.BIAS), [1.5])
    with pytest.raises(P.ProtocolError, match="does not fit"):
        P.encode_elements(P.mem_format(NetConfig(), P.Mem.WEIGHT), [0, 2])


def test_frame_and_record_encoders_refuse():
    with pytest.raises(P.ProtocolError):
        P.encode_frame(Cmd.SAMPLE, 256)
    with pytest.raises(P.ProtocolError, match="outside"):
        P.step_record([5], 5)
    with pytest.raises(P.ProtocolError, match="do not fit"):
        P.step_record(range(P.STEP_COUNT_MASK + 1), 1 << 16)
    assert P.step_record([3, 1], 8) == b"\x00\x02\x00\x01\x00\x03"
    assert P.step_record([3, 1], 8, bitmap=True, more=True) == b"\xC0\x00\x0A"


def test_docs_describe_v2():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    rows = set(re.findall(r"^\|\s*`?(0x[0-9A-Fa-f]{2}|\d+)`?\s*\|\s*`?([A-Z_]+)`?", doc, re.M))
    rows = {(int(v, 0), n) for v, n in rows}
    for m in SampleFlags:
        if m.name != "ALL":
            assert (int(m), m.name) in rows, f"docs/protocol.md lacks SampleFlags.{m.name}"
    for name in ("BITMAP", "MORE", "SYNC2_LAYOUT", "STATUS2_LAYOUT", "next_seq", "credit",
                 "window", "KEEP_STATE", "NO_LABEL", "MAX_WINDOW"):
        assert name in doc, name
    for name, lay in (("window", P.STATUS2_LAYOUT), ("replays", P.STATUS2_LAYOUT)):
        assert re.search(rf"^\| {lay.offset(name)} \| {name} \|", doc, re.M), name
