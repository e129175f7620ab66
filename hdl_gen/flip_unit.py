"""FlipUnit: momentum update, BSO / T-BSO flip decision and weight flip for one layer, P lanes wide.

The RTL twin of :func:`golden.flip_unit.flip_step` in int mode. One pass per layer and learning
step: the unit walks the active presynaptic rows (ascending ``pre``), and for each row every
chunk of ``P`` postsynaptic lanes, reading one weight word, one momentum word and one delta word
per cycle, and writing both back ``PIPE_STAGES + 1`` cycles later (deep, so that the ECP5 build
reaches 80 MHz; a pass never visits a word twice, so there is no read-after-write hazard). Flips
leave as a stream in golden order. The momentum memory is a :class:`BankedMemory` (banks with
registered outputs, read latency 2): a deep layer's momentum memory (N-MNIST layer 0: 36,992
words) otherwise puts a chip-wide multiplexer between the block RAMs and the first register. The
weight memory (the top's) answers with the same latency.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .banked_memory import BANK_WORDS, READ_LATENCY, BankedMemory, check_bank_words
from .common import lowest_set
from .srand import lane_constant, lane_select, srand_value

__all__ = ["FlipUnit", "RATE_SHIFT_BITS", "COUNTER_BITS", "PIPE_STAGES", "MOM_BANK_WORDS",
           "MOM_READ_LATENCY"]

#: Width of the ``rate_shift`` input: ``rate_shift`` may take the values 0..63.
RATE_SHIFT_BITS = 6
#: Width of the saturation and flip counters (they wrap modulo 2^32).
COUNTER_BITS = 32
#: Register stages between the memory read (s1) and the write-back: Q, A..F in ``elaborate``.
PIPE_STAGES = 7
#: Words per momentum bank (a power of two); a layer with more words gets several banks.
MOM_BANK_WORDS = BANK_WORDS
#: Cycles from ``mom_re`` (with ``mom_addr``) to ``mom_rdata`` / ``mom_rvalid``.
MOM_READ_LATENCY = READ_LATENCY


def _ubits(n_values: int) -> int:
    """Bits of an unsigned index into ``n_values`` entries (at least 1)."""
    return max(1, bits_for(max(0, n_values - 1)))


def _narrow_sshr(m: Module, x, amount, out_bits: int, *, name: str) -> Signal:
    """Add the low ``out_bits`` bits of ``x >> amount`` (``x`` signed, arithmetic) to ``m``.

    A logarithmic shifter, largest step first, that keeps after each step only the bits that can
    still reach the output: about ``out_bits * log2(range) + 2^(n-1)`` multiplexers instead of
    ``len(x) * n`` for a full-width shifter.
    """
    width = len(x)
    sign = x[width - 1]
    cur, cur_len = x, width                        # cur[p] for p >= width is the sign
    for j in reversed(range(len(amount))):
        step = 1 << j
        keep = min(width, out_bits + step - 1)     # remaining shift after this step < step
        nxt = Signal(keep, name=f"{name}_sh{j}")
        bits = []
        for i in range(keep):
            far = cur[i + step] if i + step < cur_len else sign
            bits.append(Mux(amount[j], far, cur[i]))
        m.d.comb += nxt.eq(Cat(*bits))
        cur, cur_len = nxt, keep
    out = Signal(out_bits, name=f"{name}_low")
    m.d.comb += out.eq(Cat(*(cur[i] if i < cur_len else sign for i in range(out_bits))))
    return out


class FlipUnit(wiring.Component):
    """Momentum update and flip of one weight layer, ``lanes`` synapses per cycle.

    Contract (``golden.flip_unit.flip_step`` in int mode, bit for bit): for each active row
    ``pre`` (trace ``a != 0``) and each post lane with ``delta != 0`` and ``post < n_post``::

        G  = delta * a
        k  = rate_shift + gs                       gs = cfg.grad_shift[layer]
        M' = sat(M + ((G - (M << gs) + rnd) >> k))  rnd = srand(synapse_address(layer, post, pre),
                                                           key, k), sat to +-mom_max, counted
        flip = w * M' > thr                        strict; w = +1 for bit 1, -1 for bit 0
        w <- -w, and M' <- 0 if cfg.do_reset_momentum, where flip

    Lanes with ``delta == 0`` and padding lanes (``post >= n_post``) keep their weight and momentum.

    Memory layout (word address ``i * C + c`` for pre ``i`` and chunk ``c``, ``C = ceil(n_post / P)``):
    weight word = ``P`` bits, bit ``k`` = weight of post ``c * P + k`` (1 = +1, 0 = -1); momentum word
    = ``P`` lanes of ``momentum_bits`` two's complement, lane ``k`` at bits ``[k*mb, (k+1)*mb)``.
    The delta memory holds ``C`` words of ``P`` lanes x ``delta_bits`` (same lane packing).
    The weight memory lives outside (the top owns it); momentum and delta memories live here.

    Pass protocol: a pass starts with the first ``i_pre`` transfer while idle; ``busy`` is high from
    the cycle after that transfer until ``done``; ``done`` is a one-cycle pulse after the item with
    ``last=1`` has been processed and every flip has left on ``o_flip``. ``key``, ``rate_shift``
    and ``thr`` must be stable from the first transfer until ``done``; the delta memory must not be
    written during a pass. The host momentum port and the delta write port are for idle time.

    Parameters
    ----------
    cfg : golden.config.NetConfig
        Network and fixed-point parameters.
    layer : int
        Weight layer, ``0 .. cfg.n_layers - 1``.
    lanes : int
        ``P``, synapses per word; a power of two from 1 to 1024.
    fifo_depth : int
        Flip words (words with at least one flip) buffered in front of the ``o_flip``
        serialiser; at least 3. A word is issued only while the FIFO level plus the words in the
        pipeline is below this depth, so one word per cycle needs ``PIPE_STAGES + 2`` (the
        default, plus one).
    flip_events : bool
        With ``False`` the unit never emits on ``o_flip`` (``valid`` stays low; the FIFO and the
        serialiser are left out): a flip-dense pass then still runs at one word per cycle, and
        only ``n_flip`` counts the flips. The weight and momentum results are the same.
    mom_bank_words : int
        Words per momentum bank, a power of two (default ``MOM_BANK_WORDS``); the banks' outputs
        are registered before the bank multiplexer, which keeps deep layers at the clock target.

    Members
    -------
    w_rd_addr : Out(addr_bits)
        Weight word address to read; the top returns ``w_rd_data`` two cycles later.
    w_rd_data : In(P)
        Weight word at the ``w_rd_addr`` of two cycles earlier (a :class:`BankedMemory`).
    w_wr_addr, w_wr_data, w_wr_en : Out(addr_bits), Out(P), Out(1)
        Weight word write (only words with at least one flip are written).
    d_wr_addr, d_wr_data, d_wr_en : In(chunk_bits), In(P * delta_bits), In(1)
        Delta memory write port (error unit), word ``c`` = deltas of posts ``c*P .. c*P+P-1``.
    i_pre : In(stream.Signature(pre_layout))
        Active presynaptic rows, ascending ``pre``: payload ``{pre, a, last}`` (LSB first).
        Items with ``a == 0`` are consumed and skipped; ``last`` ends the pass.
    key : In(32)
        Step key (``golden.fixed.step_key``).
    rate_shift : In(RATE_SHIFT_BITS)
        Momentum EMA rate shift, 0..63 (the schedule may raise it beyond the validated 24).
    thr : In(signed(momentum_bits + 1))
        Flip threshold: BSO ``gamma``, T-BSO the :class:`~hdl_gen.tbso_unit.TbsoUnit` threshold
        clamped to ``mom_max`` (equivalent, since ``|w*M| <= mom_max``).
    o_flip : Out(stream.Signature(flip_layout))
        Flip events ``{pre, post}`` (LSB first) in golden order: ascending pre, then post.
    busy, done : Out(1)
        Pass in progress; one-cycle pulse at the end of a pass.
    mom_addr, mom_wdata, mom_we, mom_re : In(addr_bits), In(P * momentum_bits), In(1), In(1)
        Host access to momentum words while not busy (ignored while busy).
    mom_rdata, mom_rvalid : Out(P * momentum_bits), Out(1)
        Read data, valid (``mom_rvalid`` high) ``MOM_READ_LATENCY`` (2) cycles after ``mom_re``;
        ``mom_rdata`` stays valid while ``mom_addr`` is held.
    n_sat, n_flip : Out(COUNTER_BITS)
        Momentum elements clipped by saturation (``IntArith.counters['momentum']``) and flips,
        since reset or ``cnt_clear``.
    cnt_clear : In(1)
        Zero both counters.
    """

    def __init__(self, cfg, layer: int, *, lanes: int = 8,
                 fifo_depth: int = PIPE_STAGES + 3,
                 flip_events: bool = True, mom_bank_words: int = MOM_BANK_WORDS):
        if not 0 <= layer < cfg.n_layers:
            raise ValueError(f"layer={layer} is invalid: allowed 0..{cfg.n_layers - 1}")
        if lanes < 1 or lanes & (lanes - 1) or lanes > 1024:
            raise ValueError(f"lanes={lanes} is invalid: allowed a power of two 1..1024")
        check_bank_words(mom_bank_words, "mom_bank_words")   # here, not at elaboration
        if fifo_depth < 3:
            raise ValueError(f"fifo_depth={fifo_depth} is invalid: allowed >= 3")
        self._cfg = cfg
        self._layer = layer
        self._lanes = lanes
        self._fifo_depth = fifo_depth
        self._flip_events = bool(flip_events)
        self._bank_words = mom_bank_words
        self._n_pre = cfg.layers[layer]
        self._n_post = cfg.layers[layer + 1]
        self._chunks = -(-self._n_post // lanes)
        self._depth = self._n_pre * self._chunks
        P, mb, db = lanes, cfg.momentum_bits, cfg.delta_bits
        ab = _ubits(self._depth)
        cb = _ubits(self._chunks)
        self._pre_layout = data.StructLayout({
            "pre": unsigned(_ubits(self._n_pre)),
            "a": unsigned(cfg.trace_bits),
            "last": unsigned(1),
        })
        self._flip_layout = data.StructLayout({
            "pre": unsigned(_ubits(self._n_pre)),
            "post": unsigned(_ubits(self._n_post)),
        })
        super().__init__({
            "w_rd_addr": Out(ab),
            "w_rd_data": In(P),
            "w_wr_addr": Out(ab),
            "w_wr_data": Out(P),
            "w_wr_en": Out(1),
            "d_wr_addr": In(cb),
            "d_wr_data": In(P * db),
            "d_wr_en": In(1),
            "i_pre": In(stream.Signature(self._pre_layout)),
            "key": In(32),
            "rate_shift": In(RATE_SHIFT_BITS),
            "thr": In(signed(mb + 1)),
            "o_flip": Out(stream.Signature(self._flip_layout)),
            "busy": Out(1),
            "done": Out(1),
            "mom_addr": In(ab),
            "mom_wdata": In(P * mb),
            "mom_we": In(1),
            "mom_re": In(1),
            "mom_rdata": Out(P * mb),
            "mom_rvalid": Out(1),
            "n_sat": Out(COUNTER_BITS),
            "n_flip": Out(COUNTER_BITS),
            "cnt_clear": In(1),
        })

    # --- parameters, for the top and the benches ------------------------------------------------
    @property
    def cfg(self):
        """The :class:`~golden.config.NetConfig`."""
        return self._cfg

    @property
    def layer(self) -> int:
        """Weight layer index."""
        return self._layer

    @property
    def lanes(self) -> int:
        """``P``, synapses per memory word."""
        return self._lanes

    @property
    def chunks(self) -> int:
        """``C = ceil(n_post / P)``, words per presynaptic row."""
        return self._chunks

    @property
    def depth(self) -> int:
        """Words of the weight and momentum memories, ``n_pre * C``."""
        return self._depth

    @property
    def pre_layout(self) -> data.StructLayout:
        """Payload layout of ``i_pre``."""
        return self._pre_layout

    @property
    def flip_layout(self) -> data.StructLayout:
        """Payload layout of ``o_flip``."""
        return self._flip_layout

    # --------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, layer = self._cfg, self._layer
        P, C = self._lanes, self._chunks
        mb, db, tb = cfg.momentum_bits, cfg.delta_bits, cfg.trace_bits
        gs = cfg.grad_shift[layer]
        mom_max = cfg.derived().mom_max
        lg = P.bit_length() - 1                      # log2(P): post = c * P + k is Cat(k, c)
        ab, cb = len(self.w_rd_addr), len(self.d_wr_addr)
        pre_w = _ubits(self._n_pre)
        n_valid_last = self._n_post - (C - 1) * P    # real lanes in the last chunk

        m.submodules.mom = mom = BankedMemory(P * mb, self._depth, bank_words=self._bank_words)
        m.submodules.dmem = dmem = Memory(shape=P * db, depth=C, init=[])
        d_rd, d_wr = dmem.read_port(), dmem.write_port()
        m.d.comb += [d_wr.addr.eq(self.d_wr_addr), d_wr.data.eq(self.d_wr_data),
                     d_wr.en.eq(self.d_wr_en)]

        events = self._flip_events
        if events:
            m.submodules.ffifo = ff = fifo.SyncFIFO(width=P + cb + pre_w,
                                                    depth=self._fifo_depth)

        running = Signal()        # a pass is in progress (= busy)
        ended = Signal()          # the last=1 item has been consumed
        # issue stage: the current row
        have_row = Signal()
        row_pre = Signal(pre_w)
        row_a = Signal(tb)
        row_c = Signal(cb)
        row_addr = Signal(ab)
        # stage 1: memory data valid, random numbers registered
        s1_valid = Signal()
        s1_pre = Signal(pre_w)
        s1_a = Signal(tb)
        s1_c = Signal(cb)
        s1_addr = Signal(ab)

        # ---- issue -------------------------------------------------------------------------------
        # Every word in the pipeline may carry flips, so a word is issued only when the FIFO has
        # room for all of them: this credit keeps the FIFO from overflowing under back-pressure.
        pipe_valids = []                              # filled in below, one per stage after issue
        # credits in use: words issued and not yet out of the pipeline, plus FIFO entries; a
        # counter (not a sum of the stage valids) so the issue path stays short
        inflight = Signal(range(self._fifo_depth + 1))
        if events:
            credit_ok = inflight < self._fifo_depth
        else:
            credit_ok = Const(1)
        issue = Signal()
        last_chunk = row_c == C - 1
        m.d.comb += issue.eq(have_row & credit_ok)
        pre_ready = Signal()
        m.d.comb += [
            pre_ready.eq(~ended & (~have_row | (issue & last_chunk))),
            self.i_pre.ready.eq(pre_ready),
            self.busy.eq(running),
            self.w_rd_addr.eq(row_addr),
            d_rd.addr.eq(row_c),
        ]
        with m.If(issue):
            m.d.sync += [row_c.eq(row_c + 1), row_addr.eq(row_addr + 1)]
            with m.If(last_chunk):
                m.d.sync += have_row.eq(0)
        p = self.i_pre.payload
        with m.If(self.i_pre.valid & pre_ready):
            m.d.sync += running.eq(1)
            with m.If(p.last):
                m.d.sync += ended.eq(1)
            with m.If(p.a != 0):
                m.d.sync += [have_row.eq(1), row_pre.eq(p.pre), row_a.eq(p.a), row_c.eq(0),
                             row_addr.eq(p.pre * C)]

        # Pass constants (rate_shift is stable during a pass): registered, so that the path from
        # the control registers does not add to the datapath stages.
        k_total = Signal(RATE_SHIFT_BITS + 1)
        m.d.sync += k_total.eq(self.rate_shift + gs)
        rnd_mask = Signal(32)
        m.d.sync += rnd_mask.eq(~(Const(0xFFFFFFFF, 32) << (self.rate_shift + gs))[:32])
        # one xorshift core per word: lane k's number is lane 0's XOR a constant (hdl_gen.srand)
        base = Signal(32)                            # synapse_address(layer, c * P, pre)
        m.d.comb += base.eq(row_pre | (Cat(Const(0, lg), row_c)[:14] << 14) | (layer << 28))
        r0 = srand_value(m, base, self.key)
        s1_rm = Signal(32)                           # R & mask
        s1_rn = Signal(32)                           # ~R & mask
        m.d.sync += [s1_valid.eq(issue), s1_pre.eq(row_pre), s1_a.eq(row_a), s1_c.eq(row_c),
                     s1_addr.eq(row_addr), s1_rm.eq(r0 & rnd_mask), s1_rn.eq(~r0 & rnd_mask)]

        # momentum and weight words: read in s1, registered next to their block RAMs (Q), bank
        # multiplexer into A
        m.d.comb += mom.r_addr.eq(Mux(running, row_addr, self.mom_addr))

        # ---- momentum update and flip decision: seven pipeline stages ----------------------------
        # u = floor((X + rnd) / 2^k) with X = G - (M << gs), exact but narrow:
        # |G| < 2^(db+tb-1) and |M << gs| < 2^(mb-1+gs), so X lies in [-2^W, 2^W). With
        # t = X + rnd[0:W] (W+2 bits) and rnd_hi = rnd >> W:
        #   k <= W: rnd < 2^k, so rnd_hi = 0 and u = t >> k (a narrow shifter on t);
        #   k >  W: u = floor(((t >> W) + rnd_hi) / 2^(k-W)) with t >> W in {-1, 0, 1}, so
        #           u = +1 if t >> W == 1 and rnd_hi has all its k-W bits set (k <= 32),
        #           u = -1 if t >> W == -1 and rnd_hi == 0, else u = 0.
        # The stages (one register each, so the ECP5 build closes timing at 80 MHz):
        #   Q  delta word registered; momentum and weight words in their banks' registers
        #   A  momentum and weight banks selected
        #   B  G = delta * a; the high random bits reduced to two flags per lane
        #   C  t = G - (M << gs) + rnd_low
        #   D  u from t (narrow shifter, range check)
        #   E  M' = sat(M + u)
        #   F  flip = w * M' > thr, new weight and momentum
        reset_m = cfg.do_reset_momentum
        W = max(db + tb - 1, mb - 1 + gs) + 1
        t_bits = W + 2
        k_small = Signal()                            # k <= W
        k_le_32 = Signal()
        t_mask = Signal(t_bits)                       # bits of t at positions >= k + mb
        m.d.sync += [
            k_small.eq(k_total <= W), k_le_32.eq(k_total <= 32),
            t_mask.eq((Const((1 << t_bits) - 1, t_bits) << (k_total + mb))[:t_bits]),
        ]
        k_amt = k_total[:max(1, W.bit_length())]      # the shift when k <= W
        lo_bits = min(W, 32)

        def stage(name, prev_valid, fields):
            """Register ``fields`` ({name: value}) and a valid bit; returns (valid, {name: reg})."""
            v = Signal(name=f"{name}_valid")
            m.d.sync += v.eq(prev_valid)
            regs = {}
            for fname, val in fields.items():
                r = Signal.like(val, name=f"{name}_{fname}") if isinstance(val, Signal) else \
                    Signal(len(val), name=f"{name}_{fname}")
                m.d.sync += r.eq(val)
                regs[fname] = r
            pipe_valids.append(v)
            return v, regs

        meta = dict(pre=s1_pre, c=s1_c, addr=s1_addr)
        # Q: delta word (the momentum and weight words wait in the BankedMemory registers)
        q_valid, Q = stage("sq", s1_valid, dict(meta, d=d_rd.data, a=s1_a, rm=s1_rm, rn=s1_rn))
        # A: momentum and weight words out of their bank multiplexers
        a_valid, A = stage("sa", q_valid, dict(pre=Q["pre"], c=Q["c"], addr=Q["addr"], d=Q["d"],
                                               mo=mom.r_data, w=self.w_rd_data, a=Q["a"],
                                               rm=Q["rm"], rn=Q["rn"]))
        # B: products, visits, random flags
        mask_hi = (A["rm"] | A["rn"])[W:32] if W < 32 else None   # = rnd_mask bits [W, 32)
        b_in = dict(pre=A["pre"], c=A["c"], addr=A["addr"], mo=A["mo"], w=A["w"])
        for k in range(P):
            d = A["d"][k * db:(k + 1) * db].as_signed()
            lane_ok = Const(1) if k < n_valid_last else (A["c"] != C - 1)
            rnd = lane_select(A["rm"], A["rn"], lane_constant(k))
            g = Signal(signed(db + tb), name=f"g{k}")
            m.d.comb += g.eq(d * A["a"])
            b_in[f"g{k}"] = g
            b_in[f"visit{k}"] = lane_ok & (d != 0)
            b_in[f"rlo{k}"] = rnd[:lo_bits]
            if mask_hi is not None:
                b_in[f"rup{k}"] = rnd[W:32] == mask_hi
                b_in[f"rdn{k}"] = rnd[W:32] == 0
        b_valid, B = stage("sb", a_valid, b_in)
        # C: t
        c_in = dict(pre=B["pre"], c=B["c"], addr=B["addr"], mo=B["mo"], w=B["w"])
        for k in range(P):
            mo = B["mo"][k * mb:(k + 1) * mb].as_signed()
            t = Signal(signed(t_bits), name=f"t{k}")
            m.d.comb += t.eq(B[f"g{k}"] - (mo << gs) + B[f"rlo{k}"])
            c_in[f"t{k}"] = t
            c_in[f"visit{k}"] = B[f"visit{k}"]
            if mask_hi is not None:
                c_in[f"rup{k}"] = B[f"rup{k}"]
                c_in[f"rdn{k}"] = B[f"rdn{k}"]
        c_valid, Cs = stage("sc", b_valid, c_in)
        # D: u
        d_in = dict(pre=Cs["pre"], c=Cs["c"], addr=Cs["addr"], mo=Cs["mo"], w=Cs["w"])
        for k in range(P):
            t = Cs[f"t{k}"]
            # small k: only u's low mb+1 bits and whether u fits signed(mb+1) are needed,
            # since M + u saturates the same way as M + 2^mb or M - 2^mb - 1 otherwise
            u_low = _narrow_sshr(m, t, k_amt, mb + 1, name=f"u{k}")
            sign = t[-1]
            fits = ~((t ^ sign.replicate(t_bits)) & t_mask).any()
            t_hi = t[W:]                              # t >> W: 2-bit signed, -1, 0 or +1
            if mask_hi is not None:
                up = (t_hi == 1) & k_le_32 & Cs[f"rup{k}"]
                down = (t_hi == 3) & Cs[f"rdn{k}"]
            else:
                up, down = Const(0), t_hi == 3
            u_c = Signal(signed(mb + 2), name=f"uc{k}")
            with m.If(k_small):
                m.d.comb += u_c.eq(Mux(fits, u_low.as_signed(),
                                       Mux(sign, -(1 << mb) - 1, 1 << mb)))
            with m.Else():
                m.d.comb += u_c.eq(Mux(up, 1, Mux(down, -1, 0)))
            d_in[f"u{k}"] = u_c
            d_in[f"visit{k}"] = Cs[f"visit{k}"]
        d_valid, D = stage("sd", c_valid, d_in)
        # E: M' = sat(M + u)
        e_in = dict(pre=D["pre"], c=D["c"], addr=D["addr"], mo=D["mo"], w=D["w"])
        for k in range(P):
            mo = D["mo"][k * mb:(k + 1) * mb].as_signed()
            mn = Signal(signed(mb + 3), name=f"mn{k}")
            m.d.comb += mn.eq(mo + D[f"u{k}"])
            hi, lo = Signal(name=f"sat_hi{k}"), Signal(name=f"sat_lo{k}")
            m.d.comb += [hi.eq(mn > mom_max), lo.eq(mn < -mom_max)]
            ms = Signal(signed(mb), name=f"ms{k}")
            m.d.comb += ms.eq(Mux(hi, mom_max, Mux(lo, -mom_max, mn)))
            e_in[f"ms{k}"] = ms
            e_in[f"sat{k}"] = D[f"visit{k}"] & (hi | lo)
            e_in[f"visit{k}"] = D[f"visit{k}"]
        e_valid, E = stage("se", d_valid, e_in)
        # F: flip = w * M' > thr, i.e. M' > thr for w = +1 and M' < -thr for w = -1 (no negation
        # in the path: -thr is a pass constant)
        thr_neg = Signal(signed(mb + 2))
        m.d.sync += thr_neg.eq(-self.thr)
        new_w, new_m, flips, sats, visits = [], [], [], [], []
        for k in range(P):
            mo = E["mo"][k * mb:(k + 1) * mb].as_signed()
            wb = E["w"][k]
            visit = E[f"visit{k}"]
            ms = E[f"ms{k}"]
            flip = Signal(name=f"flip{k}")
            m.d.comb += flip.eq(visit & Mux(wb, ms > self.thr, ms < thr_neg))
            mf = Mux(visit, Mux(flip, 0, ms) if reset_m else ms, mo)
            new_w.append(wb ^ flip)
            new_m.append(mf[:mb])
            flips.append(flip)
            sats.append(E[f"sat{k}"])
            visits.append(visit)
        s2_valid, S2 = stage("s2", e_valid, dict(
            pre=E["pre"], c=E["c"], addr=E["addr"], w=Cat(*new_w), m=Cat(*new_m),
            flip=Cat(*flips), sat=Cat(*sats), visit=Cat(*visits).any()))
        s2_pre, s2_c, s2_addr, s2_flip = S2["pre"], S2["c"], S2["addr"], S2["flip"]
        assert len(pipe_valids) == PIPE_STAGES

        # ---- write back, flips into the FIFO ---------------------------------------------------
        any_flip = s2_flip.any()
        m.d.comb += [
            self.w_wr_addr.eq(s2_addr), self.w_wr_data.eq(S2["w"]),
            self.w_wr_en.eq(s2_valid & any_flip),
            self.mom_rdata.eq(mom.r_data),
            mom.w_addr.eq(Mux(running, s2_addr, self.mom_addr)),
            mom.w_data.eq(Mux(running, S2["m"], self.mom_wdata)),
            mom.w_en.eq(Mux(running, s2_valid & S2["visit"], self.mom_we)),
        ]
        if events:
            m.d.comb += [ff.w_data.eq(Cat(s2_flip, s2_c, s2_pre)),
                         ff.w_en.eq(s2_valid & any_flip)]
        rvalid1 = Signal()
        m.d.sync += [rvalid1.eq(self.mom_re & ~running), self.mom_rvalid.eq(rvalid1)]

        # ---- counters: population counts registered before the 32-bit additions ----------------
        n_sat = Signal(COUNTER_BITS)
        n_flip = Signal(COUNTER_BITS)
        cnt_valid = Signal()
        cnt_sat = Signal(range(P + 1))
        cnt_flip = Signal(range(P + 1))
        m.d.sync += [cnt_valid.eq(s2_valid),
                     cnt_sat.eq(sum(S2["sat"][k] for k in range(P))),
                     cnt_flip.eq(sum(s2_flip[k] for k in range(P)))]
        m.d.comb += [self.n_sat.eq(n_sat), self.n_flip.eq(n_flip)]
        with m.If(self.cnt_clear):
            m.d.sync += [n_sat.eq(0), n_flip.eq(0)]
        with m.Elif(cnt_valid):
            m.d.sync += [n_sat.eq(n_sat + cnt_sat), n_flip.eq(n_flip + cnt_flip)]

        # ---- o_flip serialiser: lowest set lane first --------------------------------------------
        drained_events = Const(1)
        if events:
            ser_have = Signal()
            ser_mask = Signal(P)
            ser_pre = Signal(pre_w)
            ser_c = Signal(cb)
            idx = Signal(max(1, lg))
            m.d.comb += idx.eq(lowest_set(ser_mask, P))
            rest = Signal(P)
            m.d.comb += rest.eq(ser_mask & (ser_mask - 1))
            post = Cat(idx[:lg], ser_c) if lg else ser_c
            m.d.comb += [
                self.o_flip.valid.eq(ser_have),
                self.o_flip.payload.pre.eq(ser_pre),
                self.o_flip.payload.post.eq(post),
            ]
            sent = self.o_flip.valid & self.o_flip.ready
            with m.If(sent):
                m.d.sync += ser_mask.eq(rest)
            m.d.comb += ff.r_en.eq(~ser_have | (sent & (rest == 0)))
            # a credit returns when a word leaves s2 without flips or leaves the FIFO
            # (both can happen in the same cycle: two credits return)
            give_s2 = s2_valid & ~any_flip
            give_ff = ff.r_en & ff.r_rdy
            m.d.sync += inflight.eq(inflight + issue - give_s2 - give_ff)
            with m.If(ff.r_en):
                m.d.sync += ser_have.eq(ff.r_rdy)
                with m.If(ff.r_rdy):
                    m.d.sync += [ser_mask.eq(ff.r_data[:P]), ser_c.eq(ff.r_data[P:P + cb]),
                                 ser_pre.eq(ff.r_data[P + cb:])]
            drained_events = (ff.level == 0) & ~ser_have

        # ---- end of pass -------------------------------------------------------------------------
        drained = (ended & ~have_row & ~s1_valid & ~Cat(*pipe_valids).any() & ~cnt_valid
                   & drained_events)
        m.d.comb += self.done.eq(running & drained)
        with m.If(running & drained):
            m.d.sync += [running.eq(0), ended.eq(0)]
        return m
