"""The memories a design really instantiates, read from its elaborated netlist (no synthesis).

:func:`memory_inventory` elaborates a design and lists every memory in it
(:class:`amaranth.lib.memory.Memory`, FIFO storage included) with its shape and ports, in the
format of the architectures' ``memories(cfg, lanes)`` interface (:mod:`hdl_gen.architectures`).
The parallel core answers ``Core.memories`` with it; the board flow's fit check uses it for the
parts around the core (link, FIFOs). No golden twin: bookkeeping, not hardware.
"""
from __future__ import annotations

from amaranth.hdl import Fragment, Shape

__all__ = ["memory_inventory"]


def _walk(frag, path, skip):
    from amaranth.hdl._mem import MemoryInstance   # amaranth 0.5's elaborated memory

    for sub, name, _ in frag.subfragments:
        p = path + (str(name),)
        if p in skip:
            continue
        if isinstance(sub, MemoryInstance):
            data = sub._data
            reads = sub._read_ports
            yield {
                "name": ".".join(p),
                "width": Shape.cast(data.shape).width,
                "depth": data.depth,
                "ports": 2,
                "read_ports": sum(1 for r in reads if r._domain != "comb"),
                "async_read": any(r._domain == "comb" for r in reads),
                "write_ports": len(sub._write_ports),
                "init": any(data.init._raw),   # the elements as integers (amaranth 0.5)
            }
        yield from _walk(sub, p, skip)


def memory_inventory(design, *, skip=()) -> list[dict]:
    """Every memory of ``design`` (an elaboratable, elaborated here without a platform).

    ``skip``: submodule paths (tuples of names, e.g. ``("core",)``) left out, with everything
    under them. Each entry: ``name`` (dotted submodule path), ``width``, ``depth``, ``ports`` (2:
    the read and write ports have their own address signals; a memory whose ports share one
    address is only known as such to its author, see ``memories()``), ``read_ports`` (synchronous
    ones), ``async_read`` (a combinational read port), ``write_ports``, ``init`` (non-zero
    initial contents).
    """
    skip = {tuple(s) for s in skip}
    return list(_walk(Fragment.get(design, None), (), skip))
