"""The memory map of ``WRITE_MEM`` / ``READ_MEM`` and the word codecs (docs/protocol.md §6)."""
from __future__ import annotations

from dataclasses import dataclass

from .codes import REG_BITS, Mem, Reg
from .layouts import PayloadLengthError, ProtocolError

__all__ = [
    "ElementFormat", "mem_format", "mem_size", "mem_layers", "reg_count", "score_bytes",
    "encode_elements", "decode_elements",
]

# --- memory map ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ElementFormat:
    """Wire format of one memory word: ``bits`` wide; ``packed`` = 8 per byte (weights), else
    ``nbytes`` (1, 2, 4 or 8) big-endian, two's complement when ``signed``. ``lo..hi`` is the
    range a write may hold (outside: ``RANGE``)."""

    bits: int
    signed: bool
    packed: bool
    lo: int
    hi: int

    @property
    def nbytes(self) -> int:
        for n in (1, 2, 4, 8):
            if self.bits <= 8 * n:
                return n
        raise ValueError(f"{self.bits} bits do not fit 8 bytes")

    def data_size(self, count: int) -> int:
        """Bytes of ``count`` words."""
        return (count + 7) // 8 if self.packed else count * self.nbytes

    def max_count(self, room: int) -> int:
        """Most words in ``room`` bytes (packed words in whole bytes)."""
        return room * 8 if self.packed else room // self.nbytes


def mem_format(cfg, mem: Mem, addr: int = 0) -> ElementFormat:
    """Element format of memory ``mem`` (for ``Mem.REG``, of register ``addr``)."""
    d = cfg.derived()
    mem = Mem(mem)
    if mem == Mem.WEIGHT:
        return ElementFormat(1, False, True, 0, 1)
    if mem == Mem.MOMENTUM:
        return ElementFormat(cfg.momentum_bits, True, False, -d.mom_max, d.mom_max)
    if mem == Mem.V:
        return ElementFormat(cfg.v_bits, False, False, 0, d.v_max)
    if mem == Mem.THETA:
        return ElementFormat(cfg.membrane_bits, True, False, 1, d.mem_max)
    if mem == Mem.BIAS:
        return ElementFormat(cfg.membrane_bits, True, False, -d.mem_max, d.mem_max)
    bits = REG_BITS[Reg(min(addr, Reg.GAMMA))]
    return ElementFormat(32, False, False, 0, (1 << bits) - 1)


def mem_layers(cfg, mem: Mem) -> int:
    """Number of valid ``layer`` values of ``mem``."""
    mem = Mem(mem)
    if mem == Mem.REG:
        return 1
    if mem == Mem.THETA:
        return cfg.n_layers - 1
    return cfg.n_layers


def reg_count(cfg) -> int:
    """Number of registers in ``Mem.REG``."""
    return int(Reg.GAMMA) + cfg.n_layers


def mem_size(cfg, mem: Mem, layer: int) -> int:
    """Words in ``mem`` of ``layer`` (0 when the layer does not exist)."""
    mem = Mem(mem)
    if not 0 <= layer < mem_layers(cfg, mem):
        return 0
    L = cfg.layers
    if mem in (Mem.WEIGHT, Mem.MOMENTUM):
        return L[layer] * L[layer + 1]
    if mem == Mem.V:
        return cfg.T
    if mem in (Mem.THETA, Mem.BIAS):
        return L[layer + 1]
    return reg_count(cfg)


def score_bytes(cfg) -> int:
    """Bytes of one output score in ``PREDICTION`` (|score| <= T * mem_max)."""
    bits = cfg.membrane_bits + max(0, (cfg.T - 1).bit_length())
    return 4 if bits <= 32 else 8


def encode_elements(fmt: ElementFormat, values) -> bytes:
    """Encode integer words (any sequence or array) in ``fmt``; packed words are 0/1."""
    import numpy as np

    v = np.asarray(values)
    if v.dtype.kind not in "biu":
        raise ProtocolError(f"memory words must be integers, got {v.dtype}")
    v = v.astype(np.int64).ravel()
    lo, hi = (0, 1) if fmt.packed else ((-(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1)
                                        if fmt.signed else (0, (1 << fmt.bits) - 1))
    if v.size and (v.min() < lo or v.max() > hi):
        bad = int(v[(v < lo) | (v > hi)][0])
        raise ProtocolError(f"memory word {bad} does not fit {fmt.bits} "
                            f"{'signed' if fmt.signed else 'unsigned'} bits ({lo}..{hi})")
    if fmt.packed:
        return np.packbits(v.astype(bool), bitorder="little").tobytes()
    dt = np.dtype(f">{'i' if fmt.signed else 'u'}{fmt.nbytes}")
    return v.astype(dt).tobytes()


def decode_elements(fmt: ElementFormat, data: bytes, count: int):
    """Decode ``count`` words of ``fmt`` from ``data`` into an int64 NumPy array."""
    import numpy as np

    if len(data) != fmt.data_size(count):
        raise PayloadLengthError(f"{len(data)} bytes for {count} words of {fmt}")
    if fmt.packed:
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=count, bitorder="little")
        return bits.astype(np.int64)
    dt = np.dtype(f">{'i' if fmt.signed else 'u'}{fmt.nbytes}")
    return np.frombuffer(data, dt).astype(np.int64)
