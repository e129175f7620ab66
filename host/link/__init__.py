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
           "SimLink", "open_link", "parse_link", "manifest_baud"]


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


def parse_link(spec: str) -> tuple[str, dict]:
    """Check a link spelling (module docstring) without opening anything; return ``(kind,
    parameters)``. A bad one raises ValueError naming what is wrong."""
    usage = "use emulator, sim[:verilator|:icarus], serial:PORT[@BAUD] or tcp:HOST:PORT"
    kind, _, rest = str(spec).partition(":")
    if kind == "emulator" and not rest:
        return "emulator", {}
    if kind == "sim":
        from .sim import SIMULATORS
        if rest and rest not in SIMULATORS:
            raise ValueError(f"link {spec!r}: simulator {rest!r} is invalid: allowed "
                             f"{', '.join(SIMULATORS)}")
        return "sim", {"simulator": rest or None}
    if kind == "serial" and rest:
        port, at, b = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if not port:
            raise ValueError(f"link {spec!r}: no serial port before '@'")
        if at and not (b.isdigit() and int(b) >= 1):
            raise ValueError(f"link {spec!r}: baud rate {b!r} is not a positive integer")
        return "serial", {"port": port, "baud": int(b) if at else None}
    if kind == "tcp" and rest:
        host, colon, port = rest.rpartition(":")
        if not colon:
            host, port = "", rest
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"link {spec!r}: TCP port {port!r} is not an integer in 1..65535")
        return "tcp", {"host": host or "127.0.0.1", "port": int(port)}
    raise ValueError(f"link {spec!r} is unknown: {usage}")


def manifest_baud(path) -> int:
    """The UART rate of a board build, from its report.json (``link.baud``, written by
    ``python -m hdl_gen build``). ValueError naming the file and what is wrong."""
    import json
    try:
        rep = json.loads(open(path).read())
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    baud = (rep.get("link") or {}).get("baud") if isinstance(rep, dict) else None
    if not (isinstance(baud, int) and not isinstance(baud, bool) and baud >= 1):
        raise ValueError(f"{path} has no board link rate (link.baud: {baud!r}; a report.json of "
                         f"`python -m hdl_gen build` with the board top has one)")
    return baud


def open_link(spec: str, *, timeout: float | None = None, baud: int | None = None,
              cfg=None) -> Link:
    """Open the link named by ``spec`` (see the module docstring). ``cfg`` is the configuration
    of the emulator or of the simulated RTL (default ``NetConfig()``)."""
    kind, kw = parse_link(spec)
    if kind == "emulator":
        from .emulator import EmulatorLink
        return EmulatorLink(cfg)
    if kind == "sim":
        from .sim import SimLink
        extra = {} if timeout is None else {"timeout": timeout}
        return SimLink(kw["simulator"], cfg, **extra)
    if kind == "serial":
        from .serial_link import DEFAULT_BAUD, SerialLink
        return SerialLink(kw["port"], kw["baud"] or baud or DEFAULT_BAUD,
                          timeout=1.0 if timeout is None else timeout)
    from .socket_link import SocketLink
    return SocketLink(kw["host"], kw["port"], timeout=1.0 if timeout is None else timeout)
