"""A board on a serial port (pyserial; any ``serial_for_url`` URL such as ``loop://`` works).

Latency (docs/link.md): on Linux the link asks for what the OS allows — pyserial's
``set_low_latency_mode`` (the tty's ``ASYNC_LOW_LATENCY`` flag) and, for an FTDI adapter, a
latency timer of 1 ms (``/sys/bus/usb-serial/devices/ttyUSBn/latency_timer``, default 16 ms: the
FTDI chip holds back a partly filled USB packet that long). What it could not set is in
:attr:`SerialLink.latency_notes` (the CLI prints them as warnings).
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import Link, LinkError, LinkTimeout

__all__ = ["SerialLink", "DEFAULT_BAUD", "FTDI_LATENCY_MS"]

DEFAULT_BAUD = 115200
FTDI_LATENCY_MS = 1             # the lowest FTDI latency timer
SYSFS_USB_SERIAL = Path("/sys/bus/usb-serial/devices")


class SerialLink(Link):
    """8N1 serial link at ``baud``. Reads wait at most ``timeout`` seconds and writes at most
    ``write_timeout`` (default: ``timeout``, at least 1 s), so a board that does not answer raises
    :class:`~host.link.LinkTimeout` naming the port instead of hanging. ``low_latency``: set
    what the OS allows (module docstring); ``latency`` holds what was set."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = 1.0,
                 write_timeout: float | None = None, low_latency: bool = True):
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
        self.latency = {"low_latency": None, "latency_timer_ms": None}
        self.latency_notes: list[str] = []
        if low_latency:
            self._set_low_latency()

    def _set_low_latency(self) -> None:
        """ASYNC_LOW_LATENCY and the FTDI latency timer; a note for each that cannot be set."""
        setter = getattr(self._ser, "set_low_latency_mode", None)
        if setter is None:
            self.latency_notes.append(f"{self.name}: no low-latency mode (not a local serial "
                                      f"port on Linux)")
        else:
            try:
                setter(True)
                self.latency["low_latency"] = True
            except (ValueError, OSError) as e:
                self.latency["low_latency"] = False
                self.latency_notes.append(f"{self.name}: cannot set low_latency ({e})")
        tty = os.path.basename(os.path.realpath(self.port))
        timer = SYSFS_USB_SERIAL / tty / "latency_timer"
        if not timer.exists():
            return                              # not a USB serial adapter with a timer
        try:
            ms = int(timer.read_text().strip())
        except (OSError, ValueError) as e:
            self.latency_notes.append(f"{self.name}: cannot read {timer} ({e})")
            return
        if ms > FTDI_LATENCY_MS:
            try:
                timer.write_text(f"{FTDI_LATENCY_MS}\n")
                ms = int(timer.read_text().strip())
            except (OSError, ValueError) as e:
                self.latency_notes.append(
                    f"{self.name}: FTDI latency timer is {ms} ms and cannot be set to "
                    f"{FTDI_LATENCY_MS} ({e}); as root: echo {FTDI_LATENCY_MS} > {timer}, or a "
                    f"udev rule (docs/link.md)")
        self.latency["latency_timer_ms"] = ms

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
