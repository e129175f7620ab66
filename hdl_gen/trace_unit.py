"""TraceUnit: the spike filter in front of a layer and the presynaptic traces of its inputs
(golden twin: ``golden/trace_unit.py``).

Inputs ``i`` of weight layer ``l`` (``n = layers[l]``) are stored ``P`` to a word like the
neurons (input ``i`` = lane ``i % P`` of word ``i // P``). During a time step every input spike
passes through ``i_spike -> o_spike``: an index ``>= n`` is dropped (``bad``), a repeat of an
index already seen in this step is dropped (``dup``), every other one sets the input's spike bit
and goes on to the layer (one event per cycle, no bubble).

``update`` runs the trace pass, one word per cycle:
``a = sat(a - (a >> trace_shift) + s * 2^trace_frac, 0, trace_max)`` for every input, clears the
spike bits and sums ``s_a = sum(a^2)`` (T-BSO's ``S_a``). ``emit`` streams the traces to the
FlipUnit as ``o_act`` items ``{pre, a, last}`` in ascending ``pre``: every non-zero trace, and
always input ``n - 1`` with ``last = 1`` (a zero ``a`` is skipped by the FlipUnit), so a pass
always ends. ``clear`` zeroes traces and spike bits (a new sample).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import check_lanes, lowest_set, popcount, uidx, words

__all__ = ["TraceUnit"]


class TraceUnit(wiring.Component):
    """Spike filter and traces of the inputs of one weight layer.

    Parameters
    ----------
    cfg : golden.config.NetConfig
    layer : int
        Weight-layer index ``l``; the unit holds the ``layers[l]`` input traces.
    lanes : int
        ``P``, traces per word (a power of two).
    in_bits : int or None
        Width of ``i_spike.pre`` (the top's 16-bit input events); default: just wide enough.

    Members
    -------
    i_spike : In(stream {pre})
        Input spikes of the current step; taken only while no pass runs.
    o_spike : Out(stream {pre})
        The spikes that passed (in range, first in this step).
    bad, dup : Out(1)
        One-cycle pulses: an out-of-range / a repeated spike was dropped.
    update, emit, clear : In(1)
        Pulses starting the trace pass, the ``o_act`` pass, the clear pass.
    busy : Out(1)
        A spike or a pass is in flight.
    s_a : Out
        ``sum(a^2)`` of the last trace pass.
    sat : Out
        Trace saturations counted in this cycle (golden counter ``trace``).
    o_act : Out(stream {pre, a, last})
        Traces for the FlipUnit (payload layout equal to ``FlipUnit.i_pre``).
    x_addr : In, x_a : Out
        Read of trace word ``x_addr``, one cycle later.
    """

    def __init__(self, cfg, layer: int, lanes: int, *, in_bits: int | None = None):
        check_lanes(lanes)
        if not 0 <= layer < cfg.n_layers:
            raise ValueError(f"layer={layer} is invalid: allowed 0..{cfg.n_layers - 1}")
        self._cfg = cfg
        self._layer = layer
        self._lanes = P = lanes
        self.n = n = cfg.layers[layer]
        self.C = C = words(n, P)
        tb = cfg.trace_bits
        self.a_shape = data.ArrayLayout(unsigned(tb), P)
        in_w = in_bits if in_bits is not None else uidx(n).width
        self.s_a_width = 2 * tb + max(1, n.bit_length())
        self.act_layout = data.StructLayout({"pre": uidx(n), "a": unsigned(tb),
                                             "last": unsigned(1)})
        super().__init__({
            "i_spike": In(stream.Signature(data.StructLayout({"pre": unsigned(in_w)}))),
            "o_spike": Out(stream.Signature(data.StructLayout({"pre": uidx(n)}))),
            "bad": Out(1),
            "dup": Out(1),
            "update": In(1),
            "emit": In(1),
            "clear": In(1),
            "busy": Out(1),
            "s_a": Out(unsigned(self.s_a_width)),
            "sat": Out(uidx(P + 1)),
            "o_act": Out(stream.Signature(self.act_layout)),
            "x_addr": In(uidx(C)),
            "x_a": Out(self.a_shape),
        })

    def elaborate(self, platform):
        cfg, P, C, n = self._cfg, self._lanes, self.C, self.n
        d = cfg.derived()
        lg = ceil_log2(P)
        m = Module()

        m.submodules.a_mem = a_mem = memory.Memory(shape=self.a_shape, depth=C, init=[])
        m.submodules.s_mem = s_mem = memory.Memory(shape=P, depth=C, init=[])
        a_wr = a_mem.write_port()
        a_rd = a_mem.read_port()
        s_wr = s_mem.write_port(granularity=1)
        s_rd = s_mem.read_port(transparent_for=(s_wr,))      # spike filter
        s_prd = s_mem.read_port()                            # trace pass (still while filtering)
        x_rd = a_mem.read_port()
        m.d.comb += [x_rd.addr.eq(self.x_addr), self.x_a.eq(x_rd.data)]

        IDLE, UPD, EMIT, CLR = 0, 1, 2, 3
        state = Signal(2, init=IDLE)

        # --- spike filter --------------------------------------------------------------------
        f_valid = Signal()
        f_pre = Signal(lg + ceil_log2(C) + 1)
        f_bit = Signal()
        m.d.comb += f_bit.eq((s_rd.data >> f_pre[:lg])[0])
        f_pass = f_valid & ~f_bit & self.o_spike.ready
        f_move = f_valid & (f_bit | self.o_spike.ready)
        take = (state == IDLE) & (~f_valid | f_move)
        in_range = self.i_spike.p.pre < n
        m.d.comb += [
            self.i_spike.ready.eq(take),
            self.bad.eq(self.i_spike.valid & take & ~in_range),
            self.dup.eq(f_valid & f_bit),
            self.o_spike.valid.eq(f_valid & ~f_bit),
            self.o_spike.p.pre.eq(f_pre),
        ]
        with m.If(self.i_spike.valid & take & in_range):
            m.d.sync += [f_valid.eq(1), f_pre.eq(self.i_spike.p.pre)]
        with m.Elif(f_move):
            m.d.sync += f_valid.eq(0)

        # --- trace pass (pipelined, one word per cycle) ----------------------------------------
        p_c = Signal(range(C + 1))
        p1_valid = Signal()
        p1_c = Signal(uidx(C))
        p_issue = (state == UPD) & (p_c < C)
        m.d.sync += [p1_valid.eq(p_issue), p1_c.eq(p_c)]
        with m.If(p_issue):
            m.d.sync += p_c.eq(p_c + 1)
        # q: the trace and spike words registered (the block RAM outputs drive only flip-flops;
        # on the ECP5 N-MNIST build the RAM -> arithmetic -> register path was 20.1 ns), then
        # the new traces computed from the registers and written back. The pass reads every
        # word once, so writing back two cycles after the read is free of hazards.
        q_valid = Signal()
        q_c = Signal(uidx(C))
        q_a = Signal(self.a_shape)
        q_s = Signal(P)
        m.d.sync += [q_valid.eq(p1_valid), q_c.eq(p1_c), q_a.eq(a_rd.data), q_s.eq(s_prd.data)]
        new_a = Signal(self.a_shape)
        sats = []
        for k in range(P):
            a = q_a[k]
            raw = a - (a >> cfg.trace_shift) + Mux(q_s[k], d.trace_one, 0)
            ovf = raw > d.trace_max
            m.d.comb += new_a[k].eq(Mux(ovf, d.trace_max, raw))
            sats.append(ovf)
        # S_a (T-BSO's sum of squared traces) and the saturation count are pipelined behind the
        # write-back: new traces registered (p2), squares registered (p3), word sum (p4)
        p2_valid, p3_valid, p4_valid = Signal(), Signal(), Signal()
        p2_a = Signal(self.a_shape)
        p2_sats = Signal(P)
        m.d.sync += [p2_valid.eq(q_valid), p2_a.eq(new_a),
                     p2_sats.eq(Mux(q_valid, Cat(*sats), 0))]
        p3_sq = [Signal(2 * cfg.trace_bits, name=f"sq{k}") for k in range(P)]
        m.d.sync += p3_valid.eq(p2_valid)
        m.d.sync += [p3_sq[k].eq(p2_a[k] * p2_a[k]) for k in range(P)]
        sat_r = Signal.like(self.sat)
        m.d.sync += sat_r.eq(popcount(list(p2_sats)))
        word_sq = Signal(2 * cfg.trace_bits + lg + 1)
        m.d.sync += [p4_valid.eq(p3_valid), word_sq.eq(sum(p3_sq))]
        s_a = Signal.like(self.s_a)
        m.d.comb += [self.s_a.eq(s_a), self.sat.eq(sat_r)]
        with m.If(p4_valid):
            m.d.sync += s_a.eq(s_a + word_sq)
        upd_drained = ~p1_valid & ~q_valid & ~p2_valid & ~p3_valid & ~p4_valid & (p2_sats == 0)

        # --- emit pass -------------------------------------------------------------------------
        e_rd_c = Signal(range(C + 1))
        e_have = Signal()
        e_cur = Signal(uidx(C))
        pend = Signal(P)
        held = Signal(self.a_shape)
        pend_word = Signal(uidx(C))
        # o_act leaves from registers (timing: the selection below is a path of its own)
        o_valid = Signal()
        o_pre = Signal.like(self.o_act.p.pre)
        o_a = Signal.like(self.o_act.p.a)
        o_last = Signal()
        load = (pend != 0) & (~o_valid | self.o_act.ready)
        one_left = (pend & (pend - 1)) == 0
        e_consume = (state == EMIT) & e_have & ((pend == 0) | (one_left & load))
        e_issue = (state == EMIT) & (~e_have | e_consume) & (e_rd_c < C)
        with m.If(e_issue):
            m.d.sync += [e_have.eq(1), e_cur.eq(e_rd_c), e_rd_c.eq(e_rd_c + 1)]
        with m.Elif(e_consume):
            m.d.sync += e_have.eq(0)
        # the lowest pending lane, one-hot: its trace is an AND-OR over the lanes
        onehot = Signal(P)
        m.d.comb += onehot.eq(pend & (~pend + 1))
        lane = lowest_set(pend, P)
        sel_a = Signal.like(self.o_act.p.a)
        ab = len(sel_a)
        terms = [held[k][:ab] & onehot[k].replicate(ab) for k in range(P)]
        while len(terms) > 1:
            terms = [terms[q] | terms[q + 1] if q + 1 < len(terms) else terms[q]
                     for q in range(0, len(terms), 2)]
        m.d.comb += sel_a.eq(terms[0])
        last_word, last_lane = (n - 1) // P, (n - 1) % P
        nz = Signal(P)
        for k in range(P):
            keep = a_rd.data[k] != 0
            if k == last_lane:
                keep = keep | (e_cur == last_word)
            m.d.comb += nz[k].eq(keep)
        m.d.comb += [
            self.o_act.valid.eq(o_valid),
            self.o_act.p.pre.eq(o_pre),
            self.o_act.p.a.eq(o_a),
            self.o_act.p.last.eq(o_last),
        ]
        with m.If(self.o_act.valid & self.o_act.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(load):
            m.d.sync += [o_valid.eq(1), o_pre.eq(Cat(lane, pend_word)), o_a.eq(sel_a),
                         o_last.eq((pend_word == last_word) & onehot[last_lane]),
                         pend.eq(pend & (pend - 1))]
        with m.If(e_consume):
            m.d.sync += [pend.eq(nz), held.eq(a_rd.data), pend_word.eq(e_cur)]

        m.d.comb += s_prd.en.eq(state == UPD)

        # --- memory ports by state --------------------------------------------------------------
        c_c = Signal(uidx(C))
        with m.Switch(state):
            with m.Case(IDLE):
                m.d.comb += [s_rd.addr.eq(self.i_spike.p.pre >> lg),
                             s_rd.en.eq(self.i_spike.valid & take),
                             s_wr.addr.eq(f_pre >> lg),
                             s_wr.en.eq(Mux(f_pass, 1 << f_pre[:lg], 0)),
                             s_wr.data.eq(-1)]
            with m.Case(UPD):
                m.d.comb += [a_rd.addr.eq(p_c), s_prd.addr.eq(p_c),
                             a_wr.addr.eq(q_c), a_wr.data.eq(new_a), a_wr.en.eq(q_valid),
                             s_wr.addr.eq(p1_c), s_wr.data.eq(0),
                             s_wr.en.eq(Mux(p1_valid, (1 << P) - 1, 0))]
            with m.Case(EMIT):
                m.d.comb += [a_rd.addr.eq(e_rd_c), a_rd.en.eq(e_issue)]
            with m.Case(CLR):
                m.d.comb += [a_wr.addr.eq(c_c), a_wr.data.eq(0), a_wr.en.eq(1),
                             s_wr.addr.eq(c_c), s_wr.data.eq(0), s_wr.en.eq((1 << P) - 1)]

        # --- control -----------------------------------------------------------------------------
        with m.Switch(state):
            with m.Case(IDLE):
                with m.If(~f_valid):
                    with m.If(self.update):
                        m.d.sync += [state.eq(UPD), p_c.eq(0), s_a.eq(0)]
                    with m.Elif(self.emit):
                        m.d.sync += [state.eq(EMIT), e_rd_c.eq(0), e_have.eq(0)]
                    with m.Elif(self.clear):
                        m.d.sync += [state.eq(CLR), c_c.eq(0)]
            with m.Case(UPD):
                with m.If((p_c == C) & upd_drained):
                    m.d.sync += state.eq(IDLE)
            with m.Case(EMIT):
                with m.If((e_rd_c == C) & ~e_have & (pend == 0) & ~o_valid):
                    m.d.sync += state.eq(IDLE)
            with m.Case(CLR):
                m.d.sync += c_c.eq(c_c + 1)
                with m.If(c_c == C - 1):
                    m.d.sync += state.eq(IDLE)
        m.d.comb += self.busy.eq((state != IDLE) | f_valid)
        return m
