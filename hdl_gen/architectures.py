"""The core architectures the generator can build, by name.

Every architecture is a :class:`amaranth.lib.wiring.Component` with the wiring signature of
:class:`hdl_gen.core.Core` (same streams, payloads, status word and memory spaces), constructed
as ``cls(cfg, lanes=P)``, so the link (:class:`hdl_gen.board_top.BoardTop`), the benches and the
board flow take any of them:

* ``parallel``: :class:`hdl_gen.core.Core`, one lane-parallel engine per layer;
* ``compact``: :class:`hdl_gen.compact_core.CompactCore`, one time-multiplexed datapath for all
  layers with the state in deep, narrow block RAM / SPRAM.

Each class also answers ``memories(cfg, lanes) -> list[dict]`` (a classmethod): every memory it
instantiates, one dict per memory, for the board flow's fit check before synthesis
(:mod:`hdl_gen.flow.fit`)::

    {"name": str,            # where it is (for the error message)
     "width": int, "depth": int,
     "ports": 1 | 2,         # 1: one address for read and write (single port, SPRAM-able);
                             # 2: one synchronous read port + one write port (simple dual port)
     "read_ports": int,      # optional, default 1: synchronous read ports (> 1: replicated)
     "async_read": bool,     # optional, default False: a combinational read port (no block RAM
                             # on the iCE40: flip-flops; LUT RAM on the ECP5)
     "init": bool,           # optional, default False: non-zero initial contents (no SPRAM)
     "style": "huge",        # optional: the memory carries ram_style = "huge" on the iCE40
                             # (SPRAM whatever the cost; see hdl_gen/flow/spram.py)
     "count": int}           # optional, default 1: identical instances

Classes are imported lazily: an architecture whose module is not on this branch is reported by
:func:`core_class` with :class:`ArchitectureError` (one line for the CLI), not an ImportError.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect

__all__ = ["ARCHITECTURES", "DEFAULT_ARCH", "ArchitectureError", "core_class", "available",
           "check_arch", "arch_of", "default_lanes"]

#: name -> (module, class)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "parallel": ("hdl_gen.core", "Core"),
    "compact": ("hdl_gen.compact_core", "CompactCore"),
}

#: What ``python -m hdl_gen`` and the board flow build when no ``--arch`` is given.
DEFAULT_ARCH = "parallel"


class ArchitectureError(ValueError):
    """An unknown architecture, or one whose module is not there (message: one line)."""


def check_arch(arch: str) -> str:
    """``arch`` if it is a registered name, else :class:`ArchitectureError`."""
    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"--arch {arch!r} is invalid: allowed {', '.join(ARCHITECTURES)}")
    return arch


def core_class(arch: str = DEFAULT_ARCH) -> type:
    """The core class of ``arch`` (imported on first use)."""
    mod, cls = ARCHITECTURES[check_arch(arch)]
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name != mod:                    # the module exists but something it imports fails
            raise
        raise ArchitectureError(f"--arch {arch}: {mod} is not in this tree yet "
                                f"(available: {', '.join(available())})") from None
    try:
        return getattr(module, cls)
    except AttributeError:
        raise ArchitectureError(f"--arch {arch}: {mod} has no {cls}") from None


def available() -> list[str]:
    """The registered architectures whose module is present (without importing them)."""
    return [a for a, (mod, _) in ARCHITECTURES.items() if importlib.util.find_spec(mod)]


def arch_of(core) -> str:
    """The registered name of ``core``'s class (a core instance or class)."""
    cls = core if isinstance(core, type) else type(core)
    for arch, (mod, name) in ARCHITECTURES.items():
        if cls.__module__ == mod and cls.__name__ == name:
            return arch
    raise ArchitectureError(f"{cls.__module__}.{cls.__name__} is not a registered architecture")


def default_lanes(cls) -> int:
    """The lane count ``cls(cfg)`` uses when none is given (its ``lanes`` keyword's default)."""
    return inspect.signature(cls).parameters["lanes"].default
