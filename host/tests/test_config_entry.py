"""A bad config entering through the link is BAD_CONFIG (never an ACK, never an exception out of
the device), with the emulator's state unchanged; the issue-17 cases one by one."""
from __future__ import annotations

import json

import pytest

from golden.config import tiny_config
from host import protocol as P
from host.link.emulator import EmulatorDevice
from host.protocol import Cmd, ErrorCode, Rsp

GOOD = tiny_config().to_dict()


def _send(dev, cfg_dict, seq):
    tail = json.dumps(cfg_dict, sort_keys=True, separators=(",", ":")).encode()
    out = P.Deframer().feed(dev.receive(P.encode_frame(
        Cmd.WRITE_CONFIG, seq, P.pack(Cmd.WRITE_CONFIG, {}, tail=tail))))
    assert len(out) == 1, out
    return out[0]


@pytest.mark.parametrize("field,value", [
    ("layers", [16.5, 8, 4]), ("theta", "8"), ("leak_shift", 1.5), ("T", 4.5), ("T", True),
    ("T", "4"), ("layers", [16, 8]), ("gamma", [8, None]), ("seed", -1), ("reset", 0),
])
def test_write_config_rejects_badly_typed_values(field, value):
    dev = EmulatorDevice()
    assert _send(dev, GOOD, 1).op == Rsp.ACK
    cfg_before = dev.core.cfg if getattr(dev, "core", None) is not None else None
    bad = dict(GOOD, **{field: value})
    rsp = _send(dev, bad, 2)
    assert rsp.op == Rsp.ERROR
    v, _, _ = P.unpack(Rsp.ERROR, rsp.payload)
    assert ErrorCode(v["code"]) == ErrorCode.BAD_CONFIG
    if cfg_before is not None:
        assert dev.core.cfg == cfg_before                       # still the good config
    assert _send(dev, GOOD, 3).op == Rsp.ACK                     # and the device still answers
