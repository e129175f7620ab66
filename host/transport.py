"""The host's side of the link protocol: version negotiation, windows, credit, recovery.

:class:`Transport` speaks docs/protocol.md over any :class:`~host.link.Link`. Construction
negotiates the version (§9.1): the v2 ``SYNC`` first; a v1 device refuses it with
``BAD_LENGTH`` and the host falls back to version 1 (stop-and-wait), unless told to need v2.

:meth:`Transport.pipeline` runs a stream of commands with up to ``window`` of them in flight
(v1: one), within the device's credit (frame bytes in flight plus one ``SYNC`` in reserve) and
its replay buffer (the answers the device may have to replay), and yields their answers in
order. On a bad frame, a transport ``ERROR`` (``CRC``, ``TRUNCATED``, ``SEQUENCE`` ...), an
answer that does not add up, or silence, it resynchronises (``SYNC`` with a fresh nonce, discard
up to its ``ACK``) and resends, in order, the commands still lacking an answer; the device
replays those it executed (same SEQ, OP, CRC), so each command runs exactly once. Command
errors raise :class:`DeviceError`.
"""
from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import dataclass, field

from . import protocol as P
from .link.base import Link, LinkError, LinkTimeout
from .protocol import Cmd, ErrorCode, Rsp

__all__ = ["Transport", "DeviceError", "TransportFault", "Command"]

_GARBAGE_LIMIT = 1 << 16        # bytes of noise tolerated while waiting for one answer
_TRANSPORT_CODES = frozenset(int(c) for c in P.TRANSPORT_ERRORS)
_SYNC2_FRAME = P.OVERHEAD + P.SYNC2_SIZE


class DeviceError(RuntimeError):
    """The device rejected a command (``ERROR`` with a command code); nothing changed on it."""

    def __init__(self, code: int, op: int, arg: int, link: str):
        try:
            code = ErrorCode(code)
            cname = code.name
        except ValueError:
            cname = f"0x{code:02x}"
        try:
            oname = Cmd(op).name
        except ValueError:
            oname = f"0x{op:02x}"
        super().__init__(f"{link}: {oname} rejected with {cname} (arg={arg})")
        self.code, self.op, self.arg = code, op, arg


class TransportFault(Exception):
    """A transport failure inside one attempt: the host resynchronises and resends.
    A ``check`` callable raises it for an answer that does not add up."""


class _Refused(Exception):
    """The device answered our SYNC with a command error (it does not speak that form)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


@dataclass
class Command:
    """One command of a pipeline: ``expect`` is the terminal response it needs (or a set of
    them); ``check(term, rest)`` may raise :class:`TransportFault`; ``bound`` is the most
    answer bytes it can cause (None: unknown, it then goes alone)."""

    op: Cmd
    payload: bytes = b""
    expect: object = Rsp.ACK
    check: object = None
    bound: int | None = 64
    seq: int = 0
    frame: bytes = b""
    term: object = None
    rest: list = field(default_factory=list)
    tries: int = 0

    @property
    def done(self) -> bool:
        return self.term is not None


class Transport:
    """The protocol engine behind :class:`host.accelerator.Accelerator`.

    ``version``: None (the highest both speak), 1 or 2 (refuse a device that does not speak it).
    ``retries``: resends of one command before :class:`~host.link.LinkError`; ``timeout``:
    seconds to wait for each chunk of an answer (default: the link's); ``window``: at most this
    many commands in flight (default: what the device grants).
    """

    def __init__(self, link: Link, *, retries: int = 8, timeout: float | None = None,
                 sync_attempts: int = 3, version: int | None = None,
                 window: int | None = None):
        if version not in (None, *P.VERSIONS):
            raise ValueError(f"version {version!r}: allowed None or one of {P.VERSIONS}")
        self.link = link
        self.retries = retries
        self.timeout = link.timeout if timeout is None else float(timeout)
        self.sync_attempts = sync_attempts
        self._deframer = P.Deframer(rescan=True)
        self._pending: deque = deque()
        self._seq = 0
        self._nonce = random.Random(os.urandom(8)).getrandbits(32)
        self.stats = {"commands": 0, "retries": 0, "resyncs": 0, "bad_frames": 0,
                      "transport_errors": 0, "timeouts": 0, "stray_frames": 0,
                      "max_in_flight": 0}
        self.version = P.VERSION_1
        self.window = 1
        self.credit = None              # None: no credit limit (v1: stop-and-wait)
        self.replay_bytes = P.REPLAY_BYTES
        self._negotiate(version, window)

    # --- receiving -------------------------------------------------------------------------
    def _next_item(self):
        while not self._pending:
            try:
                data = self.link.recv(self.timeout)
            except LinkTimeout:
                items = self._deframer.idle()
                if not items:
                    raise
                self._pending.extend(items)
                break
            self._pending.extend(self._deframer.feed(data))
        return self._pending.popleft()

    # --- SYNC --------------------------------------------------------------------------------
    def _negotiate(self, want, window):
        if want in (None, P.VERSION_2):
            try:
                ack = self._sync(P.VERSION_2, new_session=True)
            except _Refused as e:
                if want == P.VERSION_2:
                    raise LinkError(f"{self.link.name}: the device speaks protocol version 1 "
                                    f"only (it refused the version-2 SYNC with "
                                    f"{ErrorCode(e.code).name}); version 2 was asked "
                                    f"for") from None
            else:
                self.version = P.VERSION_2
                self.window = max(1, min(ack["window"], P.MAX_WINDOW,
                                         window if window else P.MAX_WINDOW))
                self.credit = ack["credit"]
                if self.credit < _SYNC2_FRAME + P.OVERHEAD:
                    raise LinkError(f"{self.link.name}: the device grants a credit of "
                                    f"{self.credit} bytes, too little for one frame")
                term, _ = self.transact(Cmd.STATUS, expect=Rsp.STATUS, bound=100)
                st, _, _ = P.unpack(Rsp.STATUS, term.payload, version=P.VERSION_2)
                self.replay_bytes = st["replay_bytes"]
                return
        try:
            self._sync(P.VERSION_1, new_session=True)
        except _Refused as e:
            raise LinkError(f"{self.link.name}: the device refused the version-1 SYNC with "
                            f"{ErrorCode(e.code).name}") from None

    def sync(self, new_session: bool = False) -> dict:
        """Drain the link up to a fresh barrier (``SYNC``): afterwards nothing stale is in
        flight. ``new_session`` also makes the device forget its replay state."""
        return self._sync(self.version, new_session)

    def _sync(self, version, new_session) -> dict:
        flags = P.SyncFlags.NEW_SESSION if new_session else 0
        for _ in range(self.sync_attempts):
            self.stats["resyncs"] += 1
            self._deframer.reset()
            self._pending.clear()
            self._nonce = (self._nonce + 0x9E3779B9) & 0xFFFFFFFF
            nonce = self._nonce
            values = {"flags": flags, "nonce": nonce}
            if version >= P.VERSION_2:
                values.update(version=version, next_seq=(self._seq + 1) & 0xFF)
            self.link.send(P.encode_frame(Cmd.SYNC, 0, P.pack(Cmd.SYNC, values,
                                                                version=version)))
            try:
                ack = self._await_sync_ack(nonce, version)
            except LinkTimeout:
                self.stats["timeouts"] += 1
                continue
            if ack is not None:
                return ack
        raise LinkTimeout(f"{self.link.name} did not answer: no ACK to SYNC in "
                          f"{self.sync_attempts} attempts of {self.timeout:g} s")

    def _await_sync_ack(self, nonce, version):
        noise = 0
        while noise < _GARBAGE_LIMIT:
            g0 = self._deframer.garbage
            item = self._next_item()
            noise += self._deframer.garbage - g0
            if isinstance(item, P.Frame) and item.op == Rsp.ERROR:
                try:
                    v, _, _ = P.unpack(Rsp.ERROR, item.payload)
                except P.ProtocolError:
                    v = {"op": None}
                if v["op"] == Cmd.SYNC and v["code"] in (ErrorCode.BAD_LENGTH, ErrorCode.RANGE):
                    raise _Refused(v["code"])
            if isinstance(item, P.Frame) and item.op == Rsp.ACK:
                got = self._sync_ack(item, nonce, version)
                if got is not None:
                    return got
            noise += P.OVERHEAD + (len(item.payload) if isinstance(item, P.Frame) else 0)
        return None

    def _sync_ack(self, item, nonce, version):
        for form in (version, P.VERSION_1):
            try:
                v, _, _ = P.unpack(Rsp.ACK, item.payload, ack_of=Cmd.SYNC, version=form)
            except P.ProtocolError:
                continue
            if v["nonce"] != nonce:
                return None
            if v["version"] != version:
                raise LinkError(f"{self.link.name}: device speaks protocol version "
                                f"{v['version']}, host {version}")
            return v
        return None

    # --- commands ------------------------------------------------------------------------------
    def transact(self, op: Cmd, payload: bytes = b"", expect=Rsp.ACK, check=None,
                 bound: int | None = 64):
        """Run one command to completion; return ``(terminal frame, non-terminal frames)``."""
        for out in self.pipeline([Command(op, payload, expect, check, bound)]):
            return out

    def pipeline(self, commands):
        """Run :class:`Command` objects (any iterable, consumed lazily) with a window of them
        in flight; yield ``(terminal frame, non-terminal frames)`` of each, in order. No other
        command may be sent while the generator is active."""
        it = iter(commands)
        window: deque = deque()
        nxt = None
        more = True
        while True:
            while more:
                if nxt is None:
                    try:
                        nxt = self._prepare(next(it))
                    except StopIteration:
                        more = False
                        break
                if not self._fits(window, nxt):
                    break
                self.link.send(nxt.frame)
                window.append(nxt)
                nxt = None
                self.stats["max_in_flight"] = max(self.stats["max_in_flight"],
                                                  sum(not c.done for c in window))
            if not window:
                return
            try:
                self._receive(window)
            except (TransportFault, P.ProtocolError) as e:
                self._recover(window, e)
            except LinkTimeout as e:
                self.stats["timeouts"] += 1
                self._recover(window, e)
            while window and window[0].done:
                c = window.popleft()
                yield c.term, c.rest

    def _prepare(self, c: Command) -> Command:
        self._seq = (self._seq + 1) & 0xFF
        c.seq = self._seq
        c.frame = P.encode_frame(c.op, c.seq, c.payload)
        self.stats["commands"] += 1
        return c

    def _fits(self, window, c: Command) -> bool:
        open_ = [w for w in window if not w.done]
        if not open_:
            return True
        if len(open_) >= self.window or self.credit is None:
            return False
        if sum(len(w.frame) for w in open_) + len(c.frame) + _SYNC2_FRAME > self.credit:
            return False
        if c.bound is None or any(w.bound is None for w in open_):
            return False
        return sum(w.bound for w in open_) + c.bound <= self.replay_bytes

    def _receive(self, window):
        """Read answers until the oldest command of ``window`` has its answer."""
        noise = 0
        by_seq = {c.seq: c for c in window if not c.done}
        while not window[0].done:
            g0 = self._deframer.garbage
            item = self._next_item()
            noise += self._deframer.garbage - g0
            if noise > _GARBAGE_LIMIT:
                raise TransportFault("too much noise on the link")
            if isinstance(item, P.FrameError):
                self.stats["bad_frames"] += 1
                raise TransportFault(f"bad frame from the device ({item.code.name})")
            if not item.is_response or item.op not in Rsp._value2member_map_:
                self.stats["stray_frames"] += 1        # e.g. our own frames echoed back
                noise += P.OVERHEAD + len(item.payload)
                continue
            rsp = Rsp(item.op)
            if rsp == Rsp.ERROR:
                v, _, _ = P.unpack(Rsp.ERROR, item.payload)
                if v["code"] in _TRANSPORT_CODES:
                    self.stats["transport_errors"] += 1
                    raise TransportFault(f"device saw a bad frame "
                                         f"({ErrorCode(v['code']).name})")
                if item.seq in by_seq:
                    raise DeviceError(v["code"], v["op"], v["arg"], self.link.name)
            c = by_seq.get(item.seq)
            if c is None:
                self.stats["stray_frames"] += 1
                noise += P.OVERHEAD + len(item.payload)
                continue
            if c is not next(w for w in window if not w.done):
                raise TransportFault(f"answer to SEQ {c.seq} before the one to an earlier "
                                     f"command")
            if rsp not in P.TERMINAL:
                c.rest.append(item)
                continue
            expect = c.expect if isinstance(c.expect, (set, frozenset)) else {c.expect}
            if rsp not in expect:
                raise TransportFault(f"{rsp.name} answered {Cmd(c.op).name}")
            if c.check is not None:
                c.check(item, c.rest)
            c.term = item
            del by_seq[c.seq]

    def _recover(self, window, why):
        """Resynchronise and resend, in order, the commands of ``window`` without an answer."""
        todo = [c for c in window if not c.done]
        for c in todo:
            c.tries += 1
            if c.tries > self.retries:
                raise LinkError(f"{self.link.name}: {Cmd(c.op).name} failed {self.retries + 1} "
                                f"times; last: {why}")
        self.stats["retries"] += 1
        ack = self.sync()
        if self.version >= P.VERSION_2 and todo:
            first, nxt = todo[0].seq, (self._seq + 1) & 0xFF
            dist = (ack["next_seq"] - first) & 0xFF
            if dist > (nxt - first) & 0xFF:
                raise LinkError(f"{self.link.name}: the device lost the session (it expects "
                                f"SEQ {ack['next_seq']}, the host has {first}..{self._seq} in "
                                f"flight): was it reset?")
        for c in todo:
            c.rest = []
            self.link.send(c.frame)
