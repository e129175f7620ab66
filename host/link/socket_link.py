"""A device behind a TCP socket: the RTL simulation's UART bridge, or an EmulatorServer."""
from __future__ import annotations

import socket

from .base import Link, LinkError

__all__ = ["SocketLink"]


class SocketLink(Link):
    """TCP client link to ``host:port`` (a byte stream, like the UART it stands for)."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, connect_timeout: float = 5.0):
        super().__init__(f"socket {host}:{port}", timeout)
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as e:
            self.closed = True
            raise LinkError(f"{self.name}: cannot connect: {e}") from e
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, data: bytes) -> None:
        self._sock.settimeout(max(self.timeout, 1.0))
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise LinkError(f"{self.name}: send failed: {e}") from e

    def _recv(self, timeout: float) -> bytes:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            return b""
        except OSError as e:
            raise LinkError(f"{self.name}: receive failed: {e}") from e
        if not data:
            raise LinkError(f"{self.name}: the device closed the connection")
        return data

    def _close(self) -> None:
        self._sock.close()
