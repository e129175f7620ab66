"""Small shared pieces of the datapath generators: index shapes, lane helpers, fixed-width fields.

The event field widths below are config-independent on purpose: they are the largest values
:class:`golden.config.NetConfig` allows (16384 neurons per layer, 15 weight layers, T <= 256), so
the top's stream layouts (and the host protocol built on them) never change with the network.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, unsigned
from amaranth.utils import ceil_log2

__all__ = ["NEURON_BITS", "LAYER_BITS", "T_BITS", "uidx", "words", "check_lanes",
           "lowest_set", "highest_set", "popcount", "sat_sym", "shr_round",
           "weight_words", "unpack_weight_words"]

NEURON_BITS = 14      # neuron / pre / post index in every event (layers are <= 16384 wide)
LAYER_BITS = 4        # weight-layer index (<= 15 weight layers)
T_BITS = 8            # time-step index (T <= 256)


def uidx(n: int):
    """Unsigned shape that holds ``0 .. n-1`` (at least one bit)."""
    return unsigned(max(1, ceil_log2(max(n, 1))))


def words(n: int, lanes: int) -> int:
    """Number of ``lanes``-wide words that hold ``n`` neurons."""
    return -(-n // lanes)


def check_lanes(lanes: int) -> None:
    """Raise ValueError unless ``lanes`` is a power of two >= 2 (the word/lane split is a slice)."""
    if lanes < 2 or lanes & (lanes - 1):
        raise ValueError(f"lanes={lanes} is invalid: allowed a power of two >= 2 (8, 16, 32, 64)")


def lowest_set(m, bits: int):
    """Index of the lowest set bit of ``m`` (0 when ``m == 0``): a priority encoder.

    ``m & -m`` isolates the lowest set bit (one carry chain), then each index bit is an OR over
    the lanes whose index has it set: logarithmic depth, not a chain of ``bits`` multiplexers.
    """
    width = uidx(bits).width
    onehot = (m & (~m + 1))[:bits]
    if width == 0 or bits == 1:
        return Const(0, uidx(bits))
    return Cat(*(Cat(*(onehot[k] for k in range(bits) if (k >> b) & 1)).any()
                 for b in range(width)))


def highest_set(m, bits: int):
    """Index of the highest set bit of ``m`` (0 when ``m == 0``)."""
    idx = Const(0, uidx(bits))
    for k in range(bits):
        idx = Mux(m[k], k, idx)
    return idx


def popcount(bits):
    """Sum of a list of 1-bit values as a balanced adder tree."""
    vals = [b for b in bits]
    if not vals:
        return Const(0, 1)
    while len(vals) > 1:
        nxt = [vals[i] + vals[i + 1] for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def sat_sym(x, limit: int):
    """``(clip(x, -limit, limit), clipped)``: symmetric saturation and its overflow flag."""
    hi = x > limit
    lo = x < -limit
    return Mux(hi, limit, Mux(lo, -limit, x)), hi | lo


def shr_round(x, k: int):
    """Round-half-up right shift ``(x + 2^(k-1)) >> k`` (golden ``IntArith.shr_round``)."""
    if k == 0:
        return x
    return (x + (1 << (k - 1))) >> k


def weight_words(w_sign, lanes: int) -> list[int]:
    """Pack +-1 weights ``w_sign`` (n_post, n_pre) into the weight-memory words of one layer.

    Word ``i * C + c`` holds the weights from pre ``i`` to posts ``c*P .. c*P+P-1``; bit ``k``
    is 1 for +1. Padding lanes (post >= n_post) are 0.
    """
    import numpy as np

    w = np.asarray(w_sign)
    n_post, n_pre = w.shape
    C = words(n_post, lanes)
    pad = np.zeros((C * lanes, n_pre), np.uint64)
    pad[:n_post] = (w > 0)
    out = []
    for i in range(n_pre):
        col = pad[:, i]
        for c in range(C):
            bits = col[c * lanes:(c + 1) * lanes]
            out.append(int(sum(int(b) << k for k, b in enumerate(bits))))
    return out


def unpack_weight_words(ws, n_post: int, n_pre: int, lanes: int):
    """Inverse of :func:`weight_words`: an int8 (n_post, n_pre) array of +-1."""
    import numpy as np

    C = words(n_post, lanes)
    w = np.zeros((n_post, n_pre), np.int8)
    for i in range(n_pre):
        for j in range(n_post):
            w[j, i] = 1 if (int(ws[i * C + j // lanes]) >> (j % lanes)) & 1 else -1
    return w
