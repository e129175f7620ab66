"""The command executor: validates a whole command, then drives the Core and builds the answers.

It validates a whole command (every check of docs/protocol.md §3, in the emulator's order, so the
same code and arg come back) before it changes anything, then drives the Core's streams and
memory port and builds the responses. It holds what the core does not: the T input slots, the
label-valid bit, learning and output flags, the replay key, the link statistics, the per-step
spike bitmaps (so ``SPIKES`` picks the emulator's format), and, for BSO cores, a shadow of the
``V`` memory (the emulator keeps V under BSO too).

One FSM (``exec``), built in parts: :mod:`.context` (shared registers and state helpers),
:mod:`.decode` (checks, dispatch, error answers), :mod:`.control` (responses, replay, control
commands, initialisation), :mod:`.memory_access` (memory map, WRITE_MEM / READ_MEM),
:mod:`.events` (EVENTS) and :mod:`.run` (RUN: steps, spikes, flips, prediction).
"""
from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from host import protocol as P
from host.protocol import Mem, Rsp

from . import control, decode, events, memory_access, run
from .context import ExecContext
from .deframer import Deframer
from .framer import Framer

__all__ = ["CommandExecutor"]


class CommandExecutor(wiring.Component):
    """Validates and executes commands against the Core (see module docstring).

    It is elaborated inside the board top next to ``core``, ``deframer`` and ``framer`` and drives
    their ports directly (each port has one driver: this module). ``idle``: no item waiting,
    nothing executing, nothing left to send.
    """

    def __init__(self, cfg, core, deframer: Deframer, framer: Framer):
        self.cfg = cfg
        self.core = core
        self.dfr = deframer
        self.frm = framer
        self.replay_bytes = framer.replay_bytes
        L = cfg.layers
        hidden = L[1:-1]
        for n in hidden:
            if (n + 7) // 8 > P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.SPIKES].fixed_size - 4:
                raise ValueError(f"hidden layer of {n} neurons: SPIKES would need splitting")
        sb = P.score_bytes(cfg)
        if L[-1] > (P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size) // sb:
            raise ValueError(f"{L[-1]} outputs: PREDICTION would need splitting")
        super().__init__({"idle": Out(1)})

    def elaborate(self, platform):
        from ..core import MemSpace, Reg as CReg

        for mem in Mem:
            assert MemSpace[mem.name].value == int(mem), mem
        for r in P.Reg:
            assert CReg[r.name].value == int(r), r
        m = Module()
        x = ExecContext(self, m)
        # the combinational / registered logic outside the FSM, then the FSM's states; the
        # order of the calls is the order of the statements (and of the state encodings)
        memory_access.memory_map(x)
        run.collect_spikes(x)
        control.status_flags(x)
        decode.checks(x)
        control.init_segments(x)
        events.slot_logic(x)
        run.layer_select(x)
        with m.FSM(name="exec", init="PWR_INIT"):
            control.power_up_state(x)
            decode.states(x)
            memory_access.validate_states(x)
            events.validate_states(x)
            control.states(x)
            memory_access.states(x)
            events.states(x)
            run.states(x)
        return m
