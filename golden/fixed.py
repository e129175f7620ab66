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

__all__ = ["IntArith", "FloatArith", "srand", "synapse_address", "step_key", "isqrt",
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
    x = x ^ ((x << np.uint64(13)) & _M32)
    x = x ^ (x >> np.uint64(17))
    x = x ^ ((x << np.uint64(5)) & _M32)
    return x


def srand(addr, key: int, bits: int):
    """Uniform integers in [0, 2^bits) for stochastic rounding, one per synapse address.

    ``x = addr XOR key``, then two rounds of xorshift32 (13, 17, 5); the result is the low
    ``bits`` bits. Pure XOR/shift wiring in hardware, and independent of processing order.
    """
    x = (np.asarray(addr, np.uint64) ^ np.uint64(key)) & _M32
    x = _xorshift32(_xorshift32(x))
    if bits >= 32:
        return x.astype(np.int64)
    return (x & np.uint64((1 << bits) - 1)).astype(np.int64)


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
        return np.right_shift(x + rnd, k)

    def sat(self, x, lo: int, hi: int, counter: str):
        """Clip to [lo, hi] and add the number of clipped elements to ``counter``."""
        over = (x < lo) | (x > hi)
        n = int(np.count_nonzero(over))
        if n:
            self.counters[counter] += n
            x = np.clip(x, lo, hi)
        return x

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
