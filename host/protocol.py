"""The wire protocol between the host and the accelerator: one definition for host, emulator and RTL.

Everything here is plain data or stdlib code, so ``hdl_gen`` (the UART deframer/framer in
Amaranth) and ``verif`` (the cocotb benches) import it without pulling in NumPy or pyserial.
docs/protocol.md is the prose form of this module; a test checks that the two agree.

Frame (all multi-byte fields big-endian)::

    +------+------+----+-----+-------+-------------+--------+
    | 0xA5 | 0x5A | OP | SEQ |  LEN  | PAYLOAD     | CRC16  |
    |  1   |  1   | 1  |  1  | 2     | LEN bytes   | 2      |
    +------+------+----+-----+-------+-------------+--------+

``CRC16`` is CRC-16/CCITT-FALSE (``amaranth.lib.crc.catalog.CRC16_CCITT_FALSE``) over
``OP .. PAYLOAD``, sent most significant byte first, so the CRC over ``OP .. CRC16`` is 0.
``LEN <= MAX_PAYLOAD``. Commands have ``OP < 0x80`` (:class:`Cmd`), responses ``OP >= 0x80``
(:class:`Rsp`); a response carries the ``SEQ`` of the command it answers.

Every command gets exactly one *terminal* response (``ACK``, ``ERROR``, ``STATUS`` or ``DATA``);
only ``RUN`` sends non-terminal ones (``SPIKES``, ``FLIPS``, ``PREDICTION``) before it.
Payload layouts are :class:`Layout` objects in :data:`CMD_LAYOUTS`, :data:`RSP_LAYOUTS` and
:data:`ACK_LAYOUTS`; field offsets come from :meth:`Layout.offset`.
"""
from __future__ import annotations

import binascii
import enum
import json
import struct
from dataclasses import dataclass, field

from golden.config import SCHEDULE_LIMITS

__all__ = [
    "PROTOCOL_VERSION", "SYNC", "HEADER_SIZE", "TRAILER_SIZE", "OVERHEAD", "MAX_PAYLOAD",
    "MAX_BATCH_EVENTS", "REPLAY_BYTES", "CRC16", "CrcSpec", "crc16", "config_bytes", "config_crc",
    "Cmd", "Rsp", "ErrorCode", "Mem", "Reg", "SyncFlags", "EventFlags", "OutputMask",
    "StatusFlags", "SpikeFormat", "TERMINAL", "TRANSPORT_ERRORS", "Field", "Layout",
    "CMD_LAYOUTS", "RSP_LAYOUTS", "ACK_LAYOUTS", "STATUS_LAYOUT", "ElementFormat", "mem_format",
    "mem_size",
    "mem_layers", "reg_count", "REG_BITS", "score_bytes", "encode_elements", "decode_elements",
    "Frame", "FrameError", "encode_frame", "Deframer", "ProtocolError", "PayloadLengthError",
    "pack", "unpack", "max_items", "FRAME_FORMAT", "layout",
    "VERSION_1", "VERSION_2", "VERSIONS", "LATEST_VERSION", "MAX_WINDOW", "WINDOW", "RX_CREDIT",
    "NO_LABEL", "SYNC2_SIZE", "SampleFlags", "StepFlags", "STEP_COUNT_MASK", "SYNC2_LAYOUT",
    "SYNC2_ACK_LAYOUT", "STATUS2_LAYOUT", "StepError", "step_record", "encode_sample",
    "decode_steps",
]

VERSION_1 = 1               # stop-and-wait (docs/protocol.md §1-§8)
VERSION_2 = 2               # windows, credits, SAMPLE (docs/protocol.md §9)
VERSIONS = (VERSION_1, VERSION_2)
LATEST_VERSION = VERSION_2  # what the host asks for first
#: what a v1-only device reports (in its SYNC ACK and STATUS); a v2 device reports VERSION_2
PROTOCOL_VERSION = VERSION_1

SYNC = b"\xA5\x5A"          # two sync bytes start every frame
HEADER_SIZE = 6             # SYNC(2) OP(1) SEQ(1) LEN(2)
TRAILER_SIZE = 2            # CRC16
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
MAX_PAYLOAD = 1024          # bytes; a longer LEN is a TOO_LONG error, found before the payload
MAX_BATCH_EVENTS = 256      # input-event indices in one EVENTS frame (index-list format)
REPLAY_BYTES = 8192         # emulator's replay buffer (the RTL reports its own in STATUS)
MAX_WINDOW = 128            # most frames in flight (SEQ distances are taken mod 256)
WINDOW = 16                 # the emulator's window (each device reports its own)
RX_CREDIT = 2048            # the emulator's credit: RX buffer bytes (each device reports its own)
NO_LABEL = 0xFFFF           # SAMPLE label field: no label
SYNC2_SIZE = 7              # payload bytes of a v2 SYNC (a v1 SYNC has 5)


# --- CRC ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrcSpec:
    """A CRC in the Rocksoft/Williams parameter model (the form ``amaranth.lib.crc`` uses)."""

    name: str
    amaranth_name: str      # attribute of amaranth.lib.crc.catalog
    width: int
    poly: int
    init: int
    refin: bool
    refout: bool
    xorout: int
    check: int              # CRC of b"123456789"
    residue: int            # CRC over data followed by its CRC (MSB first)


CRC16 = CrcSpec("CRC-16/CCITT-FALSE", "CRC16_CCITT_FALSE", 16, 0x1021, 0xFFFF, False, False,
                0x0000, 0x29B1, 0x0000)


def crc16(data: bytes, crc: int = CRC16.init) -> int:
    """Return the CRC-16/CCITT-FALSE of ``data`` (``crc`` continues a running value)."""
    return binascii.crc_hqx(data, crc)


def config_bytes(cfg) -> bytes:
    """Canonical config text of a :class:`golden.config.NetConfig` (compact JSON, sorted keys).

    This is the ``WRITE_CONFIG`` payload; :func:`config_crc` of it identifies a configuration.
    """
    return json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def config_crc(cfg) -> int:
    """CRC-32 (ISO-HDLC, ``binascii.crc32``) of :func:`config_bytes`: a fixed-config device
    (the RTL) compares the ``WRITE_CONFIG`` payload's CRC-32 with the one baked into it."""
    return binascii.crc32(config_bytes(cfg)) & 0xFFFFFFFF


# --- opcodes and codes ---------------------------------------------------------------------------
class Cmd(enum.IntEnum):
    """Command opcodes (host to device)."""

    SYNC = 0x01           # barrier; answered at once; never replayed
    STATUS = 0x02         # read the status block
    WRITE_CONFIG = 0x03   # canonical config JSON; resets all state
    WRITE_MEM = 0x04      # load weights / momentum / V / theta / bias / registers
    READ_MEM = 0x05       # read them back
    RESET_STATE = 0x06    # new sample: clear membranes, traces, scores, t, input slots, label
    EVENTS = 0x07         # input events of one time step (index list or bitmap)
    LABEL = 0x08          # class label of the current sample
    LEARN = 0x09          # learning on/off
    RUN = 0x0A            # run N time steps
    OUTPUTS = 0x0B        # which events RUN reports (spikes, flips)
    SAMPLE = 0x0C         # v2: a whole sample (label, flags, every step's events), or part of it


class Rsp(enum.IntEnum):
    """Response opcodes (device to host)."""

    ACK = 0x80            # terminal: command done (payload per command, ACK_LAYOUTS)
    ERROR = 0x81          # terminal: command rejected, nothing changed
    STATUS = 0x82         # terminal: status block
    DATA = 0x83           # terminal: memory contents
    SPIKES = 0x84         # RUN: spikes of one hidden layer at one time step
    FLIPS = 0x85          # RUN: flip events
    PREDICTION = 0x86     # RUN: prediction and output scores when the sample's last step ran
    RESULT = 0x87         # v2, terminal: the end of a SAMPLE (prediction, counters, flips/step)


TERMINAL = frozenset({Rsp.ACK, Rsp.ERROR, Rsp.STATUS, Rsp.DATA, Rsp.RESULT})


class ErrorCode(enum.IntEnum):
    """``ERROR`` codes. Below 0x10: transport errors (the host retries); from 0x10: the command
    itself is wrong (the host raises). No error changes device state."""

    CRC = 0x01               # CRC mismatch
    TOO_LONG = 0x02          # LEN > MAX_PAYLOAD (reported as soon as LEN arrives)
    TRUNCATED = 0x03         # the line went idle inside a frame
    SEQUENCE = 0x04          # v2: SEQ is neither the next one nor a replayable one (arg = next)
    UNKNOWN_OPCODE = 0x10    # OP is not a Cmd
    BAD_LENGTH = 0x11        # payload length wrong for the opcode
    ADDRESS = 0x12           # memory/layer/offset/index/label/time step out of range
    OVERSIZE = 0x13          # event batch > MAX_BATCH_EVENTS, or a read larger than a frame
    RANGE = 0x14             # a value out of range (N, flag, memory word)
    NOT_CONFIGURED = 0x15    # needs WRITE_CONFIG first
    NO_LABEL = 0x16          # RUN with learning on and no label
    CONFIG_MISMATCH = 0x17   # fixed-config device: CRC-32 of the config differs
    BAD_CONFIG = 0x18        # config text invalid (reconfigurable device)
    NO_REPLAY = 0x19         # retransmission of a command whose response outgrew the replay buffer

    @property
    def is_transport(self) -> bool:
        """Whether the error comes from the link (the host resends) rather than the command."""
        return self < 0x10


TRANSPORT_ERRORS = frozenset(c for c in ErrorCode if c.is_transport)


class Mem(enum.IntEnum):
    """Memories of ``WRITE_MEM`` / ``READ_MEM`` (element formats: :func:`mem_format`)."""

    WEIGHT = 0      # per layer, n_pre * n_post bits, element pre * n_post + post; 1 = +1
    MOMENTUM = 1    # per layer, same element order, signed momentum_bits
    V = 2           # per layer, T words, unsigned v_bits (T-BSO)
    THETA = 3       # per hidden layer, n_post words, signed membrane_bits
    BIAS = 4        # per layer, n_post words, signed membrane_bits
    REG = 5         # layer 0 only: registers (Reg), u32


class Reg(enum.IntEnum):
    """Register addresses in ``Mem.REG`` (``GAMMA + l`` for layer l)."""

    STEP = 0            # learning-step counter (stochastic-rounding key = seed + step*0x9E3779B9)
    RATE_SHIFT = 1      # momentum EMA rate 2^-rate_shift (schedule-adjusted)
    TBSO_GAMMA_Q = 2    # T-BSO gamma, 2^-tbso_gamma_frac units
    GAMMA = 3           # BSO flip threshold of layer 0; layer l at GAMMA + l


# widths follow the golden schedule limits (the schedule saturates at what a register holds)
REG_BITS = {Reg.STEP: 32,
            Reg.RATE_SHIFT: SCHEDULE_LIMITS["rate_shift"].bit_length(),
            Reg.TBSO_GAMMA_Q: SCHEDULE_LIMITS["tbso_gamma_q"].bit_length(),
            Reg.GAMMA: SCHEDULE_LIMITS["gamma"].bit_length()}


class SyncFlags(enum.IntFlag):
    NEW_SESSION = 0x01      # forget the replay state (a new host connected)


class EventFlags(enum.IntFlag):
    APPEND = 0x01           # OR into the time step's slot (else the slot is cleared first)
    BITMAP = 0x02           # data is a bitmap of n_in bits (else u16 indices)


class SampleFlags(enum.IntFlag):
    """``SAMPLE`` flags (bits 6, 7 reserved: ``RANGE``)."""

    LEARN = 0x01            # learn on these steps (needs a label)
    SPIKES = 0x02           # report SPIKES frames for these steps
    FLIPS = 0x04            # report FLIPS frames for these steps
    SCORES = 0x08           # PREDICTION frames (the output scores) before the RESULT
    KEEP_STATE = 0x10       # start without clearing membranes and traces (continuous streaming)
    CONTINUE = 0x20         # continue the sample the previous SAMPLE frame left unfinished
    ALL = 0x3F


class StepFlags(enum.IntFlag):
    """Bits of a ``SAMPLE`` step record's ``head:u16`` (bits 0..13: the index count)."""

    BITMAP = 0x8000         # ceil(n_in/8) bytes follow (count must be 0), else count u16 indices
    MORE = 0x4000           # the step goes on in the next record (not run yet)


STEP_COUNT_MASK = 0x3FFF


class OutputMask(enum.IntFlag):
    SPIKES = 0x01
    FLIPS = 0x02
    ALL = 0x03


class StatusFlags(enum.IntFlag):
    CONFIGURED = 0x01
    LEARN = 0x02
    LABEL_VALID = 0x04
    REPLAY_VALID = 0x08
    FIXED_CONFIG = 0x10     # the device only accepts its own config (the RTL)


class SpikeFormat(enum.IntEnum):
    INDICES = 0     # u16 neuron indices, ascending
    BITMAP = 1      # ceil(n/8) bytes, bit k of byte j = neuron 8j+k


# --- payload layouts -------------------------------------------------------------------------------
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
        object.__setattr__(self, "_fixed", struct.Struct(">" + "".join(f.code for f in self.fields)))
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


# --- v2 SAMPLE: step records ---------------------------------------------------------------------
class StepError(ProtocolError):
    """A ``SAMPLE`` payload the device must refuse: ``code`` and ``arg`` of its ``ERROR``."""

    def __init__(self, code: ErrorCode, arg: int, msg: str):
        super().__init__(msg)
        self.code, self.arg = ErrorCode(code), int(arg)


def step_record(t_indices, n_in: int, *, more: bool = False, bitmap: bool = False) -> bytes:
    """One step record: ``head:u16`` then the ascending indices ``t_indices`` (``u16`` each) or,
    with ``bitmap``, ``ceil(n_in/8)`` bytes (bit k of byte j = input 8j+k)."""
    idx = sorted(int(i) for i in t_indices)
    if idx and (idx[0] < 0 or idx[-1] >= n_in):
        raise ProtocolError(f"input index {idx[0] if idx[0] < 0 else idx[-1]} is outside "
                            f"0..{n_in - 1}")
    head = StepFlags.MORE if more else 0
    if bitmap:
        bits = bytearray((n_in + 7) // 8)
        for i in idx:
            bits[i >> 3] |= 1 << (i & 7)
        return (head | StepFlags.BITMAP).to_bytes(2, "big") + bytes(bits)
    if len(idx) > STEP_COUNT_MASK:
        raise ProtocolError(f"{len(idx)} indices do not fit one step record "
                            f"(at most {STEP_COUNT_MASK})")
    return (head | len(idx)).to_bytes(2, "big") + b"".join(i.to_bytes(2, "big") for i in idx)


def encode_sample(events, *, label: int | None = None, flags: int = 0,
                  max_payload: int = MAX_PAYLOAD, max_batch: int = MAX_BATCH_EVENTS) -> list:
    """The ``SAMPLE`` payloads of one sample: ``events`` is ``(T, n_in)`` binary (0/1, bool).

    Per step the host sends the shorter of the bitmap and the index list (a tie goes to the
    bitmap); a step with more than ``max_batch`` events whose bitmap is longer (or does not fit a
    frame) becomes several index records, all but the last with ``MORE``. Records are packed
    greedily into frames of at most ``max_payload`` bytes; every frame after the first has
    ``CONTINUE`` and ``t0`` = the step of its first record. ``flags`` must not hold
    ``CONTINUE`` (it is set here). Bad shapes, values, flags or labels raise
    :class:`ProtocolError`.
    """
    import numpy as np

    ev = np.asarray(events)
    if ev.ndim != 2 or not 1 <= ev.shape[0] <= 256 or not 1 <= ev.shape[1] <= 1 << 16:
        raise ProtocolError(f"events of shape {ev.shape}: need (T, n_in), T 1..256, "
                            f"n_in 1..65536")
    if ev.dtype != bool:
        if ev.dtype.kind not in "biuf" or not np.isin(ev, (0, 1)).all():
            raise ProtocolError("events must be binary (0/1)")
        ev = ev.astype(bool)
    flags = int(flags)
    if flags & ~int(SampleFlags.ALL) or flags & SampleFlags.CONTINUE:
        raise ProtocolError(f"SAMPLE flags 0x{flags:02x}: allowed "
                            f"0x{int(SampleFlags.ALL & ~SampleFlags.CONTINUE):02x}")
    if label is None:
        lab = NO_LABEL
    elif isinstance(label, bool) or not hasattr(label, "__index__") or \
            not 0 <= label.__index__() < NO_LABEL:
        raise ProtocolError(f"label {label!r} is not an integer in 0..{NO_LABEL - 1}")
    else:
        lab = label.__index__()
    if flags & SampleFlags.LEARN and label is None:
        raise ProtocolError("LEARN needs a label")
    hdr = CMD_LAYOUTS[Cmd.SAMPLE].fixed_size
    room = max_payload - hdr
    T, n_in = ev.shape
    nb = (n_in + 7) // 8
    per = min(max_batch, (room - 2) // 2, STEP_COUNT_MASK)
    if per < 1:
        raise ProtocolError(f"max_payload {max_payload} leaves no room for a step record")
    records = []                                    # (step, bytes)
    for t in range(T):
        idx = np.flatnonzero(ev[t])
        if nb <= 2 * idx.size and 2 + nb <= room:
            records.append((t, (int(StepFlags.BITMAP)).to_bytes(2, "big")
                            + np.packbits(ev[t], bitorder="little").tobytes()))
            continue
        chunks = [idx[k:k + per] for k in range(0, idx.size, per)] or [idx]
        for k, ch in enumerate(chunks):
            head = len(ch) | (int(StepFlags.MORE) if k < len(chunks) - 1 else 0)
            records.append((t, head.to_bytes(2, "big") + ch.astype(">u2").tobytes()))
    payloads, body, t0 = [], bytearray(), 0
    for t, rec in records:
        if body and len(body) + len(rec) > room:
            payloads.append((t0, bytes(body)))
            body, t0 = bytearray(), t
        body += rec
    payloads.append((t0, bytes(body)))
    lay = CMD_LAYOUTS[Cmd.SAMPLE]
    return [lay.pack({"flags": flags | (int(SampleFlags.CONTINUE) if k else 0), "label": lab,
                      "t0": t0}, tail=b) for k, (t0, b) in enumerate(payloads)]


def decode_steps(steps: bytes, n_in: int, T: int, t0: int, *,
                 max_batch: int = MAX_BATCH_EVENTS, payload_len: int | None = None) -> list:
    """Parse and check the step records of a ``SAMPLE`` (its tail), in the order a device
    checks them; return ``[(t, indices, more)]`` (indices an int64 array, ascending for a
    bitmap, as sent for a list). A bad record raises :class:`StepError` with the device's
    error code and arg (docs/protocol.md §9.4); ``payload_len`` is the arg of ``BAD_LENGTH``."""
    import numpy as np

    n = len(steps) + CMD_LAYOUTS[Cmd.SAMPLE].fixed_size if payload_len is None else payload_len
    nb = (n_in + 7) // 8
    out, pos, t = [], 0, t0
    if not steps:
        raise StepError(ErrorCode.BAD_LENGTH, n, "SAMPLE without a step record")
    while pos < len(steps):
        if len(steps) - pos < 2:
            raise StepError(ErrorCode.BAD_LENGTH, n, "step record cut inside its head")
        head = int.from_bytes(steps[pos:pos + 2], "big")
        pos += 2
        count = head & STEP_COUNT_MASK
        if head & StepFlags.BITMAP:
            if count:
                raise StepError(ErrorCode.RANGE, head, f"bitmap record with count {count}")
            size = nb
        else:
            if count > max_batch:
                raise StepError(ErrorCode.OVERSIZE, count, f"{count} indices > {max_batch}")
            size = 2 * count
        if len(steps) - pos < size:
            raise StepError(ErrorCode.BAD_LENGTH, n, "step record longer than the payload")
        if t >= T:
            raise StepError(ErrorCode.ADDRESS, t, f"step {t} >= T={T}")
        data = steps[pos:pos + size]
        pos += size
        if head & StepFlags.BITMAP:
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            if bits[n_in:].any():
                bad = n_in + int(np.flatnonzero(bits[n_in:])[0])
                raise StepError(ErrorCode.ADDRESS, bad, f"bitmap padding bit {bad} set")
            idx = np.flatnonzero(bits[:n_in]).astype(np.int64)
        else:
            idx = np.frombuffer(data, ">u2").astype(np.int64)
            over = np.flatnonzero(idx >= n_in)
            if over.size:
                raise StepError(ErrorCode.ADDRESS, int(idx[over[0]]),
                                f"input index {int(idx[over[0]])} >= n_in={n_in}")
        more = bool(head & StepFlags.MORE)
        out.append((t, idx, more))
        if not more:
            t += 1
    return out


# --- frames --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """A CRC-checked frame."""

    op: int
    seq: int
    payload: bytes
    crc: int = 0

    @property
    def is_response(self) -> bool:
        return self.op >= 0x80

    def encode(self) -> bytes:
        return encode_frame(self.op, self.seq, self.payload)

    def __repr__(self):
        try:
            name = (Rsp(self.op) if self.is_response else Cmd(self.op)).name
        except ValueError:
            name = f"0x{self.op:02x}"
        return f"Frame({name}, seq={self.seq}, {len(self.payload)} B)"


@dataclass(frozen=True)
class FrameError:
    """A bad frame the deframer found: ``code`` is CRC, TOO_LONG or TRUNCATED; ``op``/``seq``
    are as received (unverified, None if not received)."""

    code: ErrorCode
    op: int | None
    seq: int | None


def encode_frame(op: int, seq: int, payload: bytes = b"") -> bytes:
    """Encode one frame (raise :class:`ProtocolError` if the payload exceeds 65535 bytes)."""
    if not 0 <= op <= 0xFF or not 0 <= seq <= 0xFF:
        raise ProtocolError(f"op={op} / seq={seq} must be bytes")
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"payload of {len(payload)} bytes does not fit LEN")
    body = bytes((op, seq)) + len(payload).to_bytes(2, "big") + bytes(payload)
    return SYNC + body + crc16(body).to_bytes(2, "big")


class Deframer:
    """Streaming deframer: feed bytes, get :class:`Frame` and :class:`FrameError` objects.

    Hunting skips bytes until ``A5 5A``. ``LEN > max_payload`` is a ``TOO_LONG`` error as soon as
    LEN arrives. A CRC mismatch is a ``CRC`` error. :meth:`idle` (the line went quiet) turns a
    partial frame into a ``TRUNCATED`` error. After an error the device (``rescan=False``, what
    the RTL does) hunts on from the next unread byte; the host (``rescan=True``) re-hunts from the
    byte after the bad frame's sync, so a frame hidden inside a corrupted one is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, rescan: bool = True):
        self.max_payload = max_payload
        self.rescan = rescan
        self._buf = bytearray()
        self.garbage = 0        # bytes skipped while hunting

    def reset(self) -> None:
        """Drop any partial frame."""
        self._buf.clear()

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started (sync seen) and not ended."""
        return len(self._buf) >= 2

    def feed(self, data: bytes) -> list:
        """Consume ``data``; return the frames and errors it completes, in order."""
        self._buf += data
        out = []
        buf = self._buf
        while True:
            i = buf.find(SYNC)
            if i < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.garbage += len(buf) - keep
                del buf[:len(buf) - keep]
                break
            if i:
                self.garbage += i
                del buf[:i]
            if len(buf) < HEADER_SIZE:
                break
            op, seq = buf[2], buf[3]
            n = int.from_bytes(buf[4:6], "big")
            if n > self.max_payload:
                out.append(FrameError(ErrorCode.TOO_LONG, op, seq))
                del buf[:1 if self.rescan else HEADER_SIZE]
                continue
            end = HEADER_SIZE + n + TRAILER_SIZE
            if len(buf) < end:
                break
            crc = int.from_bytes(buf[end - 2:end], "big")
            if crc16(bytes(buf[2:end - 2])) == crc:
                out.append(Frame(op, seq, bytes(buf[HEADER_SIZE:end - 2]), crc))
                del buf[:end]
            else:
                out.append(FrameError(ErrorCode.CRC, op, seq))
                del buf[:1 if self.rescan else end]
        return out

    def idle(self) -> list:
        """The line went idle: a partial frame becomes a ``TRUNCATED`` error (the host re-hunts
        inside it, which may find more frames and more partial ones)."""
        out = []
        while self.in_frame:
            buf = self._buf
            out.append(FrameError(ErrorCode.TRUNCATED, buf[2] if len(buf) > 2 else None,
                                  buf[3] if len(buf) > 3 else None))
            if not self.rescan:
                break
            rest = bytes(buf[1:])
            buf.clear()
            out.extend(self.feed(rest))
        self._buf.clear()
        return out


#: The frame format as plain data for the gateware generator.
FRAME_FORMAT = {
    "sync": tuple(SYNC),
    "header": (("sync0", 1), ("sync1", 1), ("op", 1), ("seq", 1), ("len", 2)),
    "byteorder": "big",
    "max_payload": MAX_PAYLOAD,
    "crc": CRC16,
    "crc_covers": "op .. payload",
    "response_bit": 0x80,
}
