"""ErrorUnit: the error ``delta`` of one layer's neurons (golden twin: ``golden/error_unit.py``).

Output layer (``layer = n_layers - 1``), one neuron per cycle::

    delta[j] = sat(shr_round(u[j] - target_lsb * [j == label], err_shift))

Hidden layer ``l``, through the *old* weights of layer ``l + 1`` (``n_next`` posts, ``C'`` words
per row)::

    e[i]     = sum_c w[l+1][c, i] * delta[l+1][c]       (C' weight words, P lanes per cycle)
    sg[i]    = max(0, 2^surrogate_shift - |u[i] - theta[i]|)
    delta[i] = sat(shr_round(e[i] * sg[i], surrogate_shift))

Weight row ``i`` of layer ``l + 1`` is the words ``i*C' .. i*C'+C'-1``, so the unit simply reads
the weight memory linearly, one word per cycle (``n * C'`` cycles). Deltas leave as whole words
of ``P`` lanes on ``d_wr_*`` (the FlipUnit's delta-memory write port; padding lanes are 0) and,
for every layer but the first, into a local copy that the next ErrorUnit down reads through
``dl_addr``/``dl_data``. ``s_d = sum(delta^2)`` is T-BSO's ``S_d``.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import check_lanes, sat_sym, shr_round, uidx, words

__all__ = ["ErrorUnit"]


class ErrorUnit(wiring.Component):
    """Deltas of the neurons of weight layer ``layer`` (``n = layers[layer + 1]``).

    Parameters
    ----------
    cfg : golden.config.NetConfig
    layer : int
        Weight-layer index; the last one is the output layer (label error), the others hidden.
    lanes : int
        ``P`` (a power of two).

    Members
    -------
    start : In(1)
        Pulse: compute all ``n`` deltas.
    busy : Out(1)
        High from the cycle after ``start`` until the last delta word is written.
    label : In (output layer)
        Class label, stable while busy.
    x_addr : Out; x_u, x_theta : In
        Read of this layer's NeuronArray (``u``; ``theta`` for hidden layers), one cycle latency.
    w_addr : Out; w_data : In(P) (hidden layers)
        Weight memory of layer ``layer + 1`` (a
        :class:`~hdl_gen.banked_memory.BankedMemory`), two cycles latency.
    dn_addr : Out; dn_data : In(P * delta_bits) (hidden layers)
        Delta words of layer ``layer + 1`` (the ``dl_*`` port of its ErrorUnit).
    dl_addr : In; dl_data : Out(P * delta_bits) (layers > 0)
        Read of this layer's delta words, one cycle latency.
    d_wr_addr, d_wr_data, d_wr_en : Out
        Delta word writes (the FlipUnit's delta memory).
    s_d : Out
        ``sum(delta^2)`` of the last run.
    sat : Out(1)
        A delta was saturated in this cycle (golden counter ``delta``).
    """

    def __init__(self, cfg, layer: int, lanes: int):
        check_lanes(lanes)
        if not 0 <= layer < cfg.n_layers:
            raise ValueError(f"layer={layer} is invalid: allowed 0..{cfg.n_layers - 1}")
        self._cfg = cfg
        self._layer = layer
        self._lanes = P = lanes
        self.output = layer == cfg.n_layers - 1
        self.keep_copy = layer > 0
        self.n = n = cfg.layers[layer + 1]
        self.C = C = words(n, P)
        mb, db = cfg.membrane_bits, cfg.delta_bits
        mem_shape = data.ArrayLayout(signed(mb), P)
        self.s_d_width = 2 * db + max(1, n.bit_length())
        members = {
            "start": In(1),
            "busy": Out(1),
            "x_addr": Out(uidx(C)),
            "x_u": In(mem_shape),
            "d_wr_addr": Out(uidx(C)),
            "d_wr_data": Out(P * db),
            "d_wr_en": Out(1),
            "s_d": Out(unsigned(self.s_d_width)),
            "sat": Out(1),
        }
        if self.output:
            members["label"] = In(uidx(n))
        else:
            self.n_next = cfg.layers[layer + 2]
            self.C_next = words(self.n_next, P)
            members.update({
                "x_theta": In(mem_shape),
                "w_addr": Out(uidx(n * self.C_next)),
                "w_data": In(P),
                "dn_addr": Out(uidx(self.C_next)),
                "dn_data": In(P * db),
            })
        if self.keep_copy:
            members.update({"dl_addr": In(uidx(C)), "dl_data": Out(P * db)})
        super().__init__(members)

    def elaborate(self, platform):
        cfg, P, C, n = self._cfg, self._lanes, self.C, self.n
        d = cfg.derived()
        db = cfg.delta_bits
        lg = ceil_log2(P)
        m = Module()

        running = Signal()
        # --- back end: one delta per cycle into a word, S_d, counters ----------------------------
        b_valid = Signal()
        b_j = Signal(lg + ceil_log2(C) + 1)
        b_delta = Signal(signed(db))
        word = Signal(data.ArrayLayout(signed(db), P))
        lane = b_j[:lg]
        full = Signal(data.ArrayLayout(signed(db), P))
        m.d.comb += full.eq(word)
        for k in range(P):
            with m.If(lane == k):
                m.d.comb += full[k].eq(b_delta)
        flush = b_valid & ((lane == P - 1) | (b_j == n - 1))
        m.d.comb += [self.d_wr_addr.eq(b_j >> lg), self.d_wr_data.eq(full),
                     self.d_wr_en.eq(flush)]
        with m.If(flush):
            m.d.sync += word.eq(0)
        with m.Elif(b_valid):
            m.d.sync += word.eq(full)
        s_d = Signal.like(self.s_d)
        m.d.comb += self.s_d.eq(s_d)
        with m.If(self.start & ~running):
            m.d.sync += s_d.eq(0)
        with m.Elif(b_valid):
            m.d.sync += s_d.eq(s_d + b_delta * b_delta)
        if self.keep_copy:
            m.submodules.dl_mem = dl_mem = memory.Memory(shape=P * db, depth=C, init=[])
            dl_wr = dl_mem.write_port()
            dl_rd = dl_mem.read_port()
            m.d.comb += [dl_wr.addr.eq(self.d_wr_addr), dl_wr.data.eq(self.d_wr_data),
                         dl_wr.en.eq(self.d_wr_en),
                         dl_rd.addr.eq(self.dl_addr), self.dl_data.eq(dl_rd.data)]

        if self.output:
            self._output_front(m, d, lg, running, b_valid, b_j, b_delta)
        else:
            self._hidden_front(m, d, lg, running, b_valid, b_j, b_delta)
        return m

    # output layer: one neuron per cycle from the NeuronArray's u words
    def _output_front(self, m, d, lg, running, b_valid, b_j, b_delta):
        cfg, P, n = self._cfg, self._lanes, self.n
        j = Signal(range(n + 1))
        s1_valid = Signal()
        s1_j = Signal.like(b_j)
        issue = running & (j < n)
        m.d.comb += self.x_addr.eq(j >> lg)
        m.d.sync += [s1_valid.eq(issue), s1_j.eq(j)]
        with m.If(issue):
            m.d.sync += j.eq(j + 1)
        u = Signal(signed(cfg.membrane_bits))
        for k in range(P):
            with m.If(s1_j[:lg] == k):
                m.d.comb += u.eq(self.x_u[k])
        # the lane's u and target registered before the arithmetic (timing)
        s2_valid = Signal()
        s2_j = Signal.like(b_j)
        s2_diff = Signal(signed(cfg.membrane_bits + 1))
        m.d.sync += [s2_valid.eq(s1_valid), s2_j.eq(s1_j),
                     s2_diff.eq(u - Mux(s1_j == self.label, d.target, 0))]
        delta, ovf = sat_sym(shr_round(s2_diff, cfg.err_shift), d.delta_max)
        sat_r = Signal()                  # registered with the delta (the core counts it)
        m.d.sync += [b_valid.eq(s2_valid), b_j.eq(s2_j), b_delta.eq(delta),
                     sat_r.eq(s2_valid & ovf)]
        m.d.comb += self.sat.eq(sat_r)
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), j.eq(0)]
        with m.Elif(running & (j == n) & ~s1_valid & ~s2_valid & ~b_valid):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running)

    # hidden layer: e[i] over C' weight words, then the surrogate and the product
    def _hidden_front(self, m, d, lg, running, b_valid, b_j, b_delta):
        cfg, P, n = self._cfg, self._lanes, self.n
        Cn, nn = self.C_next, self.n_next
        db, mb, ss = cfg.delta_bits, cfg.membrane_bits, cfg.surrogate_shift
        # stage 0: linear walk over the weight words of layer l+1
        k_addr = Signal.like(self.w_addr)
        i = Signal(range(n + 1))
        c = Signal(uidx(Cn))
        issue = running & (i < n)
        m.d.comb += [self.w_addr.eq(k_addr), self.dn_addr.eq(c), self.x_addr.eq(i >> lg)]
        s1_valid = Signal()
        s1_i = Signal.like(b_j)
        s1_c = Signal.like(c)
        m.d.sync += [s1_valid.eq(issue), s1_i.eq(i), s1_c.eq(c)]
        with m.If(issue):
            m.d.sync += k_addr.eq(k_addr + 1)
            with m.If(c == Cn - 1):
                m.d.sync += [c.eq(0), i.eq(i + 1)]
            with m.Else():
                m.d.sync += c.eq(c + 1)
        # stage 1: the delta word and the lane's u and theta (one cycle of latency) registered
        # while the weight word is still on its way (two cycles of latency)
        u = Signal(signed(mb))
        th = Signal(signed(mb))
        for k in range(P):
            with m.If(s1_i[:lg] == k):
                m.d.comb += [u.eq(self.x_u[k]), th.eq(self.x_theta[k])]
        q_valid = Signal()
        q_i = Signal.like(b_j)
        q_c = Signal.like(c)
        q_dn = Signal.like(self.dn_data)
        q_u = Signal(signed(mb))
        q_th = Signal(signed(mb))
        m.d.sync += [q_valid.eq(s1_valid), q_i.eq(s1_i), q_c.eq(s1_c), q_dn.eq(self.dn_data),
                     q_u.eq(u), q_th.eq(th)]
        # stage Q: +-delta over the P lanes of one word (an adder tree, registered)
        last_lanes = nn - (Cn - 1) * P
        terms = []
        for k in range(P):
            dk = q_dn[k * db:(k + 1) * db].as_signed()
            t = Mux(self.w_data[k], dk, -dk)
            if k >= last_lanes:
                t = Mux(q_c == Cn - 1, 0, t)
            terms.append(t)
        while len(terms) > 1:
            terms = [terms[q] + terms[q + 1] if q + 1 < len(terms) else terms[q]
                     for q in range(0, len(terms), 2)]
        e_width = db + max(1, nn.bit_length()) + 1
        r_valid = Signal()
        r_i = Signal.like(b_j)
        r_c = Signal.like(c)
        r_sum = Signal(signed(e_width))
        r_u = Signal(signed(mb))
        r_th = Signal(signed(mb))
        m.d.sync += [r_valid.eq(q_valid), r_i.eq(q_i), r_c.eq(q_c), r_sum.eq(terms[0]),
                     r_u.eq(q_u), r_th.eq(q_th)]
        # stage 1b: e[i] accumulated over the row's C' words
        e_acc = Signal(signed(e_width))
        e_now = Signal(signed(e_width))
        m.d.comb += e_now.eq(Mux(r_c == 0, 0, e_acc) + r_sum)
        with m.If(r_valid):
            m.d.sync += e_acc.eq(e_now)
        s2_valid = Signal()
        s2_i = Signal.like(b_j)
        s2_e = Signal(signed(e_width))
        s2_diff = Signal(signed(mb + 1))
        m.d.sync += [s2_valid.eq(r_valid & (r_c == Cn - 1)), s2_i.eq(r_i), s2_e.eq(e_now),
                     s2_diff.eq(r_u - r_th)]
        # stage 2: triangle surrogate
        width = 1 << ss
        mag = Mux(s2_diff < 0, -s2_diff, s2_diff)
        s3_valid = Signal()
        s3_i = Signal.like(b_j)
        s3_e = Signal(signed(e_width))
        s3_sg = Signal(unsigned(ss + 1))
        m.d.sync += [s3_valid.eq(s2_valid), s3_i.eq(s2_i), s3_e.eq(s2_e),
                     s3_sg.eq(Mux(mag < width, width - mag, 0))]
        # stage 3: product (a hard multiplier with its output registered)
        s4_valid = Signal()
        s4_i = Signal.like(b_j)
        s4_prod = Signal(signed(e_width + ss + 2))
        m.d.sync += [s4_valid.eq(s3_valid), s4_i.eq(s3_i), s4_prod.eq(s3_e * s3_sg)]
        # stage 4: rounding, saturation; the saturation flag registered with the delta
        delta, ovf = sat_sym(shr_round(s4_prod, ss), d.delta_max)
        sat_r = Signal()
        m.d.sync += [b_valid.eq(s4_valid), b_j.eq(s4_i), b_delta.eq(delta),
                     sat_r.eq(s4_valid & ovf)]
        m.d.comb += self.sat.eq(sat_r)
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), i.eq(0), c.eq(0), k_addr.eq(0)]
        with m.Elif(running & (i == n) & ~s1_valid & ~q_valid & ~r_valid & ~s2_valid & ~s3_valid
                    & ~s4_valid & ~b_valid):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running)
