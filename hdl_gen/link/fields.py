"""Shared pieces of the link layers: the CRC algorithms, SYNC bytes and big-endian field blocks.

The CRC parameters, layouts and SYNC bytes come from :mod:`host.protocol` (the one definition);
this module only turns them into Amaranth objects.
"""
from __future__ import annotations

from amaranth import Cat, Const, Value
from amaranth.lib import crc
from amaranth.utils import ceil_log2

from host import protocol as P

__all__ = ["CRC16_ALGORITHM", "CRC32_ALGORITHM", "SYNC0", "SYNC1", "HDR_BYTES", "ItemKind",
           "be_block", "hdr_field", "block_byte"]

#: CRC-16 of the frames, built from host.protocol's parameters (not restated here)
CRC16_ALGORITHM = crc.Algorithm(crc_width=P.CRC16.width, polynomial=P.CRC16.poly,
                                initial_crc=P.CRC16.init, reflect_input=P.CRC16.refin,
                                reflect_output=P.CRC16.refout, xor_output=P.CRC16.xorout)
assert CRC16_ALGORITHM(data_width=8).residue() == P.CRC16.residue
assert CRC16_ALGORITHM(data_width=8).compute(b"123456789") == P.CRC16.check
#: CRC-32/ISO-HDLC (``binascii.crc32``) of the WRITE_CONFIG payload (``protocol.config_crc``)
CRC32_ALGORITHM = crc.catalog.CRC32_ISO_HDLC

SYNC0, SYNC1 = P.SYNC[0], P.SYNC[1]
HDR_BYTES = 8                 # payload bytes the deframer also keeps in registers


class ItemKind:
    FRAME = 0
    ERROR = 1


def _fit(v, width):
    """``v`` zero-extended or truncated to ``width`` bits."""
    v = Value.cast(v)
    if len(v) >= width:
        return v[:width]
    return Cat(v, Const(0, width - len(v)))


def be_block(layout: P.Layout, values: dict) -> Value:
    """The fixed fields of ``layout`` as one big-endian value: byte 0 on the wire is the top byte.
    ``values`` maps field names to Amaranth values (truncated / zero-extended to the field)."""
    parts = [_fit(values[f.name], 8 * f.size) for f in layout.fields]
    return Cat(*reversed(parts))


def hdr_field(hdr: Value, layout: P.Layout, name: str) -> Value:
    """Field ``name`` of ``layout`` from the first payload bytes (byte k in ``hdr[8k:8k+8]``)."""
    off = layout.offset(name)
    size = next(f.size for f in layout.fields if f.name == name)
    assert off + size <= HDR_BYTES
    return Cat(*[hdr[8 * k:8 * k + 8] for k in reversed(range(off, off + size))])


def block_byte(value: Value, nbytes: int, i):
    """Byte ``i`` (0 = first on the wire) of a ``nbytes``-byte big-endian block."""
    if nbytes <= 1:
        return value[:8]
    return value.word_select(Value.cast(nbytes - 1 - i)[:ceil_log2(nbytes)], 8)

