"""Arithmetic of the two modes, and the counter-based random numbers of stochastic rounding.

The golden model runs one code path in two arithmetics:

* :class:`IntArith` -- the hardware contract: int64 arrays, arithmetic right shifts (floor),
  round-half-up shifts, saturation that *counts* every clipped value (the status word's overflow
  counters), stochastic rounding from :func:`srand`.
* :class:`FloatArith` -- the reference: the same formulas on float64 in the same LSB units, exact
  shifts (multiplication by a power of two), no saturation, no rounding.

docs/fixed_point.md is the prose version of this file.
"""
from __future__ import annotations

import numpy as np

__all__ = ["IntArith", "FloatArith", "srand", "srand_block", "synapse_address", "step_key", "isqrt",
           "GOLDEN32", "SAT_COUNTERS"]

GOLDEN32 = 0x9E3779B9          # step-key increment (2^32 / golden ratio)
_M32 = np.uint64(0xFFFFFFFF)
SAT_COUNTERS = ("membrane", "trace", "delta", "momentum", "v")


def step_key(seed: int, step: int) -> int:
    """32-bit key of global learning step ``step``: ``(seed + step * GOLDEN32) mod 2^32``.

    Hardware keeps it in a register that adds GOLDEN32 after every learning step.
    """
    return (int(seed) + int(step) * GOLDEN32) & 0xFFFFFFFF


def synapse_address(layer: int, post, pre):
    """Address of synapse (layer, post, pre) used to key its random numbers.

    ``(layer << 28) | (post << 14) | pre``: a concatenation, so hardware needs no multiplier.
    """
    return (np.uint64(layer) << np.uint64(28)) | (np.asarray(post, np.uint64) << np.uint64(14)) \
        | np.asarray(pre, np.uint64)


def _xorshift32(x):
    """One xorshift32 round (13, 17, 5) on uint32 values (shifts drop the bits above 31)."""
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    return x ^ (x << np.uint32(5))


def _mix(x):
    """The two xorshift32 rounds of :func:`srand` on a uint32 array."""
    return _xorshift32(_xorshift32(x))


def _mix_int(x: int) -> int:
    """:func:`_mix` of one Python int (no array round trip)."""
    for _ in range(2):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    return x


def srand(addr, key: int, bits: int):
    """Uniform integers in [0, 2^bits) for stochastic rounding, one per synapse address.

    ``x = addr XOR key``, then two rounds of xorshift32 (13, 17, 5); the result is the low
    ``bits`` bits. Pure XOR/shift wiring in hardware, and independent of processing order.
    """
    x = ((np.asarray(addr, np.uint64) ^ np.uint64(key)) & _M32).astype(np.uint32)
    x = _mix(x)
    if bits < 32:
        x = x & np.uint32((1 << bits) - 1)
    return x.astype(np.int64)


_MIX_TABLES: list = []


def _mix_tables():
    """``_mix`` of every pre field, post field and layer field of an address (int64 arrays)."""
    if not _MIX_TABLES:
        i = np.arange(1 << 14, dtype=np.uint32)
        for t in (i, i << np.uint32(14), np.arange(16, dtype=np.uint32) << np.uint32(28)):
            t = _mix(t).astype(np.int64)
            t.flags.writeable = False
            _MIX_TABLES.append(t)
    return _MIX_TABLES


def srand_block(layer: int, post, pre, key: int, bits: int):
    """``srand(synapse_address(layer, post[:, None], pre[None, :]), key, bits)``, int64.

    Both xorshift rounds are linear over GF(2), and the three address fields occupy disjoint
    bits, so ``mix(addr ^ key) = mix(layer<<28) ^ mix(post<<14) ^ mix(pre) ^ mix(key)``: one
    table look-up per row and per column and one XOR per synapse give the same bits as the
    per-synapse formula (the RTL's SRandLanes shares its xorshift core the same way). The mask
    to ``bits`` bits is applied to the row and column vectors, as ``(r ^ c) & m`` equals
    ``(r & m) ^ (c & m)``.
    """
    t_pre, t_post, t_layer = _mix_tables()
    mask = (1 << min(bits, 32)) - 1
    c = (int(t_layer[layer]) ^ _mix_int(int(key) & 0xFFFFFFFF)) & mask
    row = t_post[post] & mask
    row ^= c
    col = t_pre[pre] & mask
    return row[:, None] ^ col[None, :]


def isqrt(v):
    """Floor square root of non-negative integers (element-wise), exact for int64."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


class IntArith:
    """Hardware arithmetic: integers, floor shifts, counted saturation."""

    is_int = True
    dtype = np.int64

    def __init__(self):
        self.counters = {k: 0 for k in SAT_COUNTERS}

    def zeros(self, shape):
        return np.zeros(shape, np.int64)

    @staticmethod
    def shr(x, k: int):
        """Arithmetic right shift (floor division by 2^k)."""
        return np.right_shift(x, k)

    @staticmethod
    def shr_round(x, k: int):
        """Shift right by k, rounding half up: floor((x + 2^(k-1)) / 2^k)."""
        if k == 0:
            return x
        return np.right_shift(x + (1 << (k - 1)), k)

    @staticmethod
    def sround(x, k: int, rnd):
        """Stochastic rounding of x / 2^k: floor((x + rnd) / 2^k), rnd uniform in [0, 2^k)."""
        y = np.add(x, rnd)
        return np.right_shift(y, k, out=y) if isinstance(y, np.ndarray) else y >> k

    def sat(self, x, lo: int, hi: int, counter: str):
        """Clip to [lo, hi] and add the number of clipped elements to ``counter``."""
        if x.size == 0 or (x.min() >= lo and x.max() <= hi):   # the common case: two reductions
            return x
        self.counters[counter] += int(np.count_nonzero((x < lo) | (x > hi)))
        return np.clip(x, lo, hi)

    @staticmethod
    def sqrt(v):
        return isqrt(v)


class FloatArith:
    """Reference arithmetic: reals in the same LSB units, exact shifts, no saturation."""

    is_int = False
    dtype = np.float64

    def __init__(self):
        self.counters = {k: 0 for k in SAT_COUNTERS}

    def zeros(self, shape):
        return np.zeros(shape, np.float64)

    @staticmethod
    def shr(x, k: int):
        return x * (2.0 ** -k)

    shr_round = shr

    @staticmethod
    def sround(x, k: int, rnd):
        return x * (2.0 ** -k)

    def sat(self, x, lo, hi, counter):
        return x

    @staticmethod
    def sqrt(v):
        return np.sqrt(v)
