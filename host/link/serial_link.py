"""A board on a serial port (pyserial; any ``serial_for_url`` URL such as ``loop://`` works)."""
from __future__ import annotations

from .base import Link, LinkError, LinkTimeout

__all__ = ["SerialLink", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115200


class SerialLink(Link):
    """8N1 serial link at ``baud``. Reads wait at most ``timeout`` seconds and writes at most
    ``write_timeout`` (default: ``timeout``, at least 1 s), so a board that does not answer raises
    :class:`~host.link.LinkTimeout` naming the port instead of hanging."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = 1.0,
                 write_timeout: float | None = None):
        import serial

        super().__init__(f"serial port {port}", timeout)
        self.port = port
        self.baud = baud
        self._serial_timeout = serial.SerialTimeoutException
        try:
            self._ser = serial.serial_for_url(
                port, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=timeout,
                write_timeout=write_timeout if write_timeout is not None else max(timeout, 1.0))
        except (serial.SerialException, ValueError, OSError) as e:
            self.closed = True
            raise LinkError(f"serial port {port}: cannot open: {e}") from e

    def _send(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except self._serial_timeout:
            raise LinkTimeout(f"{self.name}: write of {len(data)} bytes timed out "
                              f"(nothing reads the port)") from None

    def _recv(self, timeout: float) -> bytes:
        self._ser.timeout = timeout
        first = self._ser.read(1)
        if not first:
            return b""
        n = self._ser.in_waiting
        return first + (self._ser.read(n) if n else b"")

    def _close(self) -> None:
        self._ser.close()
