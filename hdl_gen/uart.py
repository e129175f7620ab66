"""8N1 UART receiver and transmitter with Amaranth stream ports; the baud divisor is a parameter.

No maintained Amaranth 0.5 UART is on PyPI (``amaranth-stdio`` there is a name placeholder), so
these are small and self-contained. ``divisor`` is clock cycles per bit (>= 4); the board top
derives it from the clock and the baud rate (:func:`divisor_for`, which checks the timing at
build time: :func:`uart_timing`), simulations use 4..16.

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

__all__ = ["UARTRx", "UARTTx", "divisor_for", "uart_timing", "SAMPLE_WINDOW"]


#: where the receiver's sample of every bit must lie, as a fraction of the bit (0 = its start):
#: a fifth of a bit to spare on either side for edge jitter and slow edges
SAMPLE_WINDOW = (0.2, 0.8)


def uart_timing(clk_hz: float, baud: int, divisor: int | None = None) -> dict:
    """How :class:`UARTRx` at ``divisor`` (default: the nearest) samples a ``baud`` line.

    The receiver sees the start edge through a 2-flop synchroniser and samples bit k
    ``divisor // 2 + k * divisor`` cycles after it saw the edge; the synchroniser delays the
    edge and the samples alike, so bit k is sampled ``q + divisor // 2 + k * divisor`` cycles
    after the true edge, q in [0, 1) cycle being where the edge fell between two clock edges.
    In the sender's bit times that is ``(1 + err) * (k + (q + divisor // 2) / divisor)``, with
    ``err = baud * divisor / clk_hz - 1`` (the transmitter is off by the same ``err``).
    Returns the divisor, the rate error, the achieved rate and the earliest / latest sample
    position within its bit over the ten bits of a byte (start, 8 data, stop).
    """
    div = round(clk_hz / baud) if divisor is None else int(divisor)
    err = baud * div / clk_hz - 1
    pos = [(1 + err) * (k + (q + div // 2) / div) - k for k in range(10) for q in (0.0, 1.0)]
    return {"divisor": div, "rate_error": err, "actual_baud": clk_hz / div,
            "sample_min": min(pos), "sample_max": max(pos)}


def divisor_for(clk_hz: float, baud: int, tolerance: float = 0.02) -> int:
    """Cycles per bit for ``baud`` at ``clk_hz``. ValueError, naming clock, rate and what is
    wrong, if the divisor would be below 4, the rate off by more than ``tolerance``, or a bit
    sampled outside :data:`SAMPLE_WINDOW` (:func:`uart_timing`)."""
    where = f"baud {baud} at a {clk_hz / 1e6:g} MHz clock"
    if baud <= 0 or round(clk_hz / baud) < 4:
        raise ValueError(f"{where} is too fast: the UART needs at least 4 clock cycles per bit "
                         f"(a clock of {4 * baud / 1e6:g} MHz or more)")
    t = uart_timing(clk_hz, baud)
    if abs(t["rate_error"]) > tolerance:
        raise ValueError(f"{where} is off by {t['rate_error']:+.2%} (divisor {t['divisor']}: "
                         f"{t['actual_baud']:.0f} baud; allowed +-{tolerance:.0%})")
    lo, hi = SAMPLE_WINDOW
    if t["sample_min"] < lo or t["sample_max"] > hi:
        raise ValueError(f"{where}: the receiver would sample a bit at {t['sample_min']:.2f} .. "
                         f"{t['sample_max']:.2f} of its width (divisor {t['divisor']}; allowed "
                         f"{lo:g} .. {hi:g})")
    return t["divisor"]


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
