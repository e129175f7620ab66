"""CompactCore: the accelerator core as one time-multiplexed datapath (golden twin:
``golden/core.py``), with every piece of state in deep, narrow memories.

Same contract as :class:`hdl_gen.core.Core` (streams, payloads, :class:`~hdl_gen.core.CtrlOp`,
:class:`~hdl_gen.core.ResultKind`, :class:`~hdl_gen.core.MemSpace`, status word and counters),
so the link, the benches and the board flow take either. One FSM sequences every layer and
phase in golden's order (``Core.step_once``), one neuron or one synapse word (``P`` synapses) at
a time:

1. input events (while idle): the input's spike bit is set (a second event for the same input
   is counted as ``duplicate``, an index ``>= n_in`` as ``dropped``);
2. ``STEP``: per layer, accumulate the rows of the spiking inputs into ``z``, then the LIF pass
   (spikes set the next layer's spike bits and leave on ``o_spike``; the output layer adds to
   the scores, keeps the argmax and computes the output error); the trace pass of all layers;
3. with learning on: hidden errors (last hidden layer first, through the old weights), T-BSO
   ``V[t]`` and thresholds, the flip pass of each layer (flips leave on ``o_flip``); the key
   advances;
4. the answer on ``o_result`` once every spike and flip of the step has left.

The memory map is :mod:`hdl_gen.compact.memmap`, the sequencers :mod:`hdl_gen.compact.forward`,
:mod:`hdl_gen.compact.learning`, the host access :mod:`hdl_gen.compact.hostmem`; cycle costs are
in docs/architecture.md section 7.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from .common import T_BITS, uidx
from .compact import forward, hostmem, learning
from .compact.memmap import Mem, MemoryMap
from .core import (FLIP_LAYOUT, SPIKE_LAYOUT, CtrlOp, ResultKind, core_signature,
                   mem_layout)
from .flip_unit import RATE_SHIFT_BITS

__all__ = ["CompactCore", "DEFAULT_LANES", "check_compact_lanes"]

DEFAULT_LANES = 2
CNT_BITS = 32
COUNTERS = ("dropped", "duplicate", "bad_cmd", "sat_membrane", "sat_trace", "sat_delta",
            "sat_momentum", "sat_v", "spikes", "flips", "cyc_fwd", "cyc_err", "cyc_learn",
            "cyc_step")


def check_compact_lanes(lanes: int) -> None:
    """Raise ValueError unless ``lanes`` is a power of two >= 1."""
    if not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes={lanes} is invalid: allowed a power of two >= 1 "
                         f"(1, 2, 4, 8, 16, 32)")


class OutBuf:
    """A one-entry output register in front of a stream: ``push`` (comb) with ``rec`` when
    ``ok``; the stream sees the registered entry."""

    def __init__(self, m, port, layout, name):
        self.valid = Signal(name=f"{name}_valid")
        self.payload = Signal(layout, name=f"{name}_payload")
        self.push = Signal(name=f"{name}_push")
        self.rec = Signal(layout, name=f"{name}_rec")
        self.ok = Signal(name=f"{name}_ok")
        m.d.comb += [port.valid.eq(self.valid), port.payload.eq(self.payload),
                     self.ok.eq(~self.valid | port.ready)]
        with m.If(self.push & self.ok):
            m.d.sync += [self.valid.eq(1), self.payload.eq(self.rec)]
        with m.Elif(port.ready):
            m.d.sync += self.valid.eq(0)


class Ctx:
    """What the sequencers share: module, config, memory map, memories, registers, counters."""


class CompactCore(wiring.Component):
    """The compact accelerator core for one :class:`golden.config.NetConfig`.

    Parameters
    ----------
    cfg : golden.config.NetConfig
    lanes : int
        ``P``, synapses per synapse-memory word (a power of two, 1 .. 32 and more).

    Members: as :class:`hdl_gen.core.Core`.
    """

    MIN_LANES = 1          # the generator's --lanes check (hdl_gen.__main__.check_lanes_for)

    def __init__(self, cfg, *, lanes: int = DEFAULT_LANES, out_fifo: int = 1):
        check_compact_lanes(lanes)
        self._cfg = cfg
        self._lanes = lanes
        self.tbso = cfg.optimizer == "tbso"
        self.mem_layout = mem_layout(cfg, lanes)
        self.map = MemoryMap(cfg, lanes)
        super().__init__(core_signature(cfg, lanes, self.mem_layout))

    @property
    def cfg(self):
        return self._cfg

    @property
    def lanes(self) -> int:
        return self._lanes

    def words_per_row(self, layer: int) -> int:
        """``C`` of weight layer ``layer``."""
        return self.map.C[layer]

    @classmethod
    def memories(cls, cfg, lanes: int) -> list[dict]:
        """Every memory of the core (the architectures' interface): the elaborated netlist's
        list, with the synapse memory marked single-port and ``ram_style = "huge"``."""
        from .inventory import memory_inventory
        out = []
        for mem in memory_inventory(cls(cfg, lanes=lanes)):
            if mem["name"] == "syn":
                mem = {**mem, "ports": 1, "style": "huge"}
            out.append(mem)
        return out

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg, mp = self._cfg, self.map
        L = cfg.n_layers
        m = Module()
        x = Ctx()
        x.m, x.cfg, x.map, x.P, x.tbso = m, cfg, mp, self._lanes, self.tbso
        x.core = self
        fam = getattr(platform, "family", None)
        ice40 = fam == "ice40" or str(getattr(platform, "device", "")).startswith("iCE40")
        huge = {"ram_style": "huge"} if ice40 else None
        x.syn = Mem(m, "syn", mp.syn_width, mp.syn_depth, single=True, attrs=huge)
        x.trs = Mem(m, "trs", mp.tb + 1, mp.trs_depth)
        x.nv = Mem(m, "nv", mp.vb, mp.n_depth)
        x.nb = Mem(m, "nb", mp.vb, mp.n_depth)
        x.nth = x.nsg = None
        if mp.hid_depth:
            x.nth = Mem(m, "nth", mp.vb, mp.hid_depth,
                        init=[th & ((1 << mp.vb) - 1) for th in mp.theta_init])
            x.nsg = Mem(m, "nsg", mp.sgb, mp.hid_depth)
        x.z = Mem(m, "z", x.P * mp.zb, mp.c_depth, lanes=x.P)
        x.dl = Mem(m, "dl", x.P * mp.db, mp.c_depth, lanes=x.P)
        x.score = Mem(m, "score", mp.sw, cfg.layers[-1])
        x.tb = []
        if self.tbso:
            from .tbso_unit import TbsoUnit
            x.tb = [TbsoUnit(cfg, l) for l in range(L)]
            for l in range(L):
                m.submodules[f"tbso{l}"] = x.tb[l]

        # --- registers ---------------------------------------------------------------------------
        x.t = Signal(T_BITS + 1)
        x.label = Signal(uidx(cfg.layers[-1]))
        x.learn = Signal()
        x.spikes_on = Signal(init=1)
        x.flips_on = Signal(init=1)
        x.step = Signal(32)
        x.key = Signal(32, init=cfg.seed & 0xFFFFFFFF)
        x.rate_shift = Signal(RATE_SHIFT_BITS, init=cfg.rate_shift)
        x.gamma_q = Signal(16, init=int(round(cfg.tbso_gamma * (1 << cfg.tbso_gamma_frac))))
        x.gamma = [Signal(16, init=g, name=f"gamma{l}") for l, g in enumerate(cfg.gamma)]
        x.pred = Signal(uidx(cfg.layers[-1]))
        x.lay = Signal(range(L + 1))
        x.i = Signal(15)                       # row (presynaptic) / node index
        x.j = Signal(15)                       # neuron (postsynaptic) index
        x.c = Signal(range(max(mp.C) + 1))     # word within a row
        x.row = Signal(max(1, mp.syn_depth.bit_length()))   # synapse address of word 0 of row
        x.nzd = Signal(L)                      # layer has a non-zero delta this step
        x.inc = {k: Signal(3, name=f"inc_{k}") for k in COUNTERS}    # at most 4 per cycle
        x.clear_cnt = Signal()
        x.res_kind = Signal(ResultKind)
        x.sp = OutBuf(m, self.o_spike, SPIKE_LAYOUT, "spk")
        x.fl = OutBuf(m, self.o_flip, FLIP_LAYOUT, "flp")
        m.d.comb += [self.o_result.p.kind.eq(x.res_kind), self.o_result.p.t.eq(x.t),
                     self.o_result.p.pred.eq(x.pred)]
        x.i_mem, x.o_mem = self.i_mem, self.o_mem
        x.mq = Signal(self.mem_layout)         # the latched memory request

        forward.setup(x)
        with m.FSM(name="core") as fsm:
            self._control(x)
            forward.add_states(x)
            learning.add_states(x)
            hostmem.add_states(x)
        busy = ~fsm.ongoing("IDLE")
        phases = {"cyc_fwd": ("FWD_START", "ACC_IS", "ACC_W", "LIF_START", "LIF_B", "LIF_U",
                              "LIF_C", "LIF_D"),
                  "cyc_err": ("TR_START", "TR_B") + learning.ERR_STATES,
                  "cyc_learn": learning.LEARN_STATES}
        for k, states in phases.items():
            m.d.comb += x.inc[k].eq(sum(fsm.ongoing(s) for s in states))
        tail = fsm.ongoing("DRAIN_STEP") | fsm.ongoing("RESULT_STEP")
        m.d.comb += x.inc["cyc_step"].eq(sum(x.inc[k] for k in phases) + tail)

        # --- counters and status -----------------------------------------------------------------
        st = self.status
        for k in COUNTERS:
            # the increments are registered (one cycle late) to keep the datapath's decisions
            # off the 32-bit adders; an increment in the cycle of CLEAR_COUNTERS is dropped
            cnt = Signal(CNT_BITS, name=f"cnt_{k}")
            inc = Signal(3, name=f"inc_{k}_r")
            m.d.sync += inc.eq(Mux(x.clear_cnt, 0, x.inc[k]))
            with m.If(x.clear_cnt):
                m.d.sync += cnt.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + inc)
            m.d.comb += getattr(st, k).eq(cnt)
        m.d.comb += [st.busy.eq(busy), st.learn.eq(x.learn), st.spikes_on.eq(x.spikes_on),
                     st.flips_on.eq(x.flips_on), st.t.eq(x.t), st.label.eq(x.label),
                     st.step.eq(x.step), st.key.eq(x.key)]
        if x.tb:
            m.d.comb += [u.cnt_clear.eq(x.clear_cnt) for u in x.tb]
            m.d.comb += st.sat_v.eq(sum(u.n_v_sat for u in x.tb)[:CNT_BITS])
        return m

    def _control(self, x):
        """IDLE (events, commands, memory requests), sample clear, drain and result."""
        m, cfg, mp = x.m, x.cfg, x.map
        n_in, n_out = cfg.layers[0], cfg.layers[-1]
        ev, ctrl = self.i_event, self.i_ctrl
        op, arg = ctrl.p.op, ctrl.p.arg
        ev_pre = Signal(range(n_in))
        with m.State("IDLE"):
            m.d.comb += [ev.ready.eq(1), x.trs.raddr.eq(ev.p.pre)]
            take_ctrl = ctrl.valid & ~ev.valid
            take_mem = x.i_mem.valid & ~ev.valid & ~ctrl.valid
            m.d.comb += [ctrl.ready.eq(take_ctrl), x.i_mem.ready.eq(take_mem)]
            with m.If(ev.valid):
                with m.If(ev.p.pre < n_in):
                    m.d.sync += ev_pre.eq(ev.p.pre)
                    m.next = "EV_CHK"
                with m.Else():
                    m.d.comb += x.inc["dropped"].eq(1)
            with m.If(take_ctrl):
                with m.Switch(op):
                    with m.Case(CtrlOp.SYNC):
                        m.d.sync += x.res_kind.eq(ResultKind.SYNC)
                        m.next = "DRAIN"
                    with m.Case(CtrlOp.RESET_SAMPLE):
                        m.d.sync += x.i.eq(0)
                        m.next = "CLEAR"
                    with m.Case(CtrlOp.LABEL):
                        with m.If(arg < n_out):
                            m.d.sync += x.label.eq(arg)
                        with m.Else():
                            m.d.comb += x.inc["bad_cmd"].eq(1)
                    with m.Case(CtrlOp.LEARN):
                        m.d.sync += x.learn.eq(arg[0])
                    with m.Case(CtrlOp.OUTPUTS):
                        m.d.sync += [x.spikes_on.eq(arg[0]), x.flips_on.eq(arg[1])]
                    with m.Case(CtrlOp.STEP):
                        with m.If(x.t >= cfg.T):
                            m.d.comb += x.inc["bad_cmd"].eq(1)
                            m.d.sync += x.res_kind.eq(ResultKind.REFUSED)
                            m.next = "RESULT"
                        with m.Else():
                            m.d.sync += [x.res_kind.eq(ResultKind.STEP), x.lay.eq(0),
                                         x.nzd.eq(0)]
                            forward.step_start(x)
                            m.next = "FWD_START"
                    with m.Case(CtrlOp.CLEAR_COUNTERS):
                        m.d.comb += x.clear_cnt.eq(1)
                    with m.Default():
                        m.d.comb += x.inc["bad_cmd"].eq(1)
            with m.If(take_mem):
                m.d.sync += x.mq.eq(x.i_mem.payload)
                m.next = "MEM_A0"
        with m.State("EV_CHK"):                # the input's trace word, read in IDLE
            with m.If(x.trs.rdata[mp.tb]):
                m.d.comb += x.inc["duplicate"].eq(1)
            with m.Else():
                x.trs.write(m, ev_pre, x.trs.rdata | (1 << mp.tb))
            m.next = "IDLE"
        # a new sample: membranes, traces, spike bits, accumulators and scores to 0, t = 0
        depth = max(mp.trs_depth, mp.n_depth, mp.c_depth, n_out)
        with m.State("CLEAR"):
            k = x.i
            with m.If(k < mp.trs_depth):
                x.trs.write(m, k, 0)
            with m.If(k < mp.n_depth):
                x.nv.write(m, k, 0)
            with m.If(k < mp.c_depth):
                x.z.write(m, k, 0)
            with m.If(k < n_out):
                x.score.write(m, k, 0)
            m.d.sync += k.eq(k + 1)
            with m.If(k == depth - 1):
                m.d.sync += x.t.eq(0)
                m.next = "IDLE"
        # every spike and flip of the step has left the core
        for name, step in (("DRAIN", False), ("DRAIN_STEP", True)):
            with m.State(name):
                with m.If(~x.sp.valid & ~x.fl.valid):
                    with m.If(x.res_kind == ResultKind.STEP):
                        m.next = "RESULT_STEP"
                    with m.Else():
                        m.next = "RESULT"
        for name in ("RESULT", "RESULT_STEP"):
            with m.State(name):
                m.d.comb += self.o_result.valid.eq(1)
                with m.If(self.o_result.ready):
                    with m.If(x.res_kind == ResultKind.STEP):
                        m.d.sync += x.t.eq(x.t + 1)
                    m.next = "IDLE"
