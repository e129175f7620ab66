"""Protocol constants, the CRC, the config identity, opcodes and codes (docs/protocol.md)."""
from __future__ import annotations

import binascii
import enum
import json
from dataclasses import dataclass

from golden.config import SCHEDULE_LIMITS

__all__ = [
    "PROTOCOL_VERSION", "SYNC", "HEADER_SIZE", "TRAILER_SIZE", "OVERHEAD", "MAX_PAYLOAD",
    "MAX_BATCH_EVENTS", "REPLAY_BYTES", "CRC16", "CrcSpec", "crc16", "config_bytes", "config_crc",
    "Cmd", "Rsp", "ErrorCode", "Mem", "Reg", "SyncFlags", "EventFlags", "OutputMask",
    "StatusFlags", "SpikeFormat", "TERMINAL", "TRANSPORT_ERRORS", "REG_BITS", "VERSION_1",
    "VERSION_2", "VERSIONS", "LATEST_VERSION", "MAX_WINDOW", "WINDOW", "RX_CREDIT", "NO_LABEL",
    "SYNC2_SIZE", "SampleFlags", "StepFlags", "STEP_COUNT_MASK",
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
