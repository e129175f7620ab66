"""NeuronArray: event-driven XNOR-accumulate and the LIF pass of one weight layer (golden twin:
``golden/neuron_array.py``).

The layer's ``n_post`` neurons are stored ``P`` (lanes) to a word: neuron ``j`` is lane ``j % P``
of word ``j // P``, ``C = ceil(n_post / P)`` words. The weight memory (owned by the top, a
:class:`~hdl_gen.banked_memory.BankedMemory` read here through ``w_addr``/``w_data`` with two
cycles of latency) holds at word ``i * C + c`` the
weights of presynaptic neuron ``i`` to posts ``c*P .. c*P+P-1`` (bit ``k`` = 1 means +1).

Accumulation: every input event ``i`` reads its ``C`` weight words, one per cycle, and adds +-1
to the ``P`` accumulators of word ``c`` (read-modify-write of the ``z`` memory through a
transparent read port, so back-to-back events need no bubble): ``P`` synaptic operations per
cycle, ``C`` cycles per event, and the next event is taken in the cycle the last word issues.

LIF pass (``start``): word by word, ``u = sat(v - (v >> leak_shift) + z * 2^membrane_frac +
bias)``; spiking layers fire at ``u >= theta`` with a soft (``v = sat(u - theta)``) or hard
(``v = 0``) reset and emit one ``o_spike`` event per spike, lowest post first; the output layer
keeps ``v = u`` and adds ``u`` to its score. ``u`` (pre-reset) is kept for the ErrorUnit; ``z`` is
cleared. Padding lanes (``j >= n_post``) are forced to zero and never fire or count.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import check_lanes, lowest_set, popcount, sat_sym, uidx, words

__all__ = ["NeuronArray"]


class NeuronArray(wiring.Component):
    """One weight layer's neurons: XNOR-accumulate of input events, then the LIF pass.

    Parameters
    ----------
    cfg : golden.config.NetConfig
    layer : int
        Weight-layer index ``l``: ``n_pre = layers[l]``, ``n_post = layers[l + 1]``; the last
        layer is the non-spiking output layer.
    lanes : int
        ``P``, neurons per word (a power of two).

    Members
    -------
    i_event : In(stream {pre})
        Presynaptic events to accumulate; taken only between passes.
    w_addr : Out, w_data : In(P)
        Weight-memory read: ``w_data`` is the word of the address presented two cycles
        earlier (``banked_memory.READ_LATENCY``).
    start : In(1)
        Pulse: begin the LIF pass (all events of the step have been delivered).
    clear : In(1)
        Pulse: begin the clear pass (membranes, scores and accumulators to zero).
    busy : Out(1)
        An event or a pass is in flight.
    o_spike : Out(stream {post})
        Spiking layers only: output spikes of the LIF pass in ascending post order.
    sat : Out
        Membrane saturations counted in this cycle (golden counter ``membrane``).
    x_addr : In
        Auxiliary read word address; ``x_u``, ``x_v``, ``x_theta``, ``x_bias``, ``x_score``
        (``ArrayLayout`` words) follow one cycle later.
    h_addr, h_data, h_we_theta, h_we_bias : In
        Host write of one neuron's threshold or bias; it lands in the memory one cycle later.
    """

    def __init__(self, cfg, layer: int, lanes: int):
        check_lanes(lanes)
        if not 0 <= layer < cfg.n_layers:
            raise ValueError(f"layer={layer} is invalid: allowed 0..{cfg.n_layers - 1}")
        self._cfg = cfg
        self._layer = layer
        self._lanes = P = lanes
        self.n_pre = cfg.layers[layer]
        self.n_post = cfg.layers[layer + 1]
        self.spiking = layer < cfg.n_layers - 1
        self.C = C = words(self.n_post, P)
        mb = cfg.membrane_bits
        self.mem_shape = data.ArrayLayout(signed(mb), P)
        self.score_width = mb + ceil_log2(cfg.T)
        self.score_shape = data.ArrayLayout(signed(self.score_width), P)
        self.z_shape = data.ArrayLayout(signed(self.n_pre.bit_length() + 1), P)
        members = {
            "i_event": In(stream.Signature(data.StructLayout({"pre": uidx(self.n_pre)}))),
            "w_addr": Out(uidx(self.n_pre * C)),
            "w_data": In(P),
            "start": In(1),
            "clear": In(1),
            "busy": Out(1),
            "sat": Out(uidx(2 * P + 1)),
            "x_addr": In(uidx(C)),
            "x_u": Out(self.mem_shape),
            "x_v": Out(self.mem_shape),
            "x_bias": Out(self.mem_shape),
            "h_addr": In(uidx(self.n_post)),
            "h_data": In(signed(mb)),
            "h_we_bias": In(1),
        }
        if self.spiking:
            members["x_theta"] = Out(self.mem_shape)
            members["h_we_theta"] = In(1)
            members["o_spike"] = Out(stream.Signature(
                data.StructLayout({"post": uidx(self.n_post)})))
        else:
            members["x_score"] = Out(self.score_shape)
        super().__init__(members)

    def elaborate(self, platform):
        cfg, P, C = self._cfg, self._lanes, self.C
        d = cfg.derived()
        mb = cfg.membrane_bits
        m = Module()

        theta0 = d.theta[self._layer] if self.spiking else 0
        m.submodules.z_mem = z_mem = memory.Memory(shape=self.z_shape, depth=C, init=[])
        m.submodules.v_mem = v_mem = memory.Memory(shape=self.mem_shape, depth=C, init=[])
        m.submodules.u_mem = u_mem = memory.Memory(shape=self.mem_shape, depth=C, init=[])
        m.submodules.b_mem = b_mem = memory.Memory(shape=self.mem_shape, depth=C, init=[])
        if self.spiking:
            m.submodules.t_mem = t_mem = memory.Memory(
                shape=self.mem_shape, depth=C,
                init=[[theta0 if c * P + k < self.n_post else 0 for k in range(P)]
                      for c in range(C)])
        else:
            m.submodules.s_mem = s_mem = memory.Memory(shape=self.score_shape, depth=C,
                                                        init=[])

        z_wr = z_mem.write_port()
        z_rd = z_mem.read_port(transparent_for=(z_wr,))      # accumulation
        z_lrd = z_mem.read_port()                            # LIF pass
        v_wr = v_mem.write_port()
        v_rd = v_mem.read_port()
        u_wr = u_mem.write_port()
        b_wr = b_mem.write_port(granularity=1)
        b_rd = b_mem.read_port()
        aux = [(u_mem, self.x_u), (v_mem, self.x_v), (b_mem, self.x_bias)]
        host_wr = [(b_wr, self.h_we_bias, "bias")]
        if self.spiking:
            t_wr = t_mem.write_port(granularity=1)
            t_rd = t_mem.read_port()
            lif_rd = [v_rd, b_rd, t_rd]
            aux.append((t_mem, self.x_theta))
            host_wr.append((t_wr, self.h_we_theta, "theta"))
        else:
            s_wr = s_mem.write_port()
            s_rd = s_mem.read_port()
            lif_rd = [v_rd, b_rd, s_rd]
            aux.append((s_mem, self.x_score))

        # auxiliary reads (ErrorUnit, argmax, host) and host writes of theta / bias
        for mem, out in aux:
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(self.x_addr), out.eq(rp.data)]
        lane_bits = ceil_log2(P)
        h_addr = Signal(lane_bits + ceil_log2(C) + 1)
        m.d.comb += h_addr.eq(self.h_addr)
        # host writes land a cycle late, from registers: the lane decode then starts at
        # flip-flops (on the ECP5 N-MNIST build, the output layer's bias write address -> lane
        # enables -> its flip-flop memory was the critical path, 18.4 ns). The Core never reads
        # or runs a pass in the cycle after a write.
        hw_word = Signal(len(h_addr) - lane_bits)
        hw_data = Signal.like(self.h_data)
        m.d.sync += [hw_word.eq(h_addr >> lane_bits), hw_data.eq(self.h_data)]
        for wp, we, what in host_wr:
            en = Signal(P, name=f"{what}_h_en")
            m.d.sync += en.eq(Mux(we, 1 << h_addr[:lane_bits], 0))
            m.d.comb += [wp.addr.eq(hw_word), wp.en.eq(en)]
            m.d.comb += [wp.data[k].eq(hw_data) for k in range(P)]

        # --- accumulation: stage 0 expands an event into C word reads ------------------------
        ACC, LIF, CLR = 0, 1, 2
        state = Signal(2, init=ACC)
        e_busy = Signal()
        e_addr = Signal.like(self.w_addr)
        e_c = Signal(uidx(C))
        s1_valid = Signal()
        s1_c = Signal(uidx(C))
        s2_valid = Signal()
        s2_c = Signal(uidx(C))
        e_last = e_c == C - 1
        take = (state == ACC) & (~e_busy | e_last)
        m.d.comb += [self.i_event.ready.eq(take), self.w_addr.eq(e_addr)]
        m.d.sync += [s1_valid.eq(e_busy), s2_valid.eq(s1_valid), s2_c.eq(s1_c)]
        with m.If(e_busy):
            m.d.sync += [s1_c.eq(e_c), e_addr.eq(e_addr + 1),
                         e_c.eq(Mux(e_last, 0, e_c + 1))]
            with m.If(e_last):
                m.d.sync += e_busy.eq(0)
        with m.If(self.i_event.valid & take):
            m.d.sync += [e_busy.eq(1), e_addr.eq(self.i_event.p.pre * C), e_c.eq(0)]

        # stage 1 reads the accumulators of word s1_c while the weight word is on its way (two
        # cycles of latency); stage 2: +-1 into them, written back the same cycle. A word read
        # in the cycle it is written gets the new value (transparent port), so back-to-back
        # events need no bubble even at C = 1.
        acc_word = Signal(self.z_shape)
        for k in range(P):
            m.d.comb += acc_word[k].eq(z_rd.data[k] + Mux(self.w_data[k], 1, -1))

        # --- LIF pass ---------------------------------------------------------------------
        # A pipeline without stalls: issue (read) -> data -> A (v - v>>leak, z*2^f + b) -> B (u = sat)
        # -> C (fire, v', score) -> D (write back; fire word into the spike FIFO). A word is
        # issued only when the spike FIFO has room for every word in flight (credit), so the
        # pipeline never has to stop; the FIFO then feeds the one-spike-per-cycle serialiser.
        l_rd_c = Signal(range(C + 1))
        stages = 5
        pend = Signal(P)
        pend_word = Signal(uidx(C))
        if self.spiking:
            depth = stages + 2
            m.submodules.fire_fifo = ffifo = fifo.SyncFIFO(width=P + uidx(C).width, depth=depth)
        l1_valid, la_valid, lb_valid, lc_valid, ld_valid = (Signal(name=f"l{s}_valid")
                                                            for s in "1abcd")
        if self.spiking:
            inflight = Signal(range(depth + stages + 1))
            m.d.comb += inflight.eq(ffifo.level + l1_valid + la_valid + lb_valid + lc_valid
                                  + ld_valid)
            credit_ok = inflight < depth
        else:
            credit_ok = Const(1)
        issue = (state == LIF) & (l_rd_c < C) & credit_ok
        with m.If(issue):
            m.d.sync += l_rd_c.eq(l_rd_c + 1)
        # the LIF arithmetic has its own read ports, which hold still during accumulation
        for rp in lif_rd + [z_lrd]:
            m.d.comb += [rp.addr.eq(l_rd_c), rp.en.eq(issue)]
        m.d.comb += [z_rd.addr.eq(s1_c), z_rd.en.eq(s1_valid)]

        mem_max = d.mem_max
        last_lanes = self.n_post - (C - 1) * P
        rw = mb + 3                                   # v - v>>leak + z*2^f + b before saturation
        third = t_rd if self.spiking else s_rd        # theta (spiking) or score (output) word
        third_shape = self.mem_shape if self.spiking else self.score_shape
        # the cycle after issue: memory words valid; stage A registers the first sums
        l1_c = Signal(uidx(C))
        m.d.sync += [l1_valid.eq(issue), l1_c.eq(l_rd_c)]
        a_c = Signal(uidx(C))
        a_x1 = Signal(data.ArrayLayout(signed(rw), P))
        a_x2 = Signal(data.ArrayLayout(signed(rw), P))
        a_third = Signal(third_shape)
        a_ok = Signal(P)
        m.d.sync += [la_valid.eq(l1_valid), a_c.eq(l1_c)]
        for k in range(P):
            v = v_rd.data[k]
            m.d.sync += [a_x1[k].eq(v - (v >> cfg.leak_shift)),
                         a_x2[k].eq((z_lrd.data[k] << cfg.membrane_frac) + b_rd.data[k])]
        m.d.sync += [a_third.eq(third.data),
                     a_ok.eq(Mux(l1_c == C - 1, (1 << last_lanes) - 1, (1 << P) - 1))]
        # stage B: u = sat(x1 + x2)
        b_c = Signal(uidx(C))
        b_u = Signal(self.mem_shape)
        b_ovf = Signal(P)
        b_third = Signal(third_shape)
        b_ok = Signal(P)
        m.d.sync += [lb_valid.eq(la_valid), b_c.eq(a_c), b_third.eq(a_third), b_ok.eq(a_ok)]
        for k in range(P):
            u_sat, u_ovf = sat_sym(a_x1[k] + a_x2[k], mem_max)
            m.d.sync += [b_u[k].eq(Mux(a_ok[k], u_sat, 0)), b_ovf[k].eq(a_ok[k] & u_ovf)]
        # stage C: fire, reset, score
        c_c = Signal(uidx(C))
        c_u = Signal(self.mem_shape)
        c_v = Signal(self.mem_shape)
        c_s = Signal(self.score_shape)
        c_fire = Signal(P)
        c_sats = Signal(2 * P)
        m.d.sync += [lc_valid.eq(lb_valid), c_c.eq(b_c), c_u.eq(b_u)]
        for k in range(P):
            u = b_u[k]
            if self.spiking:
                th = b_third[k]
                f = b_ok[k] & (u >= th)
                m.d.sync += c_fire[k].eq(f)
                if cfg.reset == "soft":
                    vn, vn_ovf = sat_sym(u - th, mem_max)
                    m.d.sync += [c_v[k].eq(Mux(f, vn, u)), c_sats[P + k].eq(f & vn_ovf)]
                else:
                    m.d.sync += c_v[k].eq(Mux(f, 0, u))
            else:
                m.d.sync += [c_v[k].eq(u), c_s[k].eq(b_third[k] + u)]
            m.d.sync += c_sats[k].eq(b_ovf[k])
        # stage D: write back (below), fire word into the FIFO, saturation count
        # saturation flags registered, then their count registered (the core adds it up)
        m.d.sync += ld_valid.eq(lc_valid)
        d_sats = Signal(2 * P)
        m.d.sync += d_sats.eq(Mux(lc_valid, c_sats, 0))
        sat_r = Signal.like(self.sat)
        m.d.sync += sat_r.eq(popcount(list(d_sats)))
        m.d.comb += self.sat.eq(sat_r)
        if self.spiking:
            m.d.comb += [ffifo.w_data.eq(Cat(c_fire, c_c)), ffifo.w_en.eq(lc_valid & (c_fire != 0))]
            transfer = self.o_spike.valid & self.o_spike.ready
            rest = Signal(P)
            m.d.comb += rest.eq(pend & (pend - 1))
            m.d.comb += [self.o_spike.valid.eq(pend != 0),
                         self.o_spike.p.post.eq(Cat(lowest_set(pend, P), pend_word))]
            with m.If(transfer):
                m.d.sync += pend.eq(rest)
            m.d.comb += ffifo.r_en.eq((pend == 0) | (transfer & (rest == 0)))
            with m.If(ffifo.r_en & ffifo.r_rdy):
                m.d.sync += [pend.eq(ffifo.r_data[:P]), pend_word.eq(ffifo.r_data[P:])]
            lif_drained = (ffifo.level == 0) & (pend == 0)
        else:
            lif_drained = Const(1)
        lif_done = ((l_rd_c == C) & ~l1_valid & ~la_valid & ~lb_valid & ~lc_valid & ~ld_valid
                    & (d_sats == 0) & lif_drained)

        # --- clear pass ---------------------------------------------------------------------
        clr_c = Signal(uidx(C))

        # --- memory writes: accumulation, LIF, clear ----------------------------------------
        with m.If(state == ACC):
            m.d.comb += [z_wr.addr.eq(s2_c), z_wr.data.eq(acc_word), z_wr.en.eq(s2_valid)]
        with m.Elif(state == LIF):
            m.d.comb += [z_wr.addr.eq(c_c), z_wr.data.eq(0), z_wr.en.eq(lc_valid),
                         v_wr.addr.eq(c_c), v_wr.data.eq(c_v), v_wr.en.eq(lc_valid),
                         u_wr.addr.eq(c_c), u_wr.data.eq(c_u), u_wr.en.eq(lc_valid),
                         ]
            if not self.spiking:
                m.d.comb += [s_wr.addr.eq(c_c), s_wr.data.eq(c_s), s_wr.en.eq(lc_valid)]
        with m.Else():
            for wp in (z_wr, v_wr) + (() if self.spiking else (s_wr,)):
                m.d.comb += [wp.addr.eq(clr_c), wp.data.eq(0), wp.en.eq(1)]

        # --- control -----------------------------------------------------------------------
        acc_idle = ~e_busy & ~s1_valid & ~s2_valid
        with m.Switch(state):
            with m.Case(ACC):
                with m.If(self.start & acc_idle):
                    m.d.sync += [state.eq(LIF), l_rd_c.eq(0)]
                with m.Elif(self.clear & acc_idle):
                    m.d.sync += [state.eq(CLR), clr_c.eq(0)]
            with m.Case(LIF):
                with m.If(lif_done):
                    m.d.sync += state.eq(ACC)
            with m.Case(CLR):
                m.d.sync += clr_c.eq(clr_c + 1)
                with m.If(clr_c == C - 1):
                    m.d.sync += state.eq(ACC)
        m.d.comb += self.busy.eq((state != ACC) | ~acc_idle)
        return m
