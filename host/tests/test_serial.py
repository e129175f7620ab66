"""SerialLink: a silent board times out naming the port (never hangs); a pty-attached emulator
works end to end."""
from __future__ import annotations

import os
import select
import threading
import time

import numpy as np
import pytest

from golden.core import Core
from host.accelerator import Accelerator
from host.link import LinkError, LinkTimeout, SerialLink
from host.link.emulator import EmulatorDevice

from .conftest import random_dataset


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_silent_pty_raises_timeout_naming_the_port(pty_pair):
    _, port = pty_pair
    t0 = time.monotonic()
    with SerialLink(port, timeout=0.1) as link, pytest.raises(TimeoutError, match=port) as e:
        Accelerator(link, sync_attempts=2)
    assert isinstance(e.value, LinkTimeout)
    assert time.monotonic() - t0 < 3


def test_loop_url_with_nothing_answering_times_out():
    # loop:// echoes our own frames: they are commands, not answers, and are ignored
    with SerialLink("loop://", timeout=0.1) as link, pytest.raises(TimeoutError, match="loop://"):
        Accelerator(link, sync_attempts=2)


def test_missing_port_is_a_link_error_naming_it():
    with pytest.raises(LinkError, match="/dev/no-such-tty"):
        SerialLink("/dev/no-such-tty")


def test_silent_board_after_connect_times_out(tiny, pty_pair):
    """A board that answered once and then went silent: the command fails within the bounds."""
    master, port = pty_pair
    dev = EmulatorDevice()
    stop = threading.Event()
    answering = threading.Event()
    answering.set()
    th = threading.Thread(target=_serve, args=(master, dev, stop, answering), daemon=True)
    th.start()
    try:
        with Accelerator(SerialLink(port, timeout=0.2), retries=1, sync_attempts=1) as acc:
            acc.configure(tiny)
            answering.clear()
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match=port):
                acc.status()
            assert time.monotonic() - t0 < 3
    finally:
        stop.set()
        th.join(2)


def _serve(fd, device, stop, answering, idle=0.02):
    """The device end of the pty: bytes in, device answers out; a quiet line is 'idle'."""
    while not stop.is_set():
        r, _, _ = select.select([fd], [], [], idle)
        try:
            data = os.read(fd, 65536) if r else b""
        except OSError:
            return
        if not answering.is_set():
            continue
        out = device.receive(data) if data else device.idle()
        if out:
            os.write(fd, out)


def test_serial_link_to_a_pty_emulator_matches_golden(tiny, pty_pair):
    master, port = pty_pair
    dev = EmulatorDevice()
    stop, answering = threading.Event(), threading.Event()
    answering.set()
    th = threading.Thread(target=_serve, args=(master, dev, stop, answering), daemon=True)
    th.start()
    data = random_dataset(tiny, n_train=4)
    core = Core(tiny, "int")
    try:
        with Accelerator(SerialLink(port, baud=115200, timeout=0.5)) as acc:
            acc.configure(tiny)
            for k in range(4):
                y = int(data.y_train[k])
                r1 = core.run_sample(data.x_train[k], y, learn=True)
                r2 = acc.run_sample(data.x_train[k], y, learn=True)
                assert r1.prediction == r2.prediction
                assert r1.flips.as_tuples() == r2.flips.as_tuples()
            sd = acc.state_dict()
        for k, v in core.state_dict().items():
            assert np.array_equal(v, sd[k]), k
    finally:
        stop.set()
        th.join(2)


def test_low_latency_is_asked_for_and_a_refusal_is_said(pty_pair, tmp_path, monkeypatch):
    """A pty has no ASYNC_LOW_LATENCY: the link says so. A fake FTDI sysfs timer at 16 ms is
    set to 1 ms; a read-only one is reported with the fix."""
    from host.link import serial_link

    _, port = pty_pair
    with SerialLink(port, timeout=0.1) as link:
        assert link.latency["low_latency"] is False
        assert any("cannot set low_latency" in n for n in link.latency_notes)
    tty = os.path.basename(os.path.realpath(port))
    (tmp_path / tty).mkdir()
    timer = tmp_path / tty / "latency_timer"
    timer.write_text("16\n")
    monkeypatch.setattr(serial_link, "SYSFS_USB_SERIAL", tmp_path)
    with SerialLink(port, timeout=0.1) as link:
        assert link.latency["latency_timer_ms"] == 1 and timer.read_text() == "1\n"
    timer.write_text("16\n")
    timer.chmod(0o444)
    if os.access(timer, os.W_OK):            # root writes anyway
        return
    with SerialLink(port, timeout=0.1) as link:
        assert link.latency["latency_timer_ms"] == 16
        assert any("latency timer is 16 ms" in n and "udev" in n for n in link.latency_notes)
    with SerialLink(port, timeout=0.1, low_latency=False) as link:
        assert link.latency_notes == []


def test_high_baud_rates_open(pty_pair):
    """pyserial sets 3 and 12 Mbaud (termios2 BOTHER) on this Linux; a real FTDI is docs/link.md."""
    _, port = pty_pair
    for baud in (3_000_000, 12_000_000):
        with SerialLink(port, baud, timeout=0.1) as link:
            assert link._ser.baudrate == baud
