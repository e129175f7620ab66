"""Core: the accelerator top (golden twin: ``golden/core.py``), all layers, learning on or off.

One NeuronArray, TraceUnit, ErrorUnit, FlipUnit (and, for T-BSO, TbsoUnit) per weight layer;
the top owns the weight memories and sequences one time step exactly in golden's order
(``Core.step_once``):

1. forward, layer by layer: input events stream into layer 0 while the core is idle; ``STEP``
   starts layer 0's LIF pass, whose spikes stream into layer 1's accumulation (and out on
   ``o_spike``) while the pass runs; then layer 1's LIF pass, and so on. The output layer adds its
   membrane to the scores.
2. the trace pass of every layer (all layers at once), and, with learning on, at the same time
   the output error and the hidden errors, last layer first, through the old weights;
3. with learning on, per layer 0..L-1: T-BSO ``V[t]`` and threshold, then the FlipUnit pass fed
   by the layer's active traces (flips out on ``o_flip``); the learning-step key advances;
4. argmax of the scores, wait until every spike and flip of the step has left the core, answer
   on ``o_result``.

docs/architecture.md has the block diagram, the cycle formulas and the interface tables; the
field layouts are the module constants below.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.fixed import GOLDEN32

from .banked_memory import BankedMemory
from .common import LAYER_BITS, NEURON_BITS, T_BITS, check_lanes, uidx, weight_words, words
from .error_unit import ErrorUnit
from .flip_unit import RATE_SHIFT_BITS, FlipUnit
from .neuron_array import NeuronArray
from .trace_unit import TraceUnit

__all__ = ["Core", "core_signature", "CtrlOp", "MemSpace", "Reg", "ResultKind", "DEFAULT_LANES", "EVENT_LAYOUT",
           "CTRL_LAYOUT", "SPIKE_LAYOUT", "FLIP_LAYOUT", "RESULT_LAYOUT", "STATUS_LAYOUT",
           "mem_layout", "MEM_ADDR_BITS", "INDEX_BITS", "data_width"]

DEFAULT_LANES = 32
INDEX_BITS = 16          # input event index (indices >= n_in are counted and dropped)
MEM_ADDR_BITS = 28       # memory-port address; synapse spaces: (pre << 14) | post
CNT_BITS = 32


class CtrlOp(enum.Enum, shape=4):
    """Operations on ``i_ctrl`` (argument in ``arg``)."""

    SYNC = 0              # answer on o_result (kind SYNC) once all earlier outputs have left
    RESET_SAMPLE = 1      # clear membranes, traces, scores; t = 0
    LABEL = 2             # arg = class label (>= n_out: counted in bad_cmd, ignored)
    LEARN = 3             # arg bit 0: learning on
    OUTPUTS = 4           # arg bit 0: spike events on o_spike; bit 1: flip events on o_flip
    STEP = 5              # run time step t with the events sent before; answer on o_result
    CLEAR_COUNTERS = 6    # zero every status counter


class ResultKind(enum.Enum, shape=2):
    STEP = 0              # time step ``t`` ran; ``pred`` = argmax of the scores after it
    SYNC = 1              # answer to SYNC
    REFUSED = 2           # STEP with t >= T (a RESET_SAMPLE is needed); counted in bad_cmd


class MemSpace(enum.Enum, shape=4):
    """``i_mem.mem`` (0..5 are host.protocol.Mem)."""

    WEIGHT = 0            # synapse (pre << 14 | post), data bit 0 (1 = +1)
    MOMENTUM = 1          # synapse (pre << 14 | post), signed momentum_bits
    V = 2                 # addr = t (T-BSO; reads 0 under BSO, writes ignored)
    THETA = 3             # hidden layers, addr = neuron
    BIAS = 4              # addr = neuron
    REG = 5               # addr = Reg
    WEIGHT_WORD = 6       # raw weight word i*C + c, P bits
    SCORE = 7             # read only: output score of neuron addr (layer ignored)
    MEMBRANE = 8          # read only: membrane v of neuron addr
    TRACE = 9             # read only: trace of input addr of the layer


class Reg(enum.IntEnum):
    """Registers of ``MemSpace.REG`` (host.protocol.Reg plus the key)."""

    STEP = 0              # learning-step counter; a write also sets KEY = seed + STEP * GOLDEN32
    RATE_SHIFT = 1
    TBSO_GAMMA_Q = 2
    GAMMA = 3             # GAMMA + l: BSO threshold of layer l
    KEY = 0x100           # the stochastic-rounding key itself


EVENT_LAYOUT = data.StructLayout({"pre": unsigned(INDEX_BITS)})
CTRL_LAYOUT = data.StructLayout({"op": CtrlOp, "arg": unsigned(32)})
SPIKE_LAYOUT = data.StructLayout({"t": unsigned(T_BITS), "layer": unsigned(LAYER_BITS),
                                  "neuron": unsigned(NEURON_BITS)})
FLIP_LAYOUT = data.StructLayout({"t": unsigned(T_BITS), "layer": unsigned(LAYER_BITS),
                                 "pre": unsigned(NEURON_BITS), "post": unsigned(NEURON_BITS)})
RESULT_LAYOUT = data.StructLayout({"kind": ResultKind, "t": unsigned(T_BITS),
                                   "pred": unsigned(NEURON_BITS)})
STATUS_LAYOUT = data.StructLayout({
    "busy": unsigned(1), "learn": unsigned(1), "spikes_on": unsigned(1), "flips_on": unsigned(1),
    "t": unsigned(T_BITS + 1), "label": unsigned(NEURON_BITS),
    "step": unsigned(32), "key": unsigned(32),
    "dropped": unsigned(CNT_BITS), "duplicate": unsigned(CNT_BITS), "bad_cmd": unsigned(CNT_BITS),
    "sat_membrane": unsigned(CNT_BITS), "sat_trace": unsigned(CNT_BITS),
    "sat_delta": unsigned(CNT_BITS), "sat_momentum": unsigned(CNT_BITS),
    "sat_v": unsigned(CNT_BITS), "spikes": unsigned(CNT_BITS), "flips": unsigned(CNT_BITS),
    # clock cycles spent in the phases of STEP: forward (from STEP to the output layer's LIF
    # pass done; the input events' accumulation before STEP is not included), errors and
    # traces, learning (T-BSO and flip passes), and whole steps (STEP taken .. result sent)
    "cyc_fwd": unsigned(CNT_BITS), "cyc_err": unsigned(CNT_BITS),
    "cyc_learn": unsigned(CNT_BITS), "cyc_step": unsigned(CNT_BITS),
})


def data_width(cfg, lanes: int) -> int:
    """Width of the memory port's data: a weight word, a V value and 32-bit registers fit."""
    return max(32, lanes, cfg.v_bits)


def mem_layout(cfg, lanes: int) -> data.StructLayout:
    """Payload of ``i_mem``."""
    return data.StructLayout({"write": unsigned(1), "mem": MemSpace,
                              "layer": unsigned(LAYER_BITS), "addr": unsigned(MEM_ADDR_BITS),
                              "data": unsigned(data_width(cfg, lanes))})


def core_signature(cfg, lanes: int, mem_layout) -> dict:
    """The wiring signature every core architecture has (streams, payloads, status word)."""
    return {
        "i_event": In(stream.Signature(EVENT_LAYOUT)),
        "i_ctrl": In(stream.Signature(CTRL_LAYOUT)),
        "i_mem": In(stream.Signature(mem_layout)),
        "o_mem": Out(stream.Signature(data.StructLayout(
            {"data": unsigned(data_width(cfg, lanes))}))),
        "o_spike": Out(stream.Signature(SPIKE_LAYOUT)),
        "o_flip": Out(stream.Signature(FLIP_LAYOUT)),
        "o_result": Out(stream.Signature(RESULT_LAYOUT)),
        "status": Out(STATUS_LAYOUT),
    }


class Core(wiring.Component):
    """The accelerator core for one :class:`golden.config.NetConfig`.

    Parameters
    ----------
    cfg : golden.config.NetConfig
    lanes : int
        ``P``, neurons (synapses) per memory word: 8, 16, 32 or 64.
    out_fifo : int
        Depth of the ``o_spike`` and ``o_flip`` FIFOs.

    Members
    -------
    i_event : In(stream EVENT_LAYOUT)
        Input spikes of the next time step (taken while the core is idle).
    i_ctrl : In(stream CTRL_LAYOUT)
        :class:`CtrlOp` operations; taken while idle and while no event is offered, so an event
        offered together with a ``STEP`` belongs to that step.
    i_mem, o_mem : In(stream mem_layout), Out(stream {data})
        Memory and register access while idle; every read answers exactly once on ``o_mem``.
    o_spike : Out(stream SPIKE_LAYOUT)
        Hidden-layer spikes, per layer in ascending neuron order (``OUTPUTS`` bit 0).
    o_flip : Out(stream FLIP_LAYOUT)
        Weight flips in golden order (``OUTPUTS`` bit 1; off: only counted).
    o_result : Out(stream RESULT_LAYOUT)
        One answer per ``STEP`` and per ``SYNC``, after that step's spikes and flips left.
    status : Out(STATUS_LAYOUT)
        Mode, time step, learning step, key and counters (wrapping 32-bit).
    """

    def __init__(self, cfg, *, lanes: int = DEFAULT_LANES, out_fifo: int = 16):
        check_lanes(lanes)
        self._cfg = cfg
        self._lanes = lanes
        self._out_fifo = out_fifo
        self.tbso = cfg.optimizer == "tbso"
        self.mem_layout = mem_layout(cfg, lanes)
        super().__init__(core_signature(cfg, lanes, self.mem_layout))

    @property
    def cfg(self):
        return self._cfg

    @property
    def lanes(self) -> int:
        return self._lanes

    def words_per_row(self, layer: int) -> int:
        """``C`` of weight layer ``layer``."""
        return words(self._cfg.layers[layer + 1], self._lanes)

    def initial_weights(self):
        """Golden's initial weights (``golden.core.Core(cfg).w_sign``): the memories' init."""
        from golden.core import Core as GoldenCore
        return GoldenCore(self._cfg).w_sign

    @classmethod
    def memories(cls, cfg, lanes: int) -> list[dict]:
        """Every memory this core instantiates for ``cfg`` and ``lanes`` (the architectures'
        interface, :mod:`hdl_gen.architectures`), read from its elaborated netlist: the board
        flow's fit check before synthesis."""
        from .inventory import memory_inventory
        return memory_inventory(cls(cfg, lanes=lanes))

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg, P = self._cfg, self._lanes
        d = cfg.derived()
        L = cfg.n_layers
        lay_n = cfg.layers
        lg = ceil_log2(P)
        DW = data_width(cfg, P)
        m = Module()

        na = [NeuronArray(cfg, l, P) for l in range(L)]
        tu = [TraceUnit(cfg, l, P, in_bits=INDEX_BITS if l == 0 else None) for l in range(L)]
        eu = [ErrorUnit(cfg, l, P) for l in range(L)]
        fu = [FlipUnit(cfg, l, lanes=P) for l in range(L)]
        for l in range(L):
            m.submodules[f"na{l}"] = na[l]
            m.submodules[f"tu{l}"] = tu[l]
            m.submodules[f"eu{l}"] = eu[l]
            m.submodules[f"fu{l}"] = fu[l]
        tb = []
        if self.tbso:
            from .tbso_unit import TbsoUnit
            tb = [TbsoUnit(cfg, l) for l in range(L)]
            for l in range(L):
                m.submodules[f"tbso{l}"] = tb[l]
        w0 = self.initial_weights()
        # weight memories: banked, read latency 2 (a deep layer's read multiplexer would
        # otherwise span the chip); the units and the memory port are built for that latency
        wmem = []
        for l in range(L):
            init = weight_words(w0[l], P)
            wm = BankedMemory(P, len(init), init=init)
            m.submodules[f"wmem{l}"] = wm
            wmem.append(wm)

        # --- registers -------------------------------------------------------------------------
        t = Signal(T_BITS + 1)
        label = Signal(uidx(lay_n[-1]))
        learn = Signal()
        spikes_on = Signal(init=1)
        flips_on = Signal(init=1)
        step = Signal(32)
        key = Signal(32, init=cfg.seed & 0xFFFFFFFF)
        rate_shift = Signal(RATE_SHIFT_BITS, init=cfg.rate_shift)
        gamma_q = Signal(16, init=int(round(cfg.tbso_gamma * (1 << cfg.tbso_gamma_frac))))
        gamma = [Signal(16, init=g, name=f"gamma{l}") for l, g in enumerate(cfg.gamma)]
        pred = Signal(uidx(lay_n[-1]))
        lay = Signal(range(L))
        cnt = {k: Signal(CNT_BITS, name=f"cnt_{k}") for k in
               ("dropped", "duplicate", "bad_cmd", "sat_membrane", "sat_trace", "sat_delta",
                "spikes", "cyc_fwd", "cyc_err", "cyc_learn", "cyc_step")}
        in_fwd = Signal()
        in_err = Signal()
        in_learn = Signal()
        in_tail = Signal()
        clear_cnt = Signal()
        bad_cmd = Signal()

        # --- input events -> layer 0 ---------------------------------------------------------
        ev_open = Signal()
        m.d.comb += [
            tu[0].i_spike.valid.eq(self.i_event.valid & ev_open),
            tu[0].i_spike.p.pre.eq(self.i_event.p.pre),
            self.i_event.ready.eq(tu[0].i_spike.ready & ev_open),
        ]
        for l in range(L):
            wiring.connect(m, tu[l].o_spike, na[l].i_event)

        # --- hidden spikes -> next layer's filter and the o_spike FIFO ---------------------------
        m.submodules.spike_fifo = sfifo = fifo.SyncFIFOBuffered(width=SPIKE_LAYOUT.size,
                                                                depth=self._out_fifo)
        spike_rec = Signal(SPIKE_LAYOUT)
        spike_we = Signal()
        spike_cnt = Signal()
        for l in range(L - 1):
            src, dst = na[l].o_spike, tu[l + 1].i_spike
            host_ok = sfifo.w_rdy | ~spikes_on
            m.d.comb += [
                dst.valid.eq(src.valid & host_ok),
                dst.p.pre.eq(src.p.post),
                src.ready.eq(dst.ready & host_ok),
            ]
            with m.If(src.valid & src.ready):
                m.d.comb += [spike_we.eq(spikes_on), spike_cnt.eq(1),
                             spike_rec.t.eq(t), spike_rec.layer.eq(l),
                             spike_rec.neuron.eq(src.p.post)]
        m.d.comb += [sfifo.w_data.eq(spike_rec), sfifo.w_en.eq(spike_we)]
        m.d.comb += [self.o_spike.valid.eq(sfifo.r_rdy), self.o_spike.payload.eq(sfifo.r_data),
                     sfifo.r_en.eq(self.o_spike.ready)]

        # --- flips -> the o_flip FIFO ----------------------------------------------------------
        m.submodules.flip_fifo = ffifo = fifo.SyncFIFOBuffered(width=FLIP_LAYOUT.size,
                                                               depth=self._out_fifo)
        flip_rec = Signal(FLIP_LAYOUT)
        flip_we = Signal()
        # all layers' flip passes run at once; their events leave in layer order (golden's):
        # only layer `flay` may hand over flips, the others stall on a full flip FIFO
        flay = Signal(range(L + 1))
        for l in range(L):
            src = fu[l].o_flip
            m.d.comb += src.ready.eq((flay == l) & (ffifo.w_rdy | ~flips_on))
            with m.If(src.valid & (flay == l)):
                m.d.comb += [flip_we.eq(flips_on), flip_rec.t.eq(t), flip_rec.layer.eq(l),
                             flip_rec.pre.eq(src.p.pre), flip_rec.post.eq(src.p.post)]
        m.d.comb += [ffifo.w_data.eq(flip_rec), ffifo.w_en.eq(flip_we & ffifo.w_rdy)]
        m.d.comb += [self.o_flip.valid.eq(ffifo.r_rdy), self.o_flip.payload.eq(ffifo.r_data),
                     ffifo.r_en.eq(self.o_flip.ready)]

        phase_fwd = Signal()
        phase_err = Signal()
        phase_flip = Signal()
        phase_argmax = Signal()

        # --- learning datapath ------------------------------------------------------------------
        for l in range(L):
            if l < L - 1:
                m.d.comb += [eu[l].x_theta.eq(na[l].x_theta),
                             eu[l].w_data.eq(Mux(phase_err, wmem[l + 1].r_data, 0)),
                             eu[l].dn_data.eq(eu[l + 1].dl_data),
                             eu[l + 1].dl_addr.eq(eu[l].dn_addr)]
            m.d.comb += [
                eu[l].x_u.eq(na[l].x_u),
                fu[l].d_wr_addr.eq(eu[l].d_wr_addr), fu[l].d_wr_data.eq(eu[l].d_wr_data),
                fu[l].d_wr_en.eq(eu[l].d_wr_en),
                # operand isolation: a unit sees weight words only in its own phase (no
                # toggling in the idle lanes; also what keeps Icarus fast)
                fu[l].w_rd_data.eq(Mux(phase_flip, wmem[l].r_data, 0)),
                na[l].w_data.eq(Mux(phase_fwd, wmem[l].r_data, 0)),
                fu[l].key.eq(key), fu[l].rate_shift.eq(rate_shift),
                fu[l].cnt_clear.eq(clear_cnt),
            ]
            wiring.connect(m, tu[l].o_act, fu[l].i_pre)
            if self.tbso:
                m.d.comb += [tb[l].s_d.eq(eu[l].s_d), tb[l].s_a.eq(tu[l].s_a),
                             tb[l].t.eq(t), tb[l].gamma_q.eq(gamma_q),
                             tb[l].cnt_clear.eq(clear_cnt),
                             fu[l].thr.eq(tb[l].thr_flip)]
            else:
                m.d.comb += fu[l].thr.eq(Mux(gamma[l] > d.mom_max, d.mom_max, gamma[l]))
        m.d.comb += eu[L - 1].label.eq(label)

        # --- memory-port request (latched) --------------------------------------------------------
        mq = Signal(self.mem_layout)
        mq_pre = mq.addr[NEURON_BITS:2 * NEURON_BITS]
        mq_post = mq.addr[:NEURON_BITS]
        mq_idx = mq.addr
        resp = Signal(DW)
        in_mem = Signal()             # a memory request owns the memory ports
        sp = MemSpace

        def is_(space):
            return mq.mem == space

        # request validity
        ok_terms = []
        for l in range(L):
            C = self.words_per_row(l)
            here = mq.layer == l
            syn = (mq_pre < lay_n[l]) & (mq_post < lay_n[l + 1])
            ok_terms += [
                here & (is_(sp.WEIGHT) | is_(sp.MOMENTUM)) & syn,
                here & is_(sp.WEIGHT_WORD) & (mq_idx < lay_n[l] * C),
                here & is_(sp.V) & (mq_idx < cfg.T),
                here & is_(sp.BIAS) & (mq_idx < lay_n[l + 1]),
                here & is_(sp.MEMBRANE) & (mq_idx < lay_n[l + 1]) & ~mq.write,
                here & is_(sp.TRACE) & (mq_idx < lay_n[l]) & ~mq.write,
            ]
            if l < L - 1:
                ok_terms.append(here & is_(sp.THETA) & (mq_idx < lay_n[l + 1]))
        reg_ok = (mq_idx < int(Reg.GAMMA) + L) | (mq_idx == int(Reg.KEY))
        ok_terms += [is_(sp.REG) & reg_ok,
                     is_(sp.SCORE) & (mq_idx < lay_n[-1]) & ~mq.write]
        mq_ok = Signal()
        m.d.comb += mq_ok.eq(Cat(*ok_terms).any())

        # addresses from the latched request (stable through the MEM states)
        lane = mq_post[:lg]
        lane_i = mq_idx[:lg]
        host_w_rd = [Signal(uidx(lay_n[l] * self.words_per_row(l)), name=f"host_waddr{l}")
                     for l in range(L)]
        for l in range(L):
            C = self.words_per_row(l)
            syn_word = mq_pre * C + (mq_post >> lg)
            m.d.comb += [
                host_w_rd[l].eq(Mux(is_(sp.WEIGHT_WORD), mq_idx, syn_word)),
                fu[l].mom_addr.eq(syn_word),
                na[l].h_addr.eq(mq_idx), na[l].h_data.eq(mq.data),
                tu[l].x_addr.eq(mq_idx >> lg),
            ]
            if self.tbso:
                m.d.comb += [tb[l].v_addr.eq(mq_idx), tb[l].v_wdata.eq(mq.data)]

        # --- weight-memory ports: owner by phase --------------------------------------------------
        am_addr = Signal(uidx(words(lay_n[-1], P)))
        for l in range(L):
            rd_addr = na[l].w_addr
            if l >= 1:
                rd_addr = Mux(phase_err, eu[l - 1].w_addr, rd_addr)
            rd_addr = Mux(phase_flip, fu[l].w_rd_addr, rd_addr)
            rd_addr = Mux(in_mem, host_w_rd[l], rd_addr)
            m.d.comb += wmem[l].r_addr.eq(rd_addr)
            x_addr = Mux(in_mem, mq_idx >> lg, eu[l].x_addr)
            if l == L - 1:
                x_addr = Mux(phase_argmax, am_addr, x_addr)
            m.d.comb += na[l].x_addr.eq(x_addr)
            with m.If(phase_flip):
                m.d.comb += [wmem[l].w_addr.eq(fu[l].w_wr_addr),
                             wmem[l].w_data.eq(fu[l].w_wr_data), wmem[l].w_en.eq(fu[l].w_wr_en)]

        # --- memory port: read data (valid in MEM_B) ----------------------------------------------
        def sx(v, width):
            """Sign-extend the ``width``-bit value ``v`` to DW."""
            return v[:width].as_signed()

        rdata = Signal(DW)
        rdata_r = Signal(DW)
        # The read-data selection uses copies of the request fields registered in MEM_A (the
        # request register itself fans out to every memory's address): the selection path then
        # starts next to the memories instead of at mq.
        rq = Signal(self.mem_layout)
        m.d.sync += rq.eq(mq)
        rq_lane, rq_lane_i = rq.addr[:NEURON_BITS][:lg], rq.addr[:lg]

        rq_ok = Signal()
        m.d.sync += rq_ok.eq(mq_ok)

        def rq_is(space):
            return rq.mem == space

        mb = cfg.membrane_bits

        # The one-cycle reads (NeuronArray, TraceUnit, TbsoUnit words) are registered next to
        # their memories every cycle: valid in MEM_B, and the lane and space selection below
        # starts at flip-flops (on the ECP5 N-MNIST build, trace RAM -> selection -> rdata_r was
        # the critical path, 20.5 ns). Weights and momenta come from BankedMemory registers.
        def held(x, name):
            r = Signal.like(x, name=name)
            m.d.sync += r.eq(x)
            return r

        for l in range(L):
            here = rq.layer == l
            word = wmem[l].r_data
            with m.If(here & rq_is(sp.WEIGHT)):
                m.d.comb += rdata.eq(word.bit_select(rq_lane, 1))
            with m.If(here & rq_is(sp.WEIGHT_WORD)):
                m.d.comb += rdata.eq(word)
            with m.If(here & rq_is(sp.MOMENTUM)):
                m.d.comb += rdata.eq(fu[l].mom_rdata.word_select(rq_lane, cfg.momentum_bits)
                                     .as_signed())
            if self.tbso:
                v = held(tb[l].v_rdata, f"v_rdata{l}_held")
                with m.If(here & rq_is(sp.V)):
                    m.d.comb += rdata.eq(v)
            spaces = [(sp.BIAS, na[l].x_bias, mb, True), (sp.MEMBRANE, na[l].x_v, mb, True),
                      (sp.TRACE, tu[l].x_a, cfg.trace_bits, False)]
            if l < L - 1:
                spaces.append((sp.THETA, na[l].x_theta, mb, True))
            for space, x, width, signed_ in spaces:
                lane_v = held(x, f"{space.name.lower()}{l}_held").as_value().word_select(
                    rq_lane_i, width)
                with m.If(here & rq_is(space)):
                    m.d.comb += rdata.eq(lane_v.as_signed() if signed_ else lane_v)
        sw = na[L - 1].score_width
        score_v = held(na[L - 1].x_score, "score_held").as_value().word_select(rq_lane_i, sw)
        with m.If(rq_is(sp.SCORE)):
            m.d.comb += rdata.eq(score_v.as_signed())
        with m.If(is_(sp.REG)):
            with m.Switch(mq_idx):
                with m.Case(int(Reg.STEP)):
                    m.d.comb += rdata.eq(step)
                with m.Case(int(Reg.RATE_SHIFT)):
                    m.d.comb += rdata.eq(rate_shift)
                with m.Case(int(Reg.TBSO_GAMMA_Q)):
                    m.d.comb += rdata.eq(gamma_q)
                with m.Case(int(Reg.KEY)):
                    m.d.comb += rdata.eq(key)
                for l in range(L):
                    with m.Case(int(Reg.GAMMA) + l):
                        m.d.comb += rdata.eq(gamma[l])

        # --- argmax of the scores -----------------------------------------------------------------
        n_out = lay_n[-1]
        am_j = Signal(range(n_out + 1))
        am_v = Signal()
        am_jd = Signal(uidx(n_out))
        am_best = Signal(signed(sw))
        am_score = Signal(signed(sw))
        m.d.comb += [am_addr.eq(am_j >> lg),
                     am_score.eq(na[L - 1].x_score.as_value().word_select(am_jd[:lg], sw)
                                 .as_signed())]

        # --- control FSM --------------------------------------------------------------------------
        op = self.i_ctrl.p.op
        arg = self.i_ctrl.p.arg
        drained = ~tu[0].busy & ~na[0].busy
        res_kind = Signal(ResultKind)
        key_bit = Signal(range(33))
        m.d.comb += [self.o_result.p.kind.eq(res_kind), self.o_result.p.t.eq(t),
                     self.o_result.p.pred.eq(pred)]
        pulse_na_start = Signal(L)
        pulse_eu_start = Signal(L)
        pulse_tb_start = Signal(L)
        pulse_emit = Signal(L)
        for l in range(L):
            m.d.comb += [na[l].start.eq(pulse_na_start[l]), eu[l].start.eq(pulse_eu_start[l]),
                         tu[l].emit.eq(pulse_emit[l])]
            if self.tbso:
                m.d.comb += tb[l].start.eq(pulse_tb_start[l])

        def all_idle(units):
            return ~Cat(*[u.busy for u in units]).any()

        def clamp(v, reg):
            top = (1 << len(reg)) - 1
            return Mux(v > top, top, v)

        with m.FSM(name="core"):
            with m.State("IDLE"):
                m.d.comb += [ev_open.eq(1), phase_fwd.eq(1)]
                take_ctrl = self.i_ctrl.valid & ~self.i_event.valid & drained
                take_mem = self.i_mem.valid & ~self.i_event.valid & drained & ~self.i_ctrl.valid
                m.d.comb += [self.i_ctrl.ready.eq(take_ctrl), self.i_mem.ready.eq(take_mem)]
                with m.If(take_ctrl):
                    with m.Switch(op):
                        with m.Case(CtrlOp.SYNC):
                            m.d.sync += res_kind.eq(ResultKind.SYNC)
                            m.next = "DRAIN"
                        with m.Case(CtrlOp.RESET_SAMPLE):
                            m.d.comb += [u.clear.eq(1) for u in na + tu]
                            m.next = "CLEAR"
                        with m.Case(CtrlOp.LABEL):
                            with m.If(arg < n_out):
                                m.d.sync += label.eq(arg)
                            with m.Else():
                                m.d.comb += bad_cmd.eq(1)
                        with m.Case(CtrlOp.LEARN):
                            m.d.sync += learn.eq(arg[0])
                        with m.Case(CtrlOp.OUTPUTS):
                            m.d.sync += [spikes_on.eq(arg[0]), flips_on.eq(arg[1])]
                        with m.Case(CtrlOp.STEP):
                            with m.If(t >= cfg.T):
                                m.d.comb += bad_cmd.eq(1)
                                m.d.sync += res_kind.eq(ResultKind.REFUSED)
                                m.next = "RESULT"
                            with m.Else():
                                m.d.sync += [res_kind.eq(ResultKind.STEP), lay.eq(0)]
                                m.next = "FWD_START"
                        with m.Case(CtrlOp.CLEAR_COUNTERS):
                            m.d.comb += clear_cnt.eq(1)
                        with m.Default():
                            m.d.comb += bad_cmd.eq(1)
                with m.If(take_mem):
                    m.d.sync += mq.eq(self.i_mem.payload)
                    m.next = "MEM_A"

            with m.State("CLEAR"):
                with m.If(all_idle(na + tu)):
                    m.d.sync += t.eq(0)
                    m.next = "IDLE"

            # forward: LIF pass of layer `lay` once its inputs have drained
            with m.State("FWD_START"):
                m.d.comb += [phase_fwd.eq(1), in_fwd.eq(1)]
                for l in range(L):
                    with m.If((lay == l) & ~tu[l].busy & ~na[l].busy):
                        m.d.comb += pulse_na_start[l].eq(1)
                        m.next = "FWD_RUN"
            with m.State("FWD_RUN"):
                m.d.comb += [phase_fwd.eq(1), in_fwd.eq(1)]
                for l in range(L):
                    with m.If((lay == l) & ~na[l].busy):
                        if l == L - 1:
                            m.d.comb += [u.update.eq(1) for u in tu]
                            with m.If(learn):
                                m.d.comb += pulse_eu_start[L - 1].eq(1)
                                m.d.sync += lay.eq(L - 1)
                                m.next = "ERR_RUN"
                            with m.Else():
                                m.next = "TRACE_WAIT"
                        else:
                            m.d.sync += lay.eq(l + 1)
                            m.next = "FWD_START"

            # errors, last layer first (the trace passes run meanwhile)
            with m.State("ERR_RUN"):
                m.d.comb += [phase_err.eq(1), in_err.eq(1)]
                for l in range(L):
                    with m.If((lay == l) & ~eu[l].busy):
                        if l == 0:
                            m.next = "TRACE_WAIT"
                        else:
                            m.d.comb += pulse_eu_start[l - 1].eq(1)
                            m.d.sync += lay.eq(l - 1)
            with m.State("TRACE_WAIT"):
                m.d.comb += in_err.eq(1)
                with m.If(all_idle(tu)):
                    with m.If(learn):
                        m.next = "TBSO_START" if self.tbso else "FLIP_START"
                    with m.Else():
                        m.next = "ARGMAX"

            # learning: the layers are independent (own weights, momenta, deltas, traces, V),
            # so all T-BSO updates run at once, then all flip passes at once
            if self.tbso:
                with m.State("TBSO_START"):
                    m.d.comb += [in_learn.eq(1), pulse_tb_start.eq((1 << L) - 1)]
                    m.next = "TBSO_RUN"
                with m.State("TBSO_RUN"):
                    m.d.comb += in_learn.eq(1)
                    with m.If(all_idle(tb)):
                        m.next = "FLIP_START"
            with m.State("FLIP_START"):
                # a layer whose deltas are all zero (S_d = 0) visits no synapse: no pass
                m.d.comb += [phase_flip.eq(1), in_learn.eq(1)]
                for l in range(L):
                    m.d.comb += pulse_emit[l].eq(eu[l].s_d != 0)
                m.d.sync += flay.eq(0)
                m.next = "FLIP_RUN"
            with m.State("FLIP_RUN"):
                m.d.comb += [phase_flip.eq(1), in_learn.eq(1)]
                for l in range(L):
                    with m.If((flay == l) & ~tu[l].busy & ~fu[l].busy):
                        m.d.sync += flay.eq(l + 1)
                with m.If(flay == L):
                    m.d.sync += [step.eq(step + 1), key.eq(key + GOLDEN32)]
                    m.next = "ARGMAX"

            # argmax over the output scores, lowest index on ties
            with m.State("ARGMAX"):
                m.d.comb += [phase_argmax.eq(1), in_tail.eq(1)]
                with m.If(am_j < n_out):
                    m.d.sync += am_j.eq(am_j + 1)
                m.d.sync += [am_v.eq(am_j < n_out), am_jd.eq(am_j)]
                with m.If(am_v):
                    with m.If((am_jd == 0) | (am_score > am_best)):
                        m.d.sync += [am_best.eq(am_score), pred.eq(am_jd)]
                with m.If(~am_v & (am_j == n_out)):
                    m.d.sync += am_j.eq(0)
                    m.next = "DRAIN"

            # every spike and flip of the step has left the core
            with m.State("DRAIN"):
                m.d.comb += in_tail.eq(res_kind == ResultKind.STEP)
                with m.If((sfifo.level == 0) & (ffifo.level == 0)):
                    m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += in_tail.eq(res_kind == ResultKind.STEP)
                m.d.comb += self.o_result.valid.eq(1)
                with m.If(self.o_result.ready):
                    with m.If(res_kind == ResultKind.STEP):
                        m.d.sync += t.eq(t + 1)
                    m.next = "IDLE"

            # memory port: A drives addresses (and plain writes), W waits (weight and momentum
            # reads take two cycles), B has read data (and RMW writes), C answers
            with m.State("MEM_A"):
                m.d.comb += in_mem.eq(1)
                w = mq.write & mq_ok
                for l in range(L):
                    here = mq.layer == l
                    m.d.comb += [
                        fu[l].mom_re.eq(here & is_(sp.MOMENTUM)),
                        na[l].h_we_bias.eq(w & here & is_(sp.BIAS)),
                    ]
                    if l < L - 1:
                        m.d.comb += na[l].h_we_theta.eq(w & here & is_(sp.THETA))
                    if self.tbso:
                        m.d.comb += [tb[l].v_re.eq(here & is_(sp.V)),
                                     tb[l].v_we.eq(w & here & is_(sp.V))]
                    with m.If(w & here & is_(sp.WEIGHT_WORD)):
                        m.d.comb += [wmem[l].w_addr.eq(mq_idx), wmem[l].w_data.eq(mq.data),
                                     wmem[l].w_en.eq(1)]
                with m.If(w & is_(sp.REG)):
                    with m.Switch(mq_idx):
                        with m.Case(int(Reg.STEP)):
                            m.d.sync += [step.eq(mq.data), key.eq(cfg.seed & 0xFFFFFFFF),
                                         key_bit.eq(0)]
                        # schedule registers saturate at their widths, as golden's schedule
                        # does (golden.config.SCHEDULE_LIMITS)
                        with m.Case(int(Reg.RATE_SHIFT)):
                            m.d.sync += rate_shift.eq(clamp(mq.data, rate_shift))
                        with m.Case(int(Reg.TBSO_GAMMA_Q)):
                            m.d.sync += gamma_q.eq(clamp(mq.data, gamma_q))
                        with m.Case(int(Reg.KEY)):
                            m.d.sync += key.eq(mq.data)
                        for l in range(L):
                            with m.Case(int(Reg.GAMMA) + l):
                                m.d.sync += gamma[l].eq(clamp(mq.data, gamma[l]))
                with m.If(~mq_ok):
                    m.d.comb += bad_cmd.eq(1)
                with m.If(w & is_(sp.REG) & (mq_idx == int(Reg.STEP))):
                    m.next = "MEM_KEY"
                with m.Elif(w & ~is_(sp.WEIGHT) & ~is_(sp.MOMENTUM)):
                    m.next = "IDLE"
                with m.Elif(mq.write & ~mq_ok):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "MEM_W"
            with m.State("MEM_W"):            # the banked memories' registered outputs (latency 2)
                m.d.comb += in_mem.eq(1)
                m.next = "MEM_B"
            with m.State("MEM_B"):
                m.d.comb += in_mem.eq(1)
                m.d.sync += rdata_r.eq(Mux(rq_ok, rdata, 0))
                for l in range(L):
                    here = mq.layer == l
                    word = wmem[l].r_data
                    onehot = Const(1, P) << lane
                    with m.If(mq.write & here & is_(sp.WEIGHT)):
                        m.d.comb += [wmem[l].w_addr.eq(host_w_rd[l]),
                                     wmem[l].w_data.eq(Mux(mq.data[0], word | onehot,
                                                        word & ~onehot)),
                                     wmem[l].w_en.eq(1)]
                    mw = cfg.momentum_bits
                    old = fu[l].mom_rdata
                    m.d.comb += fu[l].mom_wdata.eq(Cat(*[
                        Mux(lane == k, mq.data[:mw], old[k * mw:(k + 1) * mw]) for k in range(P)]))
                    with m.If(mq.write & here & is_(sp.MOMENTUM)):
                        m.d.comb += fu[l].mom_we.eq(1)
                with m.If(mq.write):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "MEM_R"
            with m.State("MEM_R"):            # the read data crosses to the response register
                m.d.sync += resp.eq(rdata_r)
                m.next = "MEM_C"
            with m.State("MEM_C"):
                m.d.comb += [self.o_mem.valid.eq(1), self.o_mem.p.data.eq(resp)]
                with m.If(self.o_mem.ready):
                    m.next = "IDLE"
            with m.State("MEM_KEY"):
                # KEY = seed + STEP * GOLDEN32 (mod 2^32), one multiplier bit per cycle
                with m.If(step.bit_select(key_bit[:5], 1)):
                    m.d.sync += key.eq(key + (Const(GOLDEN32, 32) << key_bit[:5])[:32])
                m.d.sync += key_bit.eq(key_bit + 1)
                with m.If(key_bit == 31):
                    m.next = "IDLE"

        # --- counters and status ------------------------------------------------------------------
        incs = {
            "dropped": tu[0].bad,
            "duplicate": Cat(*[u.dup for u in tu]).any(),
            "bad_cmd": bad_cmd,
            "sat_membrane": sum(u.sat for u in na),
            "sat_trace": sum(u.sat for u in tu),
            "sat_delta": sum(u.sat for u in eu),
            "spikes": spike_cnt,
            "cyc_fwd": in_fwd,
            "cyc_err": in_err,
            "cyc_learn": in_learn,
            "cyc_step": in_fwd | in_err | in_learn | in_tail,
        }
        for k, sig in cnt.items():
            with m.If(clear_cnt):
                m.d.sync += sig.eq(0)
            with m.Else():
                m.d.sync += sig.eq(sig + incs[k])
        st = self.status
        m.d.comb += [
            st.busy.eq(~ev_open), st.learn.eq(learn), st.spikes_on.eq(spikes_on),
            st.flips_on.eq(flips_on), st.t.eq(t), st.label.eq(label),
            st.step.eq(step), st.key.eq(key),
            st.sat_momentum.eq(sum(u.n_sat for u in fu)[:CNT_BITS]),
            st.flips.eq(sum(u.n_flip for u in fu)[:CNT_BITS]),
            st.sat_v.eq(sum(u.n_v_sat for u in tb)[:CNT_BITS] if tb else 0),
        ]
        for k, sig in cnt.items():
            m.d.comb += getattr(st, k).eq(sig)
        return m
