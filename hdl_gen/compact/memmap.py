"""The compact core's memory map: what each memory holds, where, and its port signals.

Contract. For a :class:`golden.config.NetConfig` with layers ``N_0 .. N_L`` and ``P`` lanes,
``C_l = ceil(N_{l+1} / P)`` words per synapse row of weight layer ``l``:

======  ====================================  ============================  ==================
memory  word                                  address                       depth
======  ====================================  ============================  ==================
syn     P weight bits (bit k: post c*P+k,     ``sbase_l + pre * C_l + c``   ``sum N_l C_l``
        1 = +1), then P momenta (mb bits)
trs     trace (trace_bits) | spike bit above  ``tbase_l + i`` (input i of    ``sum_{l<L} N_l``
                                              layer l = neuron i of l-1)
nv      membrane v (membrane_bits)            ``nbase_l + j`` (post j)      ``sum N_{l+1}``
nb      bias                                  ``nbase_l + j``               ``sum N_{l+1}``
nth     threshold theta (hidden layers)       ``nbase_l + j``, l < L-1      hidden neurons
nsg     surrogate ``max(0, 2^ss - |u-th|)``   ``nbase_l + j``, l < L-1      hidden neurons
z       P accumulators ``z`` (lane k: post    ``cbase_l + c``               ``sum C_l``
        c*P+k), lane write enables
dl      P deltas (delta_bits), lane enables   ``cbase_l + c``               ``sum C_l``
score   output score                          ``j``                         ``N_L``
======  ====================================  ============================  ==================

``syn`` has one address for reading and writing and its read port is off while it writes
(``SB_SPRAM256KA``-able, ``ram_style = "huge"`` on the iCE40, see hdl_gen/flow/spram.py); it has
no initial contents: the host writes the weights, and the link's initialisation clears the
momenta. Every other memory has one synchronous read port and one write port (block RAM).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.utils import bits_for, ceil_log2

from ..common import words

__all__ = ["MemoryMap", "Mem", "lay_sel", "pick", "cumulative"]


def cumulative(xs) -> list[int]:
    """``[0, x0, x0+x1, ...]`` (one more entry than ``xs``)."""
    out = [0]
    for x in xs:
        out.append(out[-1] + x)
    return out


def lay_sel(sel, values):
    """``values[sel]`` for a small list of integer constants and a layer-index value."""
    values = list(values)
    out = Const(values[-1])
    for k in range(len(values) - 2, -1, -1):
        out = Mux(sel == k, values[k], out)
    return out


def pick(sel, values):
    """``values[sel]`` for a short list of values (a multiplexer chain)."""
    out = values[-1]
    for k in range(len(values) - 2, -1, -1):
        out = Mux(sel == k, values[k], out)
    return out


class MemoryMap:
    """Bases, depths and widths of the compact core's memories for ``cfg`` and ``lanes``."""

    def __init__(self, cfg, lanes: int):
        d = cfg.derived()
        N, L, P = cfg.layers, cfg.n_layers, lanes
        self.cfg, self.P, self.L, self.N = cfg, P, L, N
        self.lg = ceil_log2(P)
        self.C = [words(N[l + 1], P) for l in range(L)]
        self.sbase = cumulative(N[l] * self.C[l] for l in range(L))
        self.tbase = cumulative(N[l] for l in range(L))
        self.nbase = cumulative(N[l + 1] for l in range(L))
        self.cbase = cumulative(self.C)
        self.syn_depth = self.sbase[-1]
        self.trs_depth = self.tbase[-1]
        self.n_depth = self.nbase[-1]
        self.hid_depth = self.nbase[L - 1]
        self.c_depth = self.cbase[-1]
        # valid lanes in the last word of a row of layer l
        self.last_lanes = [N[l + 1] - (self.C[l] - 1) * P for l in range(L)]
        self.mb = cfg.momentum_bits
        self.db = cfg.delta_bits
        self.tb = cfg.trace_bits
        self.vb = cfg.membrane_bits
        self.zb = bits_for(max(N[:-1])) + 1              # |z| <= n_pre, signed
        self.sgb = cfg.surrogate_shift + 1               # 0 .. 2^ss
        self.sw = cfg.membrane_bits + ceil_log2(cfg.T)   # as NeuronArray.score_width
        self.syn_width = P * (1 + self.mb)
        self.theta_init = [th for l in range(L - 1) for th in [d.theta[l]] * N[l + 1]]

    def table(self) -> list[dict]:
        """The memories as (name, width, depth, what) rows, for docs and the fit check."""
        rows = [("syn", self.syn_width, self.syn_depth, "weights + momenta"),
                ("trs", self.tb + 1, self.trs_depth, "trace + spike bit"),
                ("nv", self.vb, self.n_depth, "membrane"),
                ("nb", self.vb, self.n_depth, "bias")]
        if self.hid_depth:
            rows += [("nth", self.vb, self.hid_depth, "threshold"),
                     ("nsg", self.sgb, self.hid_depth, "surrogate")]
        rows += [("z", self.P * self.zb, self.c_depth, "accumulators"),
                 ("dl", self.P * self.db, self.c_depth, "deltas"),
                 ("score", self.sw, self.N[-1], "scores")]
        return [{"name": n, "width": w, "depth": dp, "what": what} for n, w, dp, what in rows]


class Mem:
    """One memory with its port signals: ``raddr`` -> ``rdata`` (one cycle later), ``waddr``,
    ``wdata``, ``we`` (one enable per lane of ``lanes``). ``single``: one address ``addr`` for
    both ports and the read port off while writing (SPRAM)."""

    def __init__(self, m: Module, name: str, width: int, depth: int, *, init=(), lanes: int = 1,
                 single: bool = False, attrs=None):
        self.width, self.depth, self.lanes = width, depth, lanes
        self.mem = Memory(shape=width, depth=depth, init=list(init), attrs=attrs)
        m.submodules[name] = self.mem
        rp = self.mem.read_port()
        wp = self.mem.write_port(granularity=width // lanes if lanes > 1 else None)
        ab = max(1, ceil_log2(depth))
        self.wdata = Signal(width, name=f"{name}_wdata")
        self.we = Signal(lanes, name=f"{name}_we")
        self.rdata = rp.data
        if single:
            self.addr = Signal(ab, name=f"{name}_addr")
            self.raddr = self.waddr = self.addr
            # the last cycle's address: a write to the word read in the cycle before takes its
            # address from a register (no adder in front of the write enables)
            self.addr_q = Signal(ab, name=f"{name}_addr_q")
            m.d.sync += self.addr_q.eq(self.addr)
            m.d.comb += [rp.addr.eq(self.addr), wp.addr.eq(self.addr), rp.en.eq(~self.we.any())]
        else:
            self.raddr = Signal(ab, name=f"{name}_raddr")
            self.waddr = Signal(ab, name=f"{name}_waddr")
            m.d.comb += [rp.addr.eq(self.raddr), wp.addr.eq(self.waddr)]
        m.d.comb += [wp.data.eq(self.wdata), wp.en.eq(self.we)]

    def lane(self, k: int):
        """Lane ``k`` of the read data (unsigned slice)."""
        w = self.width // self.lanes
        return self.rdata[k * w:(k + 1) * w]

    def write(self, m: Module, addr, data, lane_en=None):
        """Comb: write ``data`` at ``addr`` (all lanes, or the ``lane_en`` mask)."""
        m.d.comb += [self.waddr.eq(addr), self.wdata.eq(data),
                     self.we.eq(lane_en if lane_en is not None else (1 << self.lanes) - 1)]

    def write_lane(self, m: Module, addr, lane, value):
        """Comb: write ``value`` into lane ``lane`` (a value) of the word at ``addr``."""
        w = self.width // self.lanes
        if self.lanes == 1:
            self.write(m, addr, value)
            return
        m.d.comb += [self.waddr.eq(addr), self.wdata.eq(Cat(*[value[:w]] * self.lanes)),
                     self.we.eq(Const(1, self.lanes) << lane)]
