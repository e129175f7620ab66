"""8N1 UART receiver and transmitter with Amaranth stream ports; the baud divisor is a parameter.

No maintained Amaranth 0.5 UART is on PyPI (``amaranth-stdio`` there is a name placeholder), so
these are small and self-contained. ``divisor`` is clock cycles per bit (>= 4); the board top
derives it from the clock and the baud rate (:func:`divisor_for`), simulations use 4..16.

* :class:`UARTRx`: 2-flop synchroniser, start bit re-checked at mid-bit, data sampled at mid-bit,
  the byte goes out on ``o_data`` (a one-byte register: the consumer, normally a FIFO, must take
  it within a byte time, else it is dropped and counted in ``overruns``). A zero stop bit drops
  the byte and counts ``frame_errors``. ``busy`` is high while a byte is on the line.
* :class:`UARTTx`: takes bytes from ``i_data`` and shifts out start, 8 data bits LSB first, stop;
  back to back, no idle bit between bytes. ``busy`` is high while a byte is being sent.
"""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "divisor_for"]


def divisor_for(clk_hz: float, baud: int, tolerance: float = 0.02) -> int:
    """Cycles per bit for ``baud`` at ``clk_hz``; ValueError if too fast or off by > tolerance."""
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock (divisor < 4)")
    err = abs(clk_hz / div - baud) / baud
    if err > tolerance:
        raise ValueError(f"baud {baud} at {clk_hz / 1e6:g} MHz is off by {err:.1%} "
                         f"(> {tolerance:.0%})")
    return div


def _check(divisor):
    if int(divisor) != divisor or divisor < 4:
        raise ValueError(f"UART divisor={divisor!r} is invalid: allowed an integer >= 4")
    return int(divisor)


class UARTRx(wiring.Component):
    """8N1 receiver (see module docstring)."""

    rx: In(1, init=1)
    o_data: Out(stream.Signature(8))
    busy: Out(1)
    frame_errors: Out(16)
    overruns: Out(16)

    def __init__(self, divisor: int):
        self.divisor = _check(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = cdc.FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):                    # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(~rx):
                        m.d.sync += self.frame_errors.eq(self.frame_errors + 1)
                    with m.Elif(self.o_data.valid & ~self.o_data.ready):
                        m.d.sync += self.overruns.eq(self.overruns + 1)
                    with m.Else():
                        m.d.sync += [self.o_data.payload.eq(shreg), self.o_data.valid.eq(1)]
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter (see module docstring)."""

    i_data: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, divisor: int):
        self.divisor = _check(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        shreg = Signal(10, init=0x3FF)
        count = Signal(range(11))
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(count != 0),
                     self.i_data.ready.eq(count == 0)]
        with m.If(count == 0):
            with m.If(self.i_data.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.i_data.payload, Const(1, 1))),
                             count.eq(10), timer.eq(div - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), count.eq(count - 1),
                         timer.eq(div - 1)]
        return m
