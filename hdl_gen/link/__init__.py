"""The link layers of the board top: deframer, command executor and framer (docs/protocol.md).

Every opcode, code, layout, CRC parameter and memory-map rule comes from :mod:`host.protocol`
(the one definition); the reference behaviour is :class:`host.link.emulator.EmulatorDevice`, and
the benches compare this RTL with it byte for byte.

* :mod:`.deframer` -- :class:`Deframer`: bytes in, checked frame items out.
* :mod:`.framer` -- :class:`Framer`: the response buffer (also the replay store) and the
  transmitter.
* :mod:`.executor` -- :class:`CommandExecutor`: validates a whole command before it changes
  anything, then drives the Core; built in parts (:mod:`.context`, :mod:`.decode`,
  :mod:`.control`, :mod:`.memory_access`, :mod:`.events`, :mod:`.run`).
* :mod:`.fields` -- the CRC algorithms and big-endian field helpers they share.
"""
from __future__ import annotations

from .deframer import Deframer
from .executor import CommandExecutor
from .fields import CRC16_ALGORITHM, CRC32_ALGORITHM, ItemKind, be_block, hdr_field
from .framer import Framer

__all__ = ["Deframer", "Framer", "CommandExecutor", "CRC16_ALGORITHM", "CRC32_ALGORITHM",
           "ItemKind", "be_block", "hdr_field"]
