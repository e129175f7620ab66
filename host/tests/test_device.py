"""The reference device at byte level: every bad frame gets the right ERROR and changes nothing;
retransmissions are replayed, not executed twice."""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import tiny_config
from host import protocol as P
from host.link.emulator import EmulatorDevice
from host.protocol import Cmd, ErrorCode, EventFlags, Mem, Rsp

CFG = tiny_config()                # layers (16, 8, 4), T = 4


def frames(data: bytes):
    out = P.Deframer().feed(data)
    assert all(isinstance(f, P.Frame) for f in out), out
    return out


def command(dev, op, values=None, tail=b"", seq=1):
    return frames(dev.receive(P.encode_frame(op, seq, P.pack(op, values or {}, tail=tail))))


def configured(**kw) -> EmulatorDevice:
    dev = EmulatorDevice(**kw)
    (ack,) = command(dev, Cmd.WRITE_CONFIG, tail=P.config_bytes(CFG))
    assert ack.op == Rsp.ACK
    return dev


def assert_error(out, code, op=None):
    assert len(out) == 1 and out[0].op == Rsp.ERROR, out
    v, _, _ = P.unpack(Rsp.ERROR, out[0].payload)
    assert ErrorCode(v["code"]) == code, (ErrorCode(v["code"]), v)
    if op is not None:
        assert v["op"] == op
    return v


def mem_cmd(mem, layer, offset, count, data=None):
    v = {"mem": mem, "layer": layer, "offset": offset, "count": count}
    return (Cmd.WRITE_MEM, v, data) if data is not None else (Cmd.READ_MEM, v, b"")


# (name, op, values, tail, expected code)
BAD_COMMANDS = [
    ("label out of range", Cmd.LABEL, {"label": 4}, b"", ErrorCode.ADDRESS),
    ("event index out of range", Cmd.EVENTS, {"t": 0, "flags": 0},
     np.array([3, 16], ">u2").tobytes(), ErrorCode.ADDRESS),
    ("event step out of range", Cmd.EVENTS, {"t": 4, "flags": 0}, b"\x00\x01", ErrorCode.ADDRESS),
    ("bitmap too long", Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, b"\x01\x00\x01",
     ErrorCode.BAD_LENGTH),
    ("bitmap wrong size", Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, b"\x01",
     ErrorCode.BAD_LENGTH),
    ("oversize batch", Cmd.EVENTS, {"t": 0, "flags": 0},
     np.zeros(P.MAX_BATCH_EVENTS + 1, ">u2").tobytes(), ErrorCode.OVERSIZE),
    ("odd index list", Cmd.EVENTS, {"t": 0, "flags": 0}, b"\x00", ErrorCode.BAD_LENGTH),
    ("event flags", Cmd.EVENTS, {"t": 0, "flags": 0x80}, b"", ErrorCode.RANGE),
    ("unknown memory", *mem_cmd(9, 0, 0, 1, b"\x00"), ErrorCode.ADDRESS),
    ("layer out of range", *mem_cmd(Mem.MOMENTUM, 2, 0, 1, b"\x00"), ErrorCode.ADDRESS),
    ("theta of the output layer", *mem_cmd(Mem.THETA, 1, 0, 1, b"\x00\x01"), ErrorCode.ADDRESS),
    ("offset past the end", *mem_cmd(Mem.MOMENTUM, 0, 127, 2, b"\x00\x00"), ErrorCode.ADDRESS),
    ("read past the end", *mem_cmd(Mem.V, 0, 2, 3), ErrorCode.ADDRESS),
    ("weight offset unaligned", *mem_cmd(Mem.WEIGHT, 0, 4, 8, b"\xff"), ErrorCode.ADDRESS),
    ("zero count", *mem_cmd(Mem.BIAS, 0, 0, 0, b""), ErrorCode.RANGE),
    ("data length", *mem_cmd(Mem.BIAS, 0, 0, 2, b"\x00\x00"), ErrorCode.BAD_LENGTH),
    ("momentum out of range", *mem_cmd(Mem.MOMENTUM, 0, 0, 2, b"\x05\x80"), ErrorCode.RANGE),
    ("theta zero", *mem_cmd(Mem.THETA, 0, 0, 1, b"\x00\x00"), ErrorCode.RANGE),
    ("register out of range", *mem_cmd(Mem.REG, 0, 1, 1, b"\x00\x00\x00\x40"), ErrorCode.RANGE),
    ("weight padding bits", *mem_cmd(Mem.WEIGHT, 0, 0, 4, b"\xf0"), ErrorCode.RANGE),
    ("learn flag", Cmd.LEARN, {"on": 2}, b"", ErrorCode.RANGE),
    ("outputs mask", Cmd.OUTPUTS, {"mask": 4}, b"", ErrorCode.RANGE),
    ("run zero steps", Cmd.RUN, {"n": 0}, b"", ErrorCode.RANGE),
    ("run past T", Cmd.RUN, {"n": 5}, b"", ErrorCode.RANGE),
    ("bad config", Cmd.WRITE_CONFIG, {}, b'{"layers": [0]}', ErrorCode.BAD_CONFIG),
]


@pytest.mark.parametrize("name,op,values,tail,code", BAD_COMMANDS, ids=[c[0] for c in BAD_COMMANDS])
def test_bad_command_is_rejected_and_changes_nothing(name, op, values, tail, code):
    dev = configured()
    command(dev, Cmd.EVENTS, {"t": 1, "flags": 0}, b"\x00\x02", seq=2)
    command(dev, Cmd.LABEL, {"label": 1}, seq=3)
    before = dev.snapshot()
    assert_error(command(dev, op, values, tail, seq=9), code, op)
    assert _same(dev.snapshot(), before)
    assert dev.stats["cmd_errors"] == 1
    (ack,) = command(dev, Cmd.LABEL, {"label": 2}, seq=10)          # still in step
    assert ack.op == Rsp.ACK


def _same(a, b) -> bool:
    """Deep equality of two snapshots (NumPy arrays compared element-wise)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def good_write():
    return P.encode_frame(Cmd.WRITE_MEM, 5, P.pack(Cmd.WRITE_MEM, {
        "mem": Mem.MOMENTUM, "layer": 0, "offset": 0, "count": 4}, tail=b"\x01\x02\x03\x04"))


@pytest.mark.parametrize("kind", ["crc", "truncated", "too_long", "unknown_opcode",
                                  "response_opcode", "bad_length", "not_configured",
                                  "config_mismatch"])
def test_bad_frame_is_rejected_and_changes_nothing(kind):
    dev = EmulatorDevice(CFG) if kind == "config_mismatch" else \
        EmulatorDevice() if kind == "not_configured" else configured()
    before = dev.snapshot()
    f = bytearray(good_write())
    if kind == "crc":
        f[10] ^= 0x04
        v = assert_error(frames(dev.receive(bytes(f))), ErrorCode.CRC, Cmd.WRITE_MEM)
        assert dev.stats["crc_errors"] == 1
    elif kind == "truncated":
        assert dev.receive(bytes(f[:-3])) == b""
        v = assert_error(frames(dev.idle()), ErrorCode.TRUNCATED, Cmd.WRITE_MEM)
        assert dev.stats["length_errors"] == 1
    elif kind == "too_long":
        out = frames(dev.receive(b"\xA5\x5A\x04\x05" + (P.MAX_PAYLOAD + 1).to_bytes(2, "big")))
        v = assert_error(out, ErrorCode.TOO_LONG, Cmd.WRITE_MEM)
    elif kind == "unknown_opcode":
        v = assert_error(frames(dev.receive(P.encode_frame(0x7E, 5, b"\x01"))),
                         ErrorCode.UNKNOWN_OPCODE, 0x7E)
    elif kind == "response_opcode":
        v = assert_error(frames(dev.receive(P.encode_frame(Rsp.ACK, 5))),
                         ErrorCode.UNKNOWN_OPCODE, Rsp.ACK)
    elif kind == "bad_length":
        v = assert_error(frames(dev.receive(P.encode_frame(Cmd.RUN, 5, b"\x00"))),
                         ErrorCode.BAD_LENGTH, Cmd.RUN)
    elif kind == "not_configured":
        v = assert_error(frames(dev.receive(bytes(f))), ErrorCode.NOT_CONFIGURED)
    else:
        other = P.config_bytes(CFG.replace(seed=2))
        v = assert_error(command(dev, Cmd.WRITE_CONFIG, tail=other), ErrorCode.CONFIG_MISMATCH)
        assert v["arg"] == P.config_crc(CFG.replace(seed=2))
    assert _same(dev.snapshot(), before)
    if kind != "not_configured":        # the device is back in step: the good frame works
        (ack,) = frames(dev.receive(good_write()))
        assert ack.op == Rsp.ACK and ack.seq == 5
        assert dev.core.M[0][:4, 0].tolist() == [1, 2, 3, 4]


def test_no_label_while_learning():
    dev = configured()
    command(dev, Cmd.LEARN, {"on": 1})
    before = dev.snapshot()
    assert_error(command(dev, Cmd.RUN, {"n": 1}, seq=2), ErrorCode.NO_LABEL, Cmd.RUN)
    assert _same(dev.snapshot(), before)


def test_read_larger_than_a_frame_is_oversize():
    from golden.config import NetConfig

    dev = EmulatorDevice(NetConfig())
    assert_error(command(dev, *mem_cmd(Mem.MOMENTUM, 0, 0, P.MAX_PAYLOAD)[:2]),
                 ErrorCode.OVERSIZE, Cmd.READ_MEM)


def _run_sample(dev, seq0=1):
    command(dev, Cmd.RESET_STATE, seq=seq0)
    command(dev, Cmd.LEARN, {"on": 1}, seq=seq0 + 1)
    command(dev, Cmd.LABEL, {"label": 2}, seq=seq0 + 2)
    for t in range(CFG.T):
        command(dev, Cmd.EVENTS, {"t": t, "flags": 0},
                np.arange(t, 16, 2, dtype=">u2").tobytes(), seq=seq0 + 3 + t)
    return P.encode_frame(Cmd.RUN, seq0 + 7, P.pack(Cmd.RUN, {"n": CFG.T}))


def test_retransmission_is_replayed_not_executed():
    dev = configured()
    run = _run_sample(dev)
    first = dev.receive(run)
    after = dev.snapshot()
    assert dev.receive(run) == first                 # same bytes again, nothing re-run
    assert _same(dev.snapshot(), after)
    assert dev.core.step == CFG.T
    # SYNC does not disturb the replay memory; NEW_SESSION clears it
    dev.receive(P.encode_frame(Cmd.SYNC, 0, P.pack(Cmd.SYNC, {"flags": 0, "nonce": 1})))
    assert dev.receive(run) == first
    dev.receive(P.encode_frame(Cmd.SYNC, 0, P.pack(Cmd.SYNC, {"flags": 1, "nonce": 2})))
    assert_error(frames(dev.receive(run)), ErrorCode.RANGE, Cmd.RUN)   # executed: t = T now


def test_no_replay_when_the_response_outgrew_the_buffer():
    dev = configured(replay_bytes=16)
    run = _run_sample(dev)
    out = frames(dev.receive(run))
    assert out[-1].op == Rsp.ACK and sum(len(f.payload) + P.OVERHEAD for f in out) > 16
    before = dev.snapshot()
    assert_error(frames(dev.receive(run)), ErrorCode.NO_REPLAY, Cmd.RUN)
    assert _same(dev.snapshot(), before)


def test_run_reports_spikes_flips_prediction_and_counts():
    dev = configured()
    out = frames(dev.receive(_run_sample(dev)))
    ops = [f.op for f in out]
    assert ops.count(Rsp.SPIKES) == CFG.T * (CFG.n_layers - 1)
    assert ops[-2:] == [Rsp.PREDICTION, Rsp.ACK]
    v, _, _ = P.unpack(Rsp.ACK, out[-1].payload, ack_of=Cmd.RUN)
    nf = sum(len(f.payload) // 6 for f in out if f.op == Rsp.FLIPS)
    assert v["t"] == CFG.T and v["step"] == CFG.T and v["flips"] == nf
    # with reporting off only the counts remain
    dev2 = configured()
    command(dev2, Cmd.OUTPUTS, {"mask": 0})
    out2 = frames(dev2.receive(_run_sample(dev2, seq0=20)))
    assert [f.op for f in out2] == [Rsp.PREDICTION, Rsp.ACK]
    assert out2[-1].payload == out[-1].payload


def test_status_block():
    dev = configured()
    (st,) = command(dev, Cmd.STATUS)
    v, _, _ = P.unpack(Rsp.STATUS, st.payload)
    assert v["version"] == P.PROTOCOL_VERSION and v["flags"] & P.StatusFlags.CONFIGURED
    assert v["config_crc"] == P.config_crc(CFG) and v["max_payload"] == P.MAX_PAYLOAD
    assert v["frames_ok"] == 2


def test_bitmap_padding_bit_is_an_address_error():
    cfg = tiny_config(layers=(12, 8, 4))
    dev = EmulatorDevice(cfg)
    before = dev.snapshot()
    v = assert_error(command(dev, Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, b"\x01\x10"),
                     ErrorCode.ADDRESS, Cmd.EVENTS)
    assert v["arg"] == 12
    assert _same(dev.snapshot(), before)
    (ack,) = command(dev, Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, b"\x01\x08", seq=2)
    assert P.unpack(Rsp.ACK, ack.payload, ack_of=Cmd.EVENTS)[0] == {"t": 0, "active": 2}
