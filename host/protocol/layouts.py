"""Payload layouts (:class:`Layout`) of every command and response, v1 and v2 forms."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .codes import MAX_PAYLOAD, SYNC2_SIZE, VERSION_1, VERSION_2, Cmd, Rsp

__all__ = [
    "Field", "Layout", "CMD_LAYOUTS", "RSP_LAYOUTS", "ACK_LAYOUTS", "STATUS_LAYOUT",
    "ProtocolError", "PayloadLengthError", "pack", "unpack", "max_items", "layout", "SYNC2_LAYOUT",
    "SYNC2_ACK_LAYOUT", "STATUS2_LAYOUT",
]

_CODES = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
          (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}


class ProtocolError(ValueError):
    """A payload that does not fit its layout."""


class PayloadLengthError(ProtocolError):
    """The payload length is wrong for the opcode (device answers ``BAD_LENGTH``)."""


@dataclass(frozen=True)
class Field:
    """One big-endian integer field of ``size`` bytes."""

    name: str
    size: int
    signed: bool = False

    @property
    def code(self) -> str:
        return _CODES[(self.size, self.signed)]

    @property
    def lo(self) -> int:
        return -(1 << (8 * self.size - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (8 * self.size - (1 if self.signed else 0))) - 1

    def check(self, value) -> int:
        """``value`` as an int, or :class:`ProtocolError` naming the field when it is not an
        integer (a bool, a float) or does not fit (no silent wrapping)."""
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise ProtocolError(f"field {self.name}: {value!r} is not an integer")
        v = value.__index__()
        if not self.lo <= v <= self.hi:
            raise ProtocolError(f"field {self.name}: {v} is out of range {self.lo}..{self.hi}")
        return v


@dataclass(frozen=True)
class Layout:
    """Payload layout: fixed ``fields``, then either repeated ``item`` records or opaque ``tail``
    bytes (or nothing). A device checks the length with :meth:`length_ok`."""

    fields: tuple[Field, ...] = ()
    item: tuple[Field, ...] = ()
    tail: str | None = None
    _fixed: struct.Struct = field(init=False, repr=False, compare=False)
    _item: struct.Struct = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.item and self.tail:
            raise ValueError("a layout has items or a tail, not both")
        fixed = struct.Struct(">" + "".join(f.code for f in self.fields))
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_item", struct.Struct(">" + "".join(f.code for f in self.item)))

    @property
    def fixed_size(self) -> int:
        """Bytes of the fixed fields."""
        return self._fixed.size

    @property
    def item_size(self) -> int:
        """Bytes of one repeated record (0 when there are none)."""
        return self._item.size

    def offset(self, name: str) -> int:
        """Byte offset of fixed field ``name`` in the payload."""
        off = 0
        for f in self.fields:
            if f.name == name:
                return off
            off += f.size
        raise KeyError(name)

    def length_ok(self, n: int) -> bool:
        """Whether a payload of ``n`` bytes fits this layout."""
        if n < self.fixed_size:
            return False
        rest = n - self.fixed_size
        if self.item:
            return rest % self.item_size == 0
        return self.tail is not None or rest == 0

    def pack(self, values: dict | None = None, items=(), tail: bytes = b"") -> bytes:
        """Encode fixed ``values`` (by field name), ``items`` (tuples) and ``tail`` bytes."""
        values = values or {}
        missing = [f.name for f in self.fields if f.name not in values]
        if missing:
            raise ProtocolError(f"missing field(s) {missing}")
        if items and not self.item:
            raise ProtocolError("this layout has no items")
        if tail and self.tail is None:
            raise ProtocolError("this layout has no tail")
        out = self._fixed.pack(*(f.check(values[f.name]) for f in self.fields))
        for it in items:
            if len(it) != len(self.item):
                raise ProtocolError(f"record {it!r} has {len(it)} fields, the layout "
                                    f"{len(self.item)}")
            out += self._item.pack(*(f.check(x) for f, x in zip(self.item, it)))
        return out + bytes(tail)

    def unpack(self, payload: bytes) -> tuple[dict, list, bytes]:
        """Decode into ``(values, items, tail)``; raise :class:`PayloadLengthError`."""
        if not self.length_ok(len(payload)):
            raise PayloadLengthError(f"payload of {len(payload)} bytes does not fit {self}")
        n = self.fixed_size
        values = dict(zip((f.name for f in self.fields), self._fixed.unpack_from(payload, 0)))
        rest = bytes(payload[n:])
        if self.item:
            return values, list(self._item.iter_unpack(rest)), b""
        return values, [], rest

    def __str__(self):
        parts = [f"{f.name}:{'i' if f.signed else 'u'}{8 * f.size}" for f in self.fields]
        if self.item:
            parts.append("{" + ",".join(f"{f.name}:{'i' if f.signed else 'u'}{8 * f.size}"
                                        for f in self.item) + "}*")
        if self.tail:
            parts.append(f"{self.tail}[]")
        return " ".join(parts) or "(empty)"


def _L(*fields, item=(), tail=None):
    def mk(spec):
        name, size, *signed = spec
        return Field(name, size, bool(signed and signed[0]))
    return Layout(tuple(mk(f) for f in fields), tuple(mk(f) for f in item), tail)


_MEM_HEADER = (("mem", 1), ("layer", 1), ("offset", 4), ("count", 2))

CMD_LAYOUTS: dict[Cmd, Layout] = {
    Cmd.SYNC: _L(("flags", 1), ("nonce", 4)),
    Cmd.STATUS: _L(),
    Cmd.WRITE_CONFIG: _L(tail="config_json"),
    Cmd.WRITE_MEM: _L(*_MEM_HEADER, tail="data"),
    Cmd.READ_MEM: _L(*_MEM_HEADER),
    Cmd.RESET_STATE: _L(),
    Cmd.EVENTS: _L(("t", 1), ("flags", 1), tail="events"),
    Cmd.LABEL: _L(("label", 2)),
    Cmd.LEARN: _L(("on", 1)),
    Cmd.RUN: _L(("n", 2)),
    Cmd.OUTPUTS: _L(("mask", 1)),
    Cmd.SAMPLE: _L(("flags", 1), ("label", 2), ("t0", 1), tail="steps"),
}

ACK_LAYOUTS: dict[Cmd, Layout] = {
    Cmd.SYNC: _L(("nonce", 4), ("version", 1)),
    Cmd.WRITE_CONFIG: _L(("config_crc", 4)),
    Cmd.WRITE_MEM: _L(),
    Cmd.RESET_STATE: _L(),
    Cmd.EVENTS: _L(("t", 1), ("active", 2)),
    Cmd.LABEL: _L(),
    Cmd.LEARN: _L(),
    Cmd.RUN: _L(("t", 2), ("step", 4), ("spikes", 4), ("flips", 4)),
    Cmd.OUTPUTS: _L(),
    Cmd.SAMPLE: _L(("t", 2)),           # a SAMPLE frame that does not end the sample
}

STATUS_LAYOUT = _L(
    ("version", 1), ("flags", 1), ("outputs", 1), ("reserved", 1),
    ("t", 2), ("label", 2), ("step", 4), ("config_crc", 4),
    ("max_payload", 2), ("max_batch", 2), ("replay_bytes", 4),
    ("sat_membrane", 4), ("sat_trace", 4), ("sat_delta", 4), ("sat_momentum", 4), ("sat_v", 4),
    ("frames_ok", 4), ("crc_errors", 4), ("length_errors", 4), ("cmd_errors", 4),
)

RSP_LAYOUTS: dict[Rsp, Layout] = {
    Rsp.ERROR: _L(("code", 1), ("op", 1), ("arg", 4)),
    Rsp.STATUS: STATUS_LAYOUT,
    Rsp.DATA: _L(*_MEM_HEADER, tail="data"),
    Rsp.SPIKES: _L(("t", 1), ("layer", 1), ("format", 1), tail="spikes"),
    Rsp.FLIPS: _L(item=(("t", 1), ("layer", 1), ("post", 2), ("pre", 2))),
    Rsp.PREDICTION: _L(("prediction", 2), ("offset", 2), tail="scores"),
    Rsp.RESULT: _L(("prediction", 2), ("t", 2), ("step", 4), ("spikes", 4), ("flips", 4),
                   item=(("step_flips", 4),)),
}

# --- version 2 forms of SYNC and STATUS (a v2 SYNC is told apart by its length) ------------------
SYNC2_LAYOUT = _L(("flags", 1), ("nonce", 4), ("version", 1), ("next_seq", 1))
SYNC2_ACK_LAYOUT = _L(("nonce", 4), ("version", 1), ("next_seq", 1), ("window", 1),
                      ("credit", 2))
STATUS2_LAYOUT = Layout(STATUS_LAYOUT.fields + _L(
    ("window", 1), ("next_seq", 1), ("credit", 2), ("seq_errors", 4), ("replays", 4)).fields)
assert SYNC2_LAYOUT.fixed_size == SYNC2_SIZE


def pack(op: int, values: dict | None = None, items=(), tail: bytes = b"", *,
         ack_of: int | None = None, version: int = VERSION_1) -> bytes:
    """Encode the payload of ``op`` (for ``Rsp.ACK`` give the command in ``ack_of``; ``version``
    picks the v2 forms of ``SYNC``, its ``ACK`` and ``STATUS``). A field that is not an integer
    or does not fit raises :class:`ProtocolError`."""
    return layout(op, ack_of, version).pack(values, items, tail)


def unpack(op: int, payload: bytes, *, ack_of: int | None = None,
           version: int = VERSION_1) -> tuple[dict, list, bytes]:
    """Decode the payload of ``op`` (for ``Rsp.ACK`` give the command in ``ack_of``)."""
    return layout(op, ack_of, version).unpack(payload)


def layout(op: int, ack_of: int | None = None, version: int = VERSION_1) -> Layout:
    """The payload layout of ``op`` (of the ACK of ``ack_of``) in protocol ``version``."""
    if version >= VERSION_2:
        if op == Cmd.SYNC:
            return SYNC2_LAYOUT
        if op == Rsp.ACK and ack_of == Cmd.SYNC:
            return SYNC2_ACK_LAYOUT
        if op == Rsp.STATUS:
            return STATUS2_LAYOUT
    return _layout(op, ack_of)


def _layout(op, ack_of) -> Layout:
    if op == Rsp.ACK:
        return ACK_LAYOUTS[Cmd(ack_of)]
    if op in Cmd._value2member_map_:
        return CMD_LAYOUTS[Cmd(op)]
    if op in Rsp._value2member_map_:
        return RSP_LAYOUTS[Rsp(op)]
    raise ProtocolError(f"unknown opcode 0x{op:02x}")


def max_items(layout: Layout, max_payload: int = MAX_PAYLOAD) -> int:
    """Most repeated records (or tail bytes) that fit one frame of ``layout``."""
    room = max_payload - layout.fixed_size
    return room // layout.item_size if layout.item else room
