"""The wire protocol between the host and the accelerator: one definition for host, emulator
and RTL.

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

Every command gets exactly one *terminal* response (``ACK``, ``ERROR``, ``STATUS``, ``DATA``
or, v2, ``RESULT``); only ``RUN`` and ``SAMPLE`` send non-terminal ones (``SPIKES``, ``FLIPS``,
``PREDICTION``) before it. Payload layouts are :class:`Layout` objects in :data:`CMD_LAYOUTS`,
:data:`RSP_LAYOUTS` and :data:`ACK_LAYOUTS` (v2 forms: :data:`SYNC2_LAYOUT`,
:data:`SYNC2_ACK_LAYOUT`, :data:`STATUS2_LAYOUT`, chosen by :func:`layout`); field offsets come
from :meth:`Layout.offset`. Version 2 (windows, credit, ``SAMPLE``) is docs/protocol.md §9.

The definitions live in the submodules (``codes``: constants, CRC, opcodes and codes;
``layouts``: payload layouts, ``pack``/``unpack``; ``memory``: the memory map and word codecs;
``sample``: v2 ``SAMPLE`` step records; ``frames``: frames and the deframer); this package
re-exports all of them, so ``from host import protocol as P; P.Cmd.SAMPLE`` is the one spelling.
"""
from __future__ import annotations

from .codes import *  # noqa: F401,F403
from .layouts import *  # noqa: F401,F403
from .memory import *  # noqa: F401,F403
from .sample import *  # noqa: F401,F403
from .frames import *  # noqa: F401,F403
from . import codes, frames, layouts, memory, sample

__all__ = codes.__all__ + layouts.__all__ + memory.__all__ + sample.__all__ + frames.__all__
