"""Protocol v2 on the emulator: negotiation, windows under the credit, the SEQ/replay rule,
SAMPLE (checks, multi-frame samples, KEEP_STATE), and faults with windows: every sample is
learned exactly once and the end state equals golden's."""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import tiny_config
from golden.core import Core
from golden.stream import run_stream
from host import protocol as P
from host.accelerator import Accelerator, DeviceError
from host.link import EmulatorLink, LinkError
from host.link.emulator import EmulatorDevice
from host.link.faults import FaultyLink
from host.protocol import Cmd, ErrorCode, Rsp, SampleFlags

from .conftest import random_dataset
from .test_accelerator import assert_same_result, assert_same_state


def frames(data: bytes):
    return P.Deframer().feed(data)


def sync2(dev, seq=1, flags=P.SyncFlags.NEW_SESSION, version=2):
    out = frames(dev.receive(P.encode_frame(Cmd.SYNC, 0, P.pack(Cmd.SYNC, {
        "flags": flags, "nonce": 7, "version": version, "next_seq": seq}, version=2))))
    return out[0]


@pytest.mark.parametrize("versions,want,got", [((1, 2), None, 2), ((1,), None, 1),
                                               ((2,), None, 2), ((1, 2), 1, 1), ((2,), 2, 2)])
def test_negotiation(versions, want, got):
    acc = Accelerator(EmulatorLink(versions=versions), version=want)
    assert acc.version == got
    assert acc.status().version == got
    assert (acc.tx.window > 1) == (got == 2)


def test_negotiation_refusals():
    with pytest.raises(LinkError, match="version 1 only"):
        Accelerator(EmulatorLink(versions=(1,)), version=2)
    with pytest.raises(LinkError, match="speaks protocol version 2, host 1"):
        Accelerator(EmulatorLink(versions=(2,)), version=1)
    dev = EmulatorDevice(versions=(1,))          # today's board top: the v2 SYNC is BAD_LENGTH
    (f,) = frames(dev.receive(P.encode_frame(Cmd.SYNC, 0, bytes(7))))
    v, _, _ = P.unpack(Rsp.ERROR, f.payload)
    assert (v["code"], v["op"]) == (ErrorCode.BAD_LENGTH, Cmd.SYNC)
    dev = EmulatorDevice()
    f = sync2(dev, version=3)
    assert P.unpack(Rsp.ERROR, f.payload)[0]["code"] == ErrorCode.RANGE


def test_v2_ack_status_and_sample_needs_v2():
    dev = EmulatorDevice(tiny_config(), window=5, credit=900)
    f = P.encode_frame(Cmd.SAMPLE, 1, P.encode_sample(np.zeros((tiny_config().T, 16)))[0])
    (e,) = frames(dev.receive(f))                # v1 session: SAMPLE is unknown
    assert P.unpack(Rsp.ERROR, e.payload)[0]["code"] == ErrorCode.UNKNOWN_OPCODE
    a = sync2(dev, seq=9)
    v, _, _ = P.unpack(Rsp.ACK, a.payload, ack_of=Cmd.SYNC, version=2)
    assert v == {"nonce": 7, "version": 2, "next_seq": 9, "window": 5, "credit": 900}
    (s,) = frames(dev.receive(P.encode_frame(Cmd.STATUS, 9)))
    st, _, _ = P.unpack(Rsp.STATUS, s.payload, version=2)
    assert (st["version"], st["window"], st["credit"], st["next_seq"]) == (2, 5, 900, 9)


def test_sequence_rule_and_replay_ring():
    cfg = tiny_config()
    dev = EmulatorDevice(cfg, window=4, replay_bytes=200)
    sync2(dev, seq=1)
    x = np.zeros((cfg.T, cfg.layers[0]), bool)
    x[:, :5] = True
    pl = P.encode_sample(x, label=1, flags=SampleFlags.LEARN)[0]
    first = dev.receive(P.encode_frame(Cmd.SAMPLE, 1, pl))
    assert frames(first)[-1].op == Rsp.RESULT
    snap = dev.snapshot()
    assert dev.receive(P.encode_frame(Cmd.SAMPLE, 1, pl)) == first     # replayed, not run
    assert_same_state(snap["state"], dev.snapshot()["state"])
    (e,) = frames(dev.receive(P.encode_frame(Cmd.SAMPLE, 3, pl)))      # 2 is missing
    v, _, _ = P.unpack(Rsp.ERROR, e.payload)
    assert (v["code"], v["arg"]) == (ErrorCode.SEQUENCE, 2)
    assert_same_state(snap["state"], dev.snapshot()["state"])
    for seq in range(2, 7):                                           # ring of 4 keys
        dev.receive(P.encode_frame(Cmd.STATUS, seq))
    (e,) = frames(dev.receive(P.encode_frame(Cmd.SAMPLE, 1, pl)))      # left the ring
    assert P.unpack(Rsp.ERROR, e.payload)[0]["code"] == ErrorCode.SEQUENCE
    (e,) = frames(dev.receive(P.encode_frame(Cmd.STATUS, 3)))          # 3 STATUS > 200 bytes
    assert P.unpack(Rsp.ERROR, e.payload)[0]["code"] == ErrorCode.NO_REPLAY
    assert frames(dev.receive(P.encode_frame(Cmd.STATUS, 6)))[0].op == Rsp.STATUS
    assert dev.stats["replays"] == 3 and dev.stats["seq_errors"] == 2


def _sample_error(cfg, payload, cont_after=None):
    dev = EmulatorDevice(cfg)
    sync2(dev, seq=1)
    seq = 1
    if cont_after is not None:
        dev.receive(P.encode_frame(Cmd.SAMPLE, seq, cont_after))
        seq += 1
    before = dev.snapshot()
    (e,) = frames(dev.receive(P.encode_frame(Cmd.SAMPLE, seq, payload)))
    assert e.op == Rsp.ERROR
    v, _, _ = P.unpack(Rsp.ERROR, e.payload)
    after = dev.snapshot()
    assert_same_state(before["state"], after["state"])
    assert np.array_equal(before["slots"], after["slots"]) and before["t"] == after["t"]
    return v["code"], v["arg"]


def test_sample_checks_in_order():
    cfg = tiny_config()                          # 16 inputs, 4 outputs, T = 4
    T = cfg.T
    hdr = P.CMD_LAYOUTS[Cmd.SAMPLE]
    empty = b"\x00\x00" * T

    def pl(flags=0, label=P.NO_LABEL, t0=0, steps=empty):
        return hdr.pack({"flags": flags, "label": label, "t0": t0}, tail=steps)

    cases = [
        (b"\x00\x00\x00", ErrorCode.BAD_LENGTH, 3),
        (pl(flags=0x40), ErrorCode.RANGE, 0x40),
        (pl(label=4), ErrorCode.ADDRESS, 4),
        (pl(flags=SampleFlags.LEARN), ErrorCode.NO_LABEL, 0),
        (pl(t0=1), ErrorCode.RANGE, 1),
        (pl(flags=SampleFlags.CONTINUE, t0=1), ErrorCode.RANGE, 1),
        (pl(steps=b""), ErrorCode.BAD_LENGTH, 4),
        (pl(steps=b"\x00\x01\x00\x10"), ErrorCode.ADDRESS, 16),
        (pl(steps=empty + b"\x00\x00"), ErrorCode.ADDRESS, T),
        (pl(steps=b"\x80\x00\x00"), ErrorCode.BAD_LENGTH, 7),
    ]
    for payload, code, arg in cases:
        assert _sample_error(cfg, payload) == (code, arg), payload
    dev = EmulatorDevice()                       # not configured
    sync2(dev)
    (e,) = frames(dev.receive(P.encode_frame(Cmd.SAMPLE, 1, pl())))
    assert P.unpack(Rsp.ERROR, e.payload)[0]["code"] == ErrorCode.NOT_CONFIGURED
    # CONTINUE with the wrong t0 after a half sample
    half = pl(steps=b"\x00\x00")
    assert _sample_error(cfg, pl(flags=SampleFlags.CONTINUE, t0=2, steps=b"\x00\x00"),
                         cont_after=half) == (ErrorCode.RANGE, 2)
    acc = Accelerator(EmulatorLink())
    acc.configure(cfg)
    with pytest.raises(DeviceError, match="SAMPLE rejected with ADDRESS"):
        acc.tx.transact(Cmd.SAMPLE, pl(label=9), Rsp.RESULT)


@pytest.mark.parametrize("outputs", [(False, False), (True, True), (False, True)])
def test_pipelined_samples_equal_golden(tiny, outputs):
    data = random_dataset(tiny, n_train=30)
    core = Core(tiny, "int")
    link = EmulatorLink()
    acc = Accelerator(link)
    acc.configure(tiny)
    acc.set_outputs(spikes=outputs[0], flips=outputs[1])
    xs, ys = data.x_train, [int(y) for y in data.y_train]
    got = list(acc.run_samples(xs, ys, learn=True, scores=True))
    for x, y, r in zip(xs, ys, got):
        want = core.run_sample(x, y, learn=True)
        assert r.prediction == want.prediction and np.array_equal(r.scores, want.scores)
        assert np.array_equal(r.flips_per_step, want.flips_per_step)
        if outputs[1]:
            assert r.flips.as_tuples() == want.flips.as_tuples()
        if outputs[0]:
            assert all(np.array_equal(a, b) for a, b in zip(r.spikes, want.spikes))
        else:
            assert r.spikes is None
    assert sum(int(r.flips_per_step.sum()) for r in got) > 0
    assert_same_state(core.state_dict(), acc.state_dict())
    preds = acc.predict_many(data.x_test)
    assert preds == [core.predict(x) for x in data.x_test]
    assert link.overruns == 0
    # samples that report events go alone (their answers cannot be bounded)
    assert acc.stats["max_in_flight"] == (1 if any(outputs) else acc.tx.window)


@pytest.mark.parametrize("credit,window", [(60, 16), (200, 16), (2048, 3)])
def test_window_keeps_to_credit(digits, credit, window):
    from golden.config import NetConfig

    cfg = NetConfig()
    link = EmulatorLink(credit=credit, window=window)
    acc = Accelerator(link)
    acc.configure(cfg)
    acc.set_outputs(spikes=False, flips=False)
    core = Core(cfg, "int")
    xs, ys = digits.x_train[:24], [int(y) for y in digits.y_train[:24]]
    got = [r.prediction for r in acc.run_samples(xs, ys, learn=True)]
    assert got == [core.run_sample(x, y, learn=True).prediction for x, y in zip(xs, ys)]
    assert link.overruns == 0
    size = max(len(p) for x in xs for p in P.encode_sample(x, label=0)) + P.OVERHEAD
    assert 1 <= acc.stats["max_in_flight"] <= window
    assert (acc.stats["max_in_flight"] > 1) == (credit >= 15 + 2 * size)


def test_overrun_is_counted():
    """A host that ignores the credit loses bytes (the model can fail)."""
    link = EmulatorLink(credit=100)
    link.send(bytes(10))                         # taken at once: the device is busy now
    link.send(bytes(150))
    assert link.overruns == 50


def test_multi_frame_samples_equal_golden():
    cfg = tiny_config(layers=(3000, 12, 4), gamma=(2, 2), rate_shift=4)
    rng = np.random.default_rng(5)
    xs = rng.random((4, cfg.T, 3000)) < 0.12      # ~360 events/step: lists > 256, > 1 frame
    assert max(len(P.encode_sample(x)) for x in xs) > 1
    core = Core(cfg, "int")
    acc = Accelerator(EmulatorLink())
    acc.configure(cfg)
    for k, x in enumerate(xs):
        assert_same_result(core.run_sample(x, k % 4, learn=True),
                           acc.run_sample(x, k % 4, learn=True))
    assert_same_state(core.state_dict(), acc.state_dict())


def test_keep_state_is_golden_run_window(tiny):
    data = random_dataset(tiny, n_train=8)
    acc = Accelerator(EmulatorLink())
    acc.configure(tiny)
    core = Core(tiny, "int")
    ys = [int(y) for y in data.y_train]
    want = run_stream(core, data.x_train, ys, learn=True)
    got = list(acc.run_samples(data.x_train, ys, learn=True, scores=True, keep_state=True))
    for r1, r2 in zip(want, got):
        assert r1.prediction == r2.prediction and np.array_equal(r1.scores, r2.scores)
        assert np.array_equal(r1.flips_per_step, r2.flips_per_step)
    assert_same_state(core.state_dict(), acc.state_dict())
    dev = acc.link.device.core
    assert all(np.array_equal(a, b) for a, b in zip(dev.v, core.v))
    assert all(np.array_equal(a, b) for a, b in zip(dev.a, core.a))
    with pytest.raises(ValueError, match="keep_state needs protocol version 2"):
        next(Accelerator(EmulatorLink(versions=(1,))).run_samples([data.x_train[0]],
                                                                   keep_state=True))


FAULTS = [dict(tx_flip=0.01), dict(rx_flip=0.01), dict(tx_truncate=0.1),
          dict(tx_drop=0.1), dict(rx_drop=0.3), dict(rx_truncate=0.3),
          dict(tx_flip=0.003, rx_flip=0.003, tx_truncate=0.03, tx_drop=0.03, rx_drop=0.1)]


@pytest.mark.parametrize("faults", FAULTS, ids=["-".join(f) for f in FAULTS])
def test_window_faults_learn_each_sample_once(tiny, faults):
    """Bit errors, truncated and dropped chunks in a window of SAMPLEs: the host recovers
    (resync, go-back-N resend, the device replays or refuses out-of-order SEQs) and every
    prediction, flip count and the final memories equal golden's."""
    data = random_dataset(tiny, n_train=60, seed=3)
    core = Core(tiny, "int")
    inner = EmulatorLink()
    link = FaultyLink(inner, seed=11, **faults)
    link.enabled = False
    acc = Accelerator(link, retries=30)
    acc.configure(tiny)
    acc.set_outputs(spikes=False, flips=False)
    link.enabled = True
    xs, ys = data.x_train, [int(y) for y in data.y_train]
    got = list(acc.run_samples(xs, ys, learn=True))
    link.enabled = False
    for x, y, r in zip(xs, ys, got):
        want = core.run_sample(x, y, learn=True)
        assert r.prediction == want.prediction
        assert np.array_equal(r.flips_per_step, want.flips_per_step)
    assert_same_state(core.state_dict(), acc.state_dict())
    assert inner.device.core.step == core.step == len(xs) * tiny.T     # each learned once
    assert sum(link.injected.values()) >= 1, link.injected
    assert acc.stats["retries"] >= 1 and acc.stats["max_in_flight"] > 1
    assert inner.overruns == 0
