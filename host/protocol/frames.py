"""Frames: encoding, the streaming deframer, the frame format for the gateware (§1)."""
from __future__ import annotations

from dataclasses import dataclass

from .codes import (CRC16, HEADER_SIZE, MAX_PAYLOAD, SYNC, TRAILER_SIZE, Cmd, ErrorCode, Rsp,
                    crc16)
from .layouts import ProtocolError

__all__ = [
    "Frame", "FrameError", "encode_frame", "Deframer", "FRAME_FORMAT",
]

# --- frames --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """A CRC-checked frame."""

    op: int
    seq: int
    payload: bytes
    crc: int = 0

    @property
    def is_response(self) -> bool:
        return self.op >= 0x80

    def encode(self) -> bytes:
        return encode_frame(self.op, self.seq, self.payload)

    def __repr__(self):
        try:
            name = (Rsp(self.op) if self.is_response else Cmd(self.op)).name
        except ValueError:
            name = f"0x{self.op:02x}"
        return f"Frame({name}, seq={self.seq}, {len(self.payload)} B)"


@dataclass(frozen=True)
class FrameError:
    """A bad frame the deframer found: ``code`` is CRC, TOO_LONG or TRUNCATED; ``op``/``seq``
    are as received (unverified, None if not received)."""

    code: ErrorCode
    op: int | None
    seq: int | None


def encode_frame(op: int, seq: int, payload: bytes = b"") -> bytes:
    """Encode one frame (raise :class:`ProtocolError` if the payload exceeds 65535 bytes)."""
    if not 0 <= op <= 0xFF or not 0 <= seq <= 0xFF:
        raise ProtocolError(f"op={op} / seq={seq} must be bytes")
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"payload of {len(payload)} bytes does not fit LEN")
    body = bytes((op, seq)) + len(payload).to_bytes(2, "big") + bytes(payload)
    return SYNC + body + crc16(body).to_bytes(2, "big")


class Deframer:
    """Streaming deframer: feed bytes, get :class:`Frame` and :class:`FrameError` objects.

    Hunting skips bytes until ``A5 5A``. ``LEN > max_payload`` is a ``TOO_LONG`` error as soon as
    LEN arrives. A CRC mismatch is a ``CRC`` error. :meth:`idle` (the line went quiet) turns a
    partial frame into a ``TRUNCATED`` error. After an error the device (``rescan=False``, what
    the RTL does) hunts on from the next unread byte; the host (``rescan=True``) re-hunts from the
    byte after the bad frame's sync, so a frame hidden inside a corrupted one is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, rescan: bool = True):
        self.max_payload = max_payload
        self.rescan = rescan
        self._buf = bytearray()
        self.garbage = 0        # bytes skipped while hunting

    def reset(self) -> None:
        """Drop any partial frame."""
        self._buf.clear()

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started (sync seen) and not ended."""
        return len(self._buf) >= 2

    def feed(self, data: bytes) -> list:
        """Consume ``data``; return the frames and errors it completes, in order."""
        self._buf += data
        out = []
        buf = self._buf
        while True:
            i = buf.find(SYNC)
            if i < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.garbage += len(buf) - keep
                del buf[:len(buf) - keep]
                break
            if i:
                self.garbage += i
                del buf[:i]
            if len(buf) < HEADER_SIZE:
                break
            op, seq = buf[2], buf[3]
            n = int.from_bytes(buf[4:6], "big")
            if n > self.max_payload:
                out.append(FrameError(ErrorCode.TOO_LONG, op, seq))
                del buf[:1 if self.rescan else HEADER_SIZE]
                continue
            end = HEADER_SIZE + n + TRAILER_SIZE
            if len(buf) < end:
                break
            crc = int.from_bytes(buf[end - 2:end], "big")
            if crc16(bytes(buf[2:end - 2])) == crc:
                out.append(Frame(op, seq, bytes(buf[HEADER_SIZE:end - 2]), crc))
                del buf[:end]
            else:
                out.append(FrameError(ErrorCode.CRC, op, seq))
                del buf[:1 if self.rescan else end]
        return out

    def idle(self) -> list:
        """The line went idle: a partial frame becomes a ``TRUNCATED`` error (the host re-hunts
        inside it, which may find more frames and more partial ones)."""
        out = []
        while self.in_frame:
            buf = self._buf
            out.append(FrameError(ErrorCode.TRUNCATED, buf[2] if len(buf) > 2 else None,
                                  buf[3] if len(buf) > 3 else None))
            if not self.rescan:
                break
            rest = bytes(buf[1:])
            buf.clear()
            out.extend(self.feed(rest))
        self._buf.clear()
        return out


#: The frame format as plain data for the gateware generator.
FRAME_FORMAT = {
    "sync": tuple(SYNC),
    "header": (("sync0", 1), ("sync1", 1), ("op", 1), ("seq", 1), ("len", 2)),
    "byteorder": "big",
    "max_payload": MAX_PAYLOAD,
    "crc": CRC16,
    "crc_covers": "op .. payload",
    "response_bit": 0x80,
}
