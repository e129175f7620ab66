"""The board top: UART pins -> RX FIFO -> deframer -> command executor <-> Core -> framer -> UART.

``BoardTop(cfg, lanes, baud_divisor, arch=...)`` is what ``python -m hdl_gen build`` puts on a
board (its ``rx``/``tx`` go to the board's UART pins; given ``clk_hz`` instead of a divisor it
derives one for ``baud``) and what :class:`host.link.SimLink` simulates.

Flow control, so that nothing is lost when the host sends faster than the core consumes:

* host -> device: the deframer holds a complete frame until the executor has finished with it
  and takes no byte meanwhile; bytes wait in an ``rx_fifo``-byte FIFO (more than a whole
  ``MAX_PAYLOAD`` frame plus a ``SYNC``, which is all a stop-and-wait host sends before it
  waits), and ``cts`` (1 = clear to send) drops while fewer than ``cts_margin`` bytes are free,
  for hosts and boards that wire a CTS line (the simulation bridge honours it per byte).
* device -> host: responses go into the framer's buffer; while it is full the executor stops
  taking spikes, flips and results from the core, whose output FIFOs then stall it.

``idle`` (nothing received, queued, executing or being sent) lets the simulation bridge stop
simulated time while the host thinks; ``core_busy`` is the Core's own busy flag and
``core_cycles`` counts the cycles it was set (for measurements; unconnected on a board).
"""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from host import protocol as P

from .architectures import DEFAULT_ARCH, core_class
from .core import DEFAULT_LANES
from .link import CommandExecutor, Deframer, Framer
from .uart import UARTRx, UARTTx, divisor_for

__all__ = ["BoardTop", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115200


class BoardTop(wiring.Component):
    """UART link + Core for one :class:`golden.config.NetConfig`.

    Parameters
    ----------
    cfg : NetConfig
        The (fixed) configuration; ``WRITE_CONFIG`` must carry the same one (CRC-32 check).
    lanes : int
        Core lanes ``P``.
    arch : str
        Core architecture (:mod:`hdl_gen.architectures`): ``parallel`` (:class:`hdl_gen.core.Core`)
        or ``compact``; every architecture has the same wiring signature.
    baud_divisor : int or None
        Clock cycles per UART bit; None: from ``clk_hz`` and ``baud``.
    clk_hz, baud : float, int
        Used when ``baud_divisor`` is None (the board flow passes ``clk_hz``).
    replay_bytes : int
        Response / replay buffer (power of two >= MAX_PAYLOAD + 8), reported in ``STATUS``.
    rx_fifo : int
        Receive FIFO depth in bytes.
    idle_cycles : int or None
        Inter-byte timeout inside a frame (``TRUNCATED``); default 64 byte times, at least 20 ms
        when ``clk_hz`` is known (far beyond the gaps inside one host write, far below the
        host's 1 s answer timeout).
    """

    def __init__(self, cfg, lanes: int = DEFAULT_LANES, baud_divisor: int | None = None, *,
                 clk_hz: float | None = None, baud: int = DEFAULT_BAUD,
                 replay_bytes: int = P.REPLAY_BYTES, rx_fifo: int = 2048,
                 cts_margin: int = 16, idle_cycles: int | None = None,
                 arch: str = DEFAULT_ARCH):
        self.baud = baud if baud_divisor is None else None   # None: given as a divisor
        self.clk_hz = clk_hz
        if baud_divisor is None:
            if clk_hz is None:
                raise ValueError("BoardTop needs baud_divisor or clk_hz")
            baud_divisor = divisor_for(clk_hz, baud)
        if rx_fifo < P.MAX_PAYLOAD + P.OVERHEAD + 16:
            raise ValueError(f"rx_fifo={rx_fifo} is invalid: allowed >= one full frame "
                             f"({P.MAX_PAYLOAD + P.OVERHEAD + 16})")
        if idle_cycles is None:
            idle_cycles = 64 * 10 * baud_divisor
            if clk_hz is not None:
                idle_cycles = max(idle_cycles, int(0.02 * clk_hz))
        self.cfg = cfg
        self.lanes = lanes
        self.arch = arch
        self.core_cls = core_class(arch)
        self.baud_divisor = int(baud_divisor)
        self.replay_bytes = replay_bytes
        self.rx_fifo = rx_fifo
        self.cts_margin = cts_margin
        self.idle_cycles = int(idle_cycles)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "cts": Out(1),
            "idle": Out(1),
            "core_busy": Out(1),
            "core_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core_cls(self.cfg, lanes=self.lanes)
        m.submodules.urx = urx = UARTRx(self.baud_divisor)
        m.submodules.utx = utx = UARTTx(self.baud_divisor)
        m.submodules.rxq = rxq = fifo.SyncFIFOBuffered(width=8, depth=self.rx_fifo)
        m.submodules.deframer = dfr = Deframer(idle_cycles=self.idle_cycles)
        m.submodules.framer = frm = Framer(self.replay_bytes)
        m.submodules.executor = ex = CommandExecutor(self.cfg, core, dfr, frm)

        m.d.comb += [
            urx.rx.eq(self.rx), self.tx.eq(utx.tx),
            rxq.w_data.eq(urx.o_data.payload), rxq.w_en.eq(urx.o_data.valid),
            urx.o_data.ready.eq(rxq.w_rdy),
            dfr.i_byte.payload.eq(rxq.r_data), dfr.i_byte.valid.eq(rxq.r_rdy),
            rxq.r_en.eq(dfr.i_byte.ready),
            self.cts.eq(rxq.level < self.rx_fifo - self.cts_margin),
            self.core_busy.eq(core.status.busy),
        ]
        with m.If(core.status.busy):
            m.d.sync += self.core_cycles.eq(self.core_cycles + 1)
        wiring.connect(m, frm.o_tx, utx.i_data)
        m.d.comb += self.idle.eq(dfr.hunting & ~rxq.r_rdy & ~urx.busy & ~urx.o_data.valid
                                 & ex.idle & ~utx.busy)
        return m
