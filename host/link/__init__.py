"""Links between the host and a device: one byte-pipe interface, several implementations.

* :class:`EmulatorLink` -- golden int mode behind the protocol, in process (no tools needed);
* :class:`SerialLink` -- a board on a serial port (pyserial);
* :class:`SocketLink` -- a device behind a local TCP socket (the RTL simulation bridge);
* :class:`SimLink` -- the RTL board top in simulation (Verilator, or Icarus), behind a cocotb
  UART-to-TCP bridge it starts and stops itself.

:func:`open_link` parses the CLI spelling: ``emulator``, ``sim[:verilator|:icarus]``,
``serial:PORT[@BAUD]``, ``tcp:HOST:PORT``.
"""
from __future__ import annotations

from .base import Link, LinkError, LinkTimeout

__all__ = ["Link", "LinkError", "LinkTimeout", "EmulatorLink", "SerialLink", "SocketLink",
           "SimLink", "open_link"]


def __getattr__(name):
    # the implementations import numpy/golden or pyserial; load them on first use
    if name == "EmulatorLink":
        from .emulator import EmulatorLink
        return EmulatorLink
    if name == "SerialLink":
        from .serial_link import SerialLink
        return SerialLink
    if name == "SocketLink":
        from .socket_link import SocketLink
        return SocketLink
    if name == "SimLink":
        from .sim import SimLink
        return SimLink
    raise AttributeError(name)


def open_link(spec: str, *, timeout: float | None = None, baud: int | None = None,
              cfg=None) -> Link:
    """Open the link named by ``spec`` (see the module docstring). ``cfg`` is the configuration
    of the emulator or of the simulated RTL (default ``NetConfig()``)."""
    kind, _, rest = spec.partition(":")
    if kind == "emulator" and not rest:
        from .emulator import EmulatorLink
        return EmulatorLink(cfg)
    if kind == "sim":
        from .sim import SimLink
        kw = {} if timeout is None else {"timeout": timeout}
        return SimLink(rest or None, cfg, **kw)
    if kind == "serial" and rest:
        from .serial_link import DEFAULT_BAUD, SerialLink
        port, _, b = rest.rpartition("@") if "@" in rest else (rest, "", "")
        return SerialLink(port, int(b) if b else (baud or DEFAULT_BAUD),
                          timeout=1.0 if timeout is None else timeout)
    if kind == "tcp" and rest:
        from .socket_link import SocketLink
        host, _, port = rest.rpartition(":")
        return SocketLink(host or "127.0.0.1", int(port),
                          timeout=1.0 if timeout is None else timeout)
    raise ValueError(f"unknown link {spec!r}: use emulator, sim[:verilator|:icarus], "
                     f"serial:PORT[@BAUD] or tcp:HOST:PORT")
