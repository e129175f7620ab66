"""The reference device: golden int mode behind the wire protocol, in process.

:class:`EmulatorDevice` deframes, validates, executes and answers exactly as docs/protocol.md
says the RTL board top must, in protocol version 1 (stop-and-wait) and version 2 (windows,
credit, ``SAMPLE``; §9), chosen per session by the host's ``SYNC``. The command handlers are in
:mod:`host.link.device_commands`. :class:`EmulatorLink` puts the device behind the
:class:`~host.link.Link` interface, with an RX buffer of ``credit`` bytes that overruns like a
FIFO when a host sends more than it may; :class:`EmulatorServer` serves the device on a local
TCP socket (the shape of the RTL simulation bridge).
"""
from __future__ import annotations

import copy
import socket
import threading
from collections import OrderedDict

import numpy as np

from golden.config import NetConfig
from golden.core import Core

from .. import protocol as P
from ..protocol import Cmd, ErrorCode, OutputMask, Rsp
from .base import Link
from .device_commands import CommandError, DeviceCommands

__all__ = ["EmulatorDevice", "EmulatorLink", "EmulatorServer", "CommandError"]


class EmulatorDevice(DeviceCommands):
    """golden.core.Core (int mode) behind the protocol.

    ``cfg=None``: a reconfigurable device (any valid ``WRITE_CONFIG``). ``cfg`` given: a
    fixed-config device like the RTL: it powers up configured with that config and answers
    ``CONFIG_MISMATCH`` to any other. After power-up or ``WRITE_CONFIG`` all weight bits are 0
    (-1), momentum, V and biases 0, thresholds and registers from the config, learning off,
    all outputs on, no label.

    ``versions``: the protocol versions it serves: ``(1, 2)`` (default; the session is v1 until
    a v2 ``SYNC``), ``(1,)`` a v1-only device (the board top before v2), ``(2,)`` a v2-only one.
    ``window`` and ``credit`` are what it grants in v2 (§9.2).
    """

    def __init__(self, cfg: NetConfig | None = None, *, max_payload: int = P.MAX_PAYLOAD,
                 replay_bytes: int = P.REPLAY_BYTES, versions=P.VERSIONS,
                 window: int = P.WINDOW, credit: int = P.RX_CREDIT):
        versions = tuple(sorted(set(versions)))
        if not versions or not set(versions) <= set(P.VERSIONS):
            raise ValueError(f"versions {versions}: allowed a subset of {P.VERSIONS}")
        if not 1 <= window <= P.MAX_WINDOW or not P.OVERHEAD + P.SYNC2_SIZE < credit <= 0xFFFF:
            raise ValueError(f"window {window} (1..{P.MAX_WINDOW}) / credit {credit} "
                             f"({P.OVERHEAD + P.SYNC2_SIZE + 1}..65535)")
        self.fixed_cfg = cfg
        self.max_payload = max_payload
        self.replay_bytes = replay_bytes
        self.versions = versions
        self.window = window
        self.credit = credit
        self.session = versions[0]      # the protocol of the current session
        self.deframer = P.Deframer(max_payload, rescan=False)
        self.stats = {"frames_ok": 0, "crc_errors": 0, "length_errors": 0, "cmd_errors": 0,
                      "seq_errors": 0, "replays": 0}
        self._replay = None             # v1: ((seq, op, crc), response bytes or None)
        self._ring = OrderedDict()      # v2: (seq, op, crc) -> response bytes or None
        self.next_seq = None            # v2: the SEQ executed next (None: any)
        self.cfg = None
        self.core = None
        self.config_crc = 0
        self.slots = None
        self.learn = False
        self.label = None
        self.outputs = OutputMask.ALL
        self._sample = None
        self._open_step = False
        if cfg is not None:
            self._configure(cfg)

    # --- byte interface ----------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Consume bytes from the line; return the response bytes they cause."""
        out = bytearray()
        for item in self.deframer.feed(data):
            out += self._on_item(item)
        return bytes(out)

    def idle(self) -> bytes:
        """The line went idle (the RTL's inter-byte timeout): answer a partial frame."""
        out = bytearray()
        for item in self.deframer.idle():
            out += self._on_item(item)
        return bytes(out)

    # --- state -------------------------------------------------------------------------------
    def _configure(self, cfg: NetConfig) -> None:
        core = Core(cfg, "int")
        for w in core.w_sign:
            w[...] = -1
        self.cfg = cfg
        self.core = core
        self.config_crc = P.config_crc(cfg)
        self.slots = np.zeros((cfg.T, cfg.layers[0]), bool)
        self.learn = False
        self.label = None
        self.outputs = OutputMask.ALL
        self._clear_sample()

    def _clear_sample(self):
        self._sample = {"spikes": 0, "flips": 0, "step_flips": [0] * self.cfg.T}
        self._open_step = False

    def snapshot(self) -> dict:
        """Deep copy of every piece of model state (not the link statistics), for comparisons."""
        if self.core is None:
            return {"configured": False}
        c = self.core
        return copy.deepcopy({
            "config": self.config_crc, "state": c.state_dict(), "v": c.v, "a": c.a,
            "score": c.score, "t": c.t, "slots": self.slots, "learn": self.learn,
            "label": self.label, "outputs": int(self.outputs), "counters": c.counters})

    # --- frames ------------------------------------------------------------------------------
    def _frame(self, op, seq, payload=b"") -> bytes:
        return P.encode_frame(op, seq, payload)

    def _error(self, seq, code, op, arg=0) -> bytes:
        return self._frame(Rsp.ERROR, seq or 0,
                           P.pack(Rsp.ERROR, {"code": code, "op": op or 0, "arg": arg}))

    def _on_item(self, item) -> bytes:
        if isinstance(item, P.FrameError):
            key = "crc_errors" if item.code == ErrorCode.CRC else "length_errors"
            self.stats[key] += 1
            return self._error(item.seq, item.code, item.op)
        f = item
        self.stats["frames_ok"] += 1
        if f.op == Cmd.SYNC:
            return self._sync(f)
        key = (f.seq, f.op, f.crc)
        if self.session >= P.VERSION_2:
            return self._on_command_v2(f, key)
        if f.op not in Cmd._value2member_map_:
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, ErrorCode.UNKNOWN_OPCODE, f.op, f.op)
        if self._replay is not None and self._replay[0] == key:
            if self._replay[1] is None:
                self.stats["cmd_errors"] += 1
                return self._error(f.seq, ErrorCode.NO_REPLAY, f.op)
            return self._replay[1]
        out, ok = self._execute(f)
        if ok:
            self._replay = (key, out if len(out) <= self.replay_bytes else None)
        return out

    def _on_command_v2(self, f, key) -> bytes:
        """§9.3: execute the next SEQ, replay a remembered one, refuse any other."""
        if self.next_seq is None or f.seq == self.next_seq:
            out, _ = self._execute(f)
            self._ring[key] = out
            while len(self._ring) > self.window:
                self._ring.popitem(last=False)
            total = 0
            for k in reversed(self._ring):           # keep the newest bytes that fit
                b = self._ring[k]
                if b is not None:
                    total += len(b)
                    if total > self.replay_bytes:
                        self._ring[k] = None
            self.next_seq = (f.seq + 1) & 0xFF
            return out
        if key in self._ring:
            self.stats["replays"] += 1
            if self._ring[key] is None:
                self.stats["cmd_errors"] += 1
                return self._error(f.seq, ErrorCode.NO_REPLAY, f.op)
            return self._ring[key]
        self.stats["seq_errors"] += 1
        return self._error(f.seq, ErrorCode.SEQUENCE, f.op, self.next_seq)

    def _execute(self, f) -> tuple[bytes, bool]:
        """Validate and run one command; return (answer bytes, whether it succeeded)."""
        if f.op not in Cmd._value2member_map_ or f.op == Cmd.SYNC or \
                (f.op == Cmd.SAMPLE and self.session < P.VERSION_2):
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, ErrorCode.UNKNOWN_OPCODE, f.op, f.op), False
        op = Cmd(f.op)
        if op != Cmd.SAMPLE:
            self._open_step = False                 # any other command closes an open step
        try:
            try:
                values, _, tail = P.unpack(op, f.payload)
            except P.PayloadLengthError:
                raise CommandError(ErrorCode.BAD_LENGTH, len(f.payload)) from None
            responses = getattr(self, "_cmd_" + op.name.lower())(values, tail)
        except CommandError as e:
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, e.code, f.op, e.arg), False
        return b"".join(self._frame(rop, f.seq, payload) for rop, payload in responses), True

    def _sync(self, f) -> bytes:
        """§2 / §9.1: the 5-byte form is v1, the 7-byte form v2."""
        n = len(f.payload)
        if n == P.SYNC2_SIZE and P.VERSION_2 in self.versions:
            v, _, _ = P.unpack(Cmd.SYNC, f.payload, version=P.VERSION_2)
            if v["flags"] & ~int(P.SyncFlags.NEW_SESSION):
                return self._sync_error(f, ErrorCode.RANGE, v["flags"])
            if v["version"] not in self.versions or v["version"] < P.VERSION_2:
                return self._sync_error(f, ErrorCode.RANGE, v["version"])
            self.session = P.VERSION_2
            if v["flags"] & P.SyncFlags.NEW_SESSION:
                self._ring.clear()
                self.next_seq = v["next_seq"]
            return self._frame(Rsp.ACK, f.seq, P.pack(Rsp.ACK, {
                "nonce": v["nonce"], "version": P.VERSION_2, "next_seq": self.next_seq or 0,
                "window": self.window, "credit": self.credit},
                ack_of=Cmd.SYNC, version=P.VERSION_2))
        if n != P.CMD_LAYOUTS[Cmd.SYNC].fixed_size:
            return self._sync_error(f, ErrorCode.BAD_LENGTH, n)
        v, _, _ = P.unpack(Cmd.SYNC, f.payload)
        if v["flags"] & ~int(P.SyncFlags.NEW_SESSION):
            return self._sync_error(f, ErrorCode.RANGE, v["flags"])
        if P.VERSION_1 not in self.versions:      # v2-only: the v1 host stops on version 2
            return self._frame(Rsp.ACK, f.seq, P.pack(Rsp.ACK, {
                "nonce": v["nonce"], "version": P.VERSION_2}, ack_of=Cmd.SYNC))
        self.session = P.VERSION_1
        if v["flags"] & P.SyncFlags.NEW_SESSION:
            self._replay = None
        return self._frame(Rsp.ACK, f.seq, P.pack(Rsp.ACK, {
            "nonce": v["nonce"], "version": P.VERSION_1}, ack_of=Cmd.SYNC))

    def _sync_error(self, f, code, arg) -> bytes:
        self.stats["cmd_errors"] += 1
        return self._error(f.seq, code, f.op, arg)


class EmulatorLink(Link):
    """A :class:`Link` to an in-process :class:`EmulatorDevice`.

    The device is busy from the moment it takes bytes until the host has read what they
    caused: bytes sent to an idle device are taken at once, bytes sent to a busy one wait in
    its RX buffer (``device.credit`` bytes) until the host reads; bytes beyond it are lost, as
    a full FIFO loses them, and counted in :attr:`overruns` (a host that keeps to the credit
    never causes one). :meth:`recv` never waits: the device answers what is buffered; when
    nothing is pending it is told the line is idle (the RTL's inter-byte timeout) and what
    that produced is returned, or the read times out at once.
    """

    def __init__(self, cfg: NetConfig | None = None, *, device: EmulatorDevice | None = None,
                 name: str = "emulator", **device_kw):
        super().__init__(name, timeout=0.0)
        self.device = device if device is not None else EmulatorDevice(cfg, **device_kw)
        self._rx = bytearray()
        self._buffer = bytearray()      # the device's RX buffer
        self.overruns = 0               # bytes lost because the buffer was full
        self._busy = False

    def _send(self, data: bytes) -> None:
        if not self._rx and not self._buffer and not self._busy:
            self._busy = True
            self._rx += self.device.receive(data)
            return
        room = self.device.credit - len(self._buffer)
        if len(data) > room:
            self.overruns += len(data) - max(room, 0)
            data = data[:max(room, 0)]
        self._buffer += data

    def _recv(self, timeout: float) -> bytes:
        self._busy = False
        if self._buffer:
            self._rx += self.device.receive(bytes(self._buffer))
            self._buffer.clear()
        if not self._rx:
            self._rx += self.device.idle()
        data = bytes(self._rx)
        self._rx.clear()
        return data


class EmulatorServer:
    """Serve an :class:`EmulatorDevice` on ``127.0.0.1:port`` (0: any free port), one client at
    a time, in a daemon thread. A pause longer than ``idle_timeout`` inside a frame is the line
    going idle. Use as a context manager; ``port`` holds the bound port."""

    def __init__(self, cfg: NetConfig | None = None, *, port: int = 0, idle_timeout: float = 0.05,
                 device: EmulatorDevice | None = None):
        self.device = device if device is not None else EmulatorDevice(cfg)
        self.idle_timeout = idle_timeout
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="emulator-server")
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(self.idle_timeout)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        out = self.device.idle()
                    except OSError:
                        break
                    else:
                        if not data:
                            break
                        out = self.device.receive(data)
                    if out:
                        try:
                            conn.sendall(out)
                        except OSError:
                            break

    def close(self):
        """Stop serving and wait for the thread."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
