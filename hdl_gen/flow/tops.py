"""What the flow puts on a board: the board shell (PLL clock domain + UART pins + LED around a
design), the pin-limited :class:`ShiftHarness`, and the *top factories*.

A top factory is ``factory(cfg, clk_hz) -> component`` with 1-bit ``rx`` (In) and ``tx`` (Out)
ports (``uart_rx`` / ``uart_tx`` are accepted too) that :class:`BoardShell` connects to the
board's UART pins; the shell adds the PLL clock domain ``sync``. A component without such ports
is added as is (it requests its own pins). Factories: ``board`` (the UART link + core top,
:class:`hdl_gen.board_top.BoardTop`), ``core`` (the core behind a 2-pin shift-register harness on
rx/tx: real resources and Fmax, no protocol), ``loopback``
(:class:`hdl_gen.flow.boards.UARTLoopback`, board bring-up), ``auto`` (= ``board``). ``board``
and ``core`` take the core architecture by name (:mod:`hdl_gen.architectures`).
"""
from amaranth import *
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from golden.config import NetConfig
from hdl_gen.architectures import DEFAULT_ARCH, core_class
from hdl_gen.flow.boards import Board, UARTLoopback

__all__ = ["BoardShell", "ShiftHarness", "top_factory", "resolved_top_name", "TOPS"]


# ------------------------------------------------------------------------------------------------
# Board top and harness
# ------------------------------------------------------------------------------------------------

def _port(design, names):
    sig = getattr(design, "signature", None)
    if sig is None or not hasattr(sig, "members"):
        return None
    for n in names:
        if n in sig.members:
            return getattr(design, n)
    return None


class BoardShell(Elaboratable):
    """PLL clock domain + UART pins + the design; LED 0 lights once the core clock is running."""

    def __init__(self, board: Board, design_factory, cfg: NetConfig, f_core: float | None = None,
                 **clockgen_kw):
        self.board = board
        self.crg = board.clockgen(f_core, **clockgen_kw)
        self.clk_hz = self.crg.f_out
        self.design = design_factory(cfg, self.clk_hz)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.crg = self.crg
        m.submodules.design = d = self.design
        rx, tx = _port(d, ("rx", "uart_rx")), _port(d, ("tx", "uart_tx"))
        if rx is not None or tx is not None:
            uart = platform.request("uart", 0, dir="-")
            if rx is not None:
                m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
                m.d.comb += rx.eq(rx_buf.i)
            if tx is not None:
                m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
                m.d.comb += tx_buf.o.eq(tx)
        try:
            led = platform.request("led", 0, dir="-")
        except Exception:            # boards without an LED resource
            led = None
        if led is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(self.crg.locked)
        return m


class ShiftHarness(wiring.Component):
    """Pin-limited harness: every core input bit comes from a shift register clocked in on ``rx``;
    every core output bit is XOR-reduced (pipelined, 4 inputs per level) into ``tx``.

    Nothing can be optimised away (all inputs are unknown, all outputs observed), so it gives the
    core's real resources and register-to-register Fmax on a package with few pins (the UP5K SG48
    has 39 user IOs). It does not speak the link protocol.
    """
    rx: In(1)
    tx: Out(1)

    def __init__(self, core):
        self.core = core
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        ins, outs = [], []
        for _path, member, value in core.signature.flatten(core):
            (ins if member.flow == In else outs).append(Value.cast(value))
        n_in = sum(len(v) for v in ins)
        if n_in:
            sr = Signal(n_in)
            m.d.sync += sr.eq(Cat(self.rx, sr[:-1]))
            off = 0
            for v in ins:
                m.d.comb += v.eq(sr[off:off + len(v)])
                off += len(v)
        if outs:
            # XOR-reduce in registered levels of 4 (one LUT4 each), so the harness never
            # lengthens the core's critical path by more than one LUT.
            level = list(Cat(*outs))
            while len(level) > 1:
                nxt = []
                for i in range(0, len(level), 4):
                    r = Signal()
                    m.d.sync += r.eq(Cat(*level[i:i + 4]).xor())
                    nxt.append(r)
                level = nxt
            m.d.comb += self.tx.eq(level[0])
        return m


# ------------------------------------------------------------------------------------------------
# Top factories
# ------------------------------------------------------------------------------------------------

def top_factory(kind: str = "auto", arch: str = DEFAULT_ARCH, **kw):
    """A ``factory(cfg, clk_hz)`` for ``kind`` in ``auto|board|core|loopback`` with the ``arch``
    core (:mod:`hdl_gen.architectures`); ``kw`` go to the design's constructor (e.g. the lane
    count). Raises :class:`hdl_gen.architectures.ArchitectureError` for an architecture that is
    not in the tree, before anything is built."""
    if kind == "loopback":
        return lambda cfg, clk_hz: UARTLoopback(clk_hz, **kw)
    core = core_class(arch)
    if kind in ("board", "auto"):
        from hdl_gen.board_top import BoardTop
        return lambda cfg, clk_hz: BoardTop(cfg, clk_hz=clk_hz, arch=arch, **kw)
    if kind == "core":
        return lambda cfg, clk_hz: ShiftHarness(core(cfg, **kw))
    raise ValueError(f"unknown top {kind!r}; use {'|'.join(TOPS)}")


def resolved_top_name(kind: str) -> str:
    """``auto`` is the UART link + core board top."""
    return "board" if kind == "auto" else kind


TOPS = ("auto", "board", "core", "loopback")
