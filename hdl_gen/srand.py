"""Counter-based random numbers of stochastic rounding: the RTL twin of :func:`golden.fixed.srand`.

``x = addr XOR key``, then two rounds of xorshift32 with shifts (13, 17, 5), all modulo 2^32; the
random number is the low ``bits`` bits of ``x``. The function is pure XOR/shift wiring (about a
dozen XOR levels per bit), independent of the order in which synapses are visited, so every lane
of a datapath gets its own copy.
"""
from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["xorshift32", "srand_value", "SRand", "srand_lanes"]


def xorshift32(m: Module, x: Value, *, name: str = "xs") -> Signal:
    """Add one round of xorshift32 (13, 17, 5) on the 32-bit ``x`` to ``m``; return the result.

    Every intermediate value is a named combinational signal: the expression tree would otherwise
    be duplicated at each step (each step uses its input twice).
    """
    x1, x2, x3 = (Signal(32, name=f"{name}_{n}") for n in ("a", "b", "c"))
    m.d.comb += [
        x1.eq(Value.cast(x)[:32] ^ (Value.cast(x)[:32] << 13)[:32]),
        x2.eq(x1 ^ (x1 >> 17)),
        x3.eq(x2 ^ (x2 << 5)[:32]),
    ]
    return x3


def srand_value(m: Module, addr: Value, key: Value, *, bits: int = 32,
                name: str = "srand") -> Value:
    """Add ``golden.fixed.srand(addr, key, bits)`` (``bits`` 1..32) to ``m``; return its value."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits={bits} is invalid: allowed 1..32")
    x0 = Signal(32, name=f"{name}_x")
    m.d.comb += x0.eq(Value.cast(addr)[:32] ^ Value.cast(key)[:32])
    return xorshift32(m, xorshift32(m, x0, name=f"{name}_r1"), name=f"{name}_r2")[:bits]


class SRand(wiring.Component):
    """One lane of :func:`golden.fixed.srand`: combinational, no clock.

    Parameters
    ----------
    bits : int
        Width of the random number, 1..32 (``golden.fixed.srand``'s ``bits``; for ``bits >= 32``
        golden returns all 32 bits, which is ``bits=32`` here).

    Members
    -------
    addr : In(32)
        Synapse address, ``golden.fixed.synapse_address(layer, post, pre)``.
    key : In(32)
        Step key, ``golden.fixed.step_key(seed, step)``.
    rnd : Out(bits)
        The low ``bits`` bits of ``xorshift32(xorshift32(addr ^ key))``.
    """

    def __init__(self, *, bits: int = 32):
        if not 1 <= bits <= 32:
            raise ValueError(f"SRand bits={bits} is invalid: allowed 1..32")
        self._bits = bits
        super().__init__({"addr": In(32), "key": In(32), "rnd": Out(bits)})

    @property
    def bits(self) -> int:
        """Width of the random number."""
        return self._bits

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.rnd.eq(srand_value(m, self.addr, self.key, bits=self._bits))
        return m


def srand_lanes(m: Module, addrs, key: Value, *, bits: int = 32, name: str = "srand"):
    """Add one :class:`SRand` per address in ``addrs`` to ``m``; return their ``rnd`` outputs.

    ``addrs`` is a sequence of 32-bit values (one per lane); ``key`` is shared by all lanes. The
    submodules are named ``{name}{lane}``.
    """
    outs = []
    for lane, addr in enumerate(addrs):
        unit = SRand(bits=bits)
        m.submodules[f"{name}{lane}"] = unit
        m.d.comb += [unit.addr.eq(addr), unit.key.eq(key)]
        rnd = Signal(bits, name=f"{name}{lane}_rnd")
        m.d.comb += rnd.eq(unit.rnd)
        outs.append(rnd)
    return outs
