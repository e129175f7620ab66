"""Counter-based random numbers of stochastic rounding: the RTL twin of :func:`golden.fixed.srand`.

``x = addr XOR key``, then two rounds of xorshift32 with shifts (13, 17, 5), all modulo 2^32; the
random number is the low ``bits`` bits of ``x``. :class:`SRand` is one lane of that: XOR/shift
wiring, about a dozen XOR levels per bit.

**P lanes for the price of one.** Every step of xorshift32 is a shift or an XOR, so the map
``L = xorshift32`` is linear over GF(2): ``L(a ^ b) = L(a) ^ L(b)``. The ``P`` synapses of one
memory word have addresses ``base ^ (k << 14)`` (``post = c*P + k`` occupies address bits 14 and
up, and the low ``log2 P`` bits of ``c*P`` are zero), hence::

    srand(base ^ (k << 14), key) = L(L(base ^ key)) ^ L(L(k << 14)) = R ^ K_k

with one shared ``R`` and a constant ``K_k`` per lane. With the stochastic-rounding mask applied,
``(R ^ K_k) & mask`` takes, bit by bit, ``R & mask`` where ``K_k`` has a 0 and ``~R & mask`` where
it has a 1: the lanes are pure wiring from two shared 32-bit values (:class:`SRandLanes`).
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["xorshift32", "xorshift32_int", "srand_value", "lane_constant", "lane_select",
           "SRand", "SRandLanes", "LANE_SHIFT"]

#: Position of the ``post`` field in ``golden.fixed.synapse_address``.
LANE_SHIFT = 14
_M32 = 0xFFFFFFFF


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


def xorshift32_int(x: int) -> int:
    """Return one round of xorshift32 (13, 17, 5) on the integer ``x`` (elaboration constants)."""
    x &= _M32
    x ^= (x << 13) & _M32
    x ^= x >> 17
    x ^= (x << 5) & _M32
    return x


def srand_value(m: Module, addr: Value, key: Value, *, bits: int = 32,
                name: str = "srand") -> Value:
    """Add ``golden.fixed.srand(addr, key, bits)`` (``bits`` 1..32) to ``m``; return its value."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits={bits} is invalid: allowed 1..32")
    x0 = Signal(32, name=f"{name}_x")
    m.d.comb += x0.eq(Value.cast(addr)[:32] ^ Value.cast(key)[:32])
    return xorshift32(m, xorshift32(m, x0, name=f"{name}_r1"), name=f"{name}_r2")[:bits]


def lane_constant(lane: int, lane_shift: int = LANE_SHIFT) -> int:
    """Return ``K_lane = L(L(lane << lane_shift))``, lane ``lane``'s XOR offset from lane 0."""
    return xorshift32_int(xorshift32_int((lane << lane_shift) & _M32))


def lane_select(r_masked: Value, r_inv_masked: Value, const: int) -> Value:
    """Return ``(R ^ const) & mask`` from ``R & mask`` and ``~R & mask`` (wiring only)."""
    return Cat(*(r_inv_masked[i] if (const >> i) & 1 else r_masked[i] for i in range(32)))


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


class SRandLanes(wiring.Component):
    """``lanes`` lanes of :func:`golden.fixed.srand` for the addresses ``base ^ (k << 14)``.

    One xorshift core and wiring (see the module docstring); combinational, no clock.

    Parameters
    ----------
    lanes : int
        Number of lanes ``P``, a power of two; ``base`` must have zeros in address bits
        ``14 .. 14 + log2(P) - 1`` (true for ``synapse_address(layer, c*P, pre)``).

    Members
    -------
    base : In(32)
        Address of lane 0.
    key : In(32)
        Step key.
    mask : In(32)
        Bits to keep, ``2^k - 1`` for ``k < 32`` and all ones otherwise.
    rnd : Out(data.ArrayLayout(32, lanes))
        ``rnd[k] = srand(base ^ (k << 14), key, 32) & mask``.
    """

    def __init__(self, *, lanes: int):
        if lanes < 1 or lanes & (lanes - 1) or lanes > (1 << (32 - LANE_SHIFT)):
            raise ValueError(f"SRandLanes lanes={lanes} is invalid: allowed a power of two "
                             f"1..{1 << (32 - LANE_SHIFT)}")
        self._lanes = lanes
        super().__init__({"base": In(32), "key": In(32), "mask": In(32),
                          "rnd": Out(data.ArrayLayout(32, lanes))})

    @property
    def lanes(self) -> int:
        """Number of lanes."""
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        r = srand_value(m, self.base, self.key)
        rm, rn = Signal(32), Signal(32)
        m.d.comb += [rm.eq(r & self.mask), rn.eq(~r & self.mask)]
        for k in range(self._lanes):
            m.d.comb += self.rnd[k].eq(lane_select(rm, rn, lane_constant(k)))
        return m
