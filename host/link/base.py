"""The abstract byte link between the host and a device (emulator, RTL simulation, board)."""
from __future__ import annotations

import abc

__all__ = ["Link", "LinkError", "LinkTimeout"]


class LinkError(OSError):
    """The link failed (could not open, closed, or kept corrupting frames past the retries)."""


class LinkTimeout(TimeoutError):
    """Nothing arrived in time; the message names the link (the serial port, the socket)."""


class Link(abc.ABC):
    """A bidirectional byte pipe with a receive timeout.

    Subclasses implement :meth:`_send`, :meth:`_recv` and :meth:`_close`; this class counts bytes
    and makes every link a context manager. ``name`` identifies the link in error messages.
    """

    #: default receive timeout in seconds
    timeout: float = 1.0

    def __init__(self, name: str, timeout: float | None = None):
        self.name = name
        if timeout is not None:
            self.timeout = float(timeout)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False

    def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        if self.closed:
            raise LinkError(f"{self.name}: link is closed")
        self._send(bytes(data))
        self.bytes_sent += len(data)

    def recv(self, timeout: float | None = None) -> bytes:
        """Return the bytes that have arrived (at least one); wait at most ``timeout`` seconds
        (default :attr:`timeout`), then raise :class:`LinkTimeout` naming the link."""
        if self.closed:
            raise LinkError(f"{self.name}: link is closed")
        t = self.timeout if timeout is None else float(timeout)
        data = self._recv(t)
        if not data:
            raise LinkTimeout(f"{self.name}: no data within {t:g} s")
        self.bytes_received += len(data)
        return data

    def close(self) -> None:
        """Release the link (idempotent)."""
        if not self.closed:
            self.closed = True
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    @abc.abstractmethod
    def _send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def _recv(self, timeout: float) -> bytes:
        """Return available bytes, waiting up to ``timeout``; ``b""`` when none came."""

    def _close(self) -> None:
        pass
