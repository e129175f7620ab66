"""Learning sequencer of the compact core: hidden errors, T-BSO thresholds, momenta and flips.

Contract (golden ``Core.step_once`` steps 3 and 4, int mode, bit for bit), from ``ERR_START``
with learning on (the output error was written by the output layer's LIF pass):

* ``ER_*``: hidden layers ``l = L-2 .. 0``, per neuron ``j``: ``e = sum_c w[l+1][c, j] *
  delta[l+1][c]`` over row ``j`` of layer ``l+1`` (the old weights), ``P`` terms per cycle,
  then ``delta = sat(shr_round(e * sg[j], surrogate_shift))``. Cycles per neuron
  ``C_{l+1} + 3``.
* ``TB_*`` (T-BSO): all layers' :class:`~hdl_gen.tbso_unit.TbsoUnit` updates at once, from the
  per-layer sums of ``delta^2`` and ``a^2``.
* ``FL_*``: per layer ``l = 0 .. L-1`` whose deltas are not all zero, threshold ``thr``
  (BSO ``min(gamma[l], mom_max)``, T-BSO the unit's), per input ``i`` with trace ``a != 0``
  and per word ``c`` of its row: for the lanes with ``delta != 0`` (and ``post < n_post``)
  ``M = sat(M + ((delta * a - (M << gs) + rnd) >> (rate_shift + gs)))`` with ``rnd =
  srand(synapse_address(l, post, i), key) & mask``, flip where ``w * M > thr``, ``M = 0`` on a
  flip if ``reset_momentum``; the word is written back and the flips leave on ``o_flip`` in
  ascending post order. The arithmetic is one lane, visiting only the lanes with a non-zero
  delta. Cycles: one per silent input; per word of an active row 2, plus 7 per visited
  synapse and 2 more when any lane was visited, plus one per emitted flip.

The learning-step counter and the key advance once every layer is done; then ``DRAIN_STEP``.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Mux, Signal, signed

from golden.fixed import GOLDEN32

from ..common import lowest_set, sat_sym, shr_round
from ..flip_unit import _narrow_sshr
from ..srand import lane_constant, srand_value
from .memmap import lay_sel, pick

__all__ = ["add_states", "ERR_STATES", "LEARN_STATES"]

ERR_STATES = ("ERR_START", "ER_ROW", "ER_S", "ER_L", "ER_M", "ER_D")
LEARN_STATES = ("LEARN_START", "TB_WAIT", "FL_LAYER", "FL_MASK", "FL_I", "FL_IS", "FL_0",
                "FL_1", "FL_PICK", "FL_G", "FL_X", "FL_S", "FL_U", "FL_M", "FL_F", "FL_W",
                "FL_E", "FL_NEXT")


def _errors(x):
    m, cfg, mp, P = x.m, x.cfg, x.map, x.P
    d = cfg.derived()
    L, N, lg = cfg.n_layers, cfg.layers, mp.lg
    lay, j, c, row = x.lay, x.j, x.c, x.row
    nxt = lay + 1
    Cn = lay_sel(nxt, mp.C + [1])
    cb_n = lay_sel(nxt, mp.cbase)
    e_bits = mp.db + max(N).bit_length() + 2
    e = Signal(signed(e_bits), name="err_e")
    prod = Signal(signed(e_bits + mp.sgb + 1), name="err_prod")

    with m.State("ERR_START"):
        m.d.sync += [j.eq(0), c.eq(0), e.eq(0)]
        if L > 1:
            m.d.sync += [lay.eq(L - 2), row.eq(mp.sbase[L - 1])]
            m.next = "ER_ROW"
        else:
            m.next = "LEARN_START"
    if L == 1:
        return
    terms_r = [Signal(signed(mp.db + 1), name=f"err_t{k}") for k in range(P)]
    tsum = Signal(signed(mp.db + 1 + max(1, lg)), name="err_tsum")
    m.d.comb += tsum.eq(sum(terms_r))
    with m.State("ER_ROW"):
        m.d.comb += [x.syn.addr.eq(row), x.dl.raddr.eq(cb_n)]
        m.d.sync += x.c_reset(Cn) + [t.eq(0) for t in terms_r]
        m.next = "ER_S"
    with m.State("ER_S"):                   # synapse word c of row j (layer l+1), delta word c
        nvl = lay_sel(nxt, mp.last_lanes + [P])
        for k in range(P):
            dk = x.dl.lane(k).as_signed()
            ok = ~x.c_last | (k < nvl)
            m.d.sync += terms_r[k].eq(Mux(ok, Mux(x.syn.rdata[k], dk, -dk), 0))
        m.d.sync += e.eq(e + tsum)          # the previous word's terms (0 at the row start)
        with m.If(~x.c_last):
            m.d.comb += [x.syn.addr.eq(x.adr["rc1"]), x.dl.raddr.eq(x.adr["cn1"])]
            m.d.sync += x.c_step()
        with m.Else():
            m.next = "ER_L"
    with m.State("ER_L"):                   # the last word's terms
        m.d.comb += x.nsg.raddr.eq(x.adr["nj"])
        m.d.sync += e.eq(e + tsum)
        m.next = "ER_M"
    with m.State("ER_M"):
        m.d.sync += prod.eq(e * x.nsg.rdata)
        m.next = "ER_D"
    with m.State("ER_D"):
        dv, dsat = sat_sym(shr_round(prod, cfg.surrogate_shift), d.delta_max)
        lane = j[:lg] if lg else Const(0, 1)
        x.dl.write_lane(m, x.adr["cj"], lane, dv[:mp.db])
        m.d.comb += x.inc["sat_delta"].eq(dsat)
        with m.If(dv != 0):
            m.d.sync += x.nzd.bit_select(lay, 1).eq(1)
        if x.tbso:
            for l in range(L - 1):
                with m.If(lay == l):
                    m.d.sync += x.sd[l].eq(x.sd[l] + dv * dv)
        m.d.sync += e.eq(0)
        with m.If(j == lay_sel(lay, N[1:]) - 1):
            with m.If(lay == 0):
                m.next = "LEARN_START"
            with m.Else():
                m.d.sync += [lay.eq(lay - 1), j.eq(0), row.eq(lay_sel(lay, mp.sbase))]
                m.next = "ER_ROW"
        with m.Else():
            m.d.sync += [j.eq(j + 1), row.eq(row + Cn)]
            m.next = "ER_ROW"


def _flips(x):
    m, cfg, mp, P = x.m, x.cfg, x.map, x.P
    d = cfg.derived()
    L, N, lg, tb, mb, db = cfg.n_layers, cfg.layers, mp.lg, mp.tb, mp.mb, mp.db
    lay, i, c, row = x.lay, x.i, x.c, x.row
    C = lay_sel(lay, mp.C)
    tbase = lay_sel(lay, mp.tbase[:-1])
    cbase = lay_sel(lay, mp.cbase[:-1])
    nvl = lay_sel(lay, mp.last_lanes)
    gs_max = max(cfg.grad_shift)
    W = max(db + tb - 1, mb - 1 + gs_max) + 1          # |G - (M << gs)| < 2^W
    SW = max(W, 32) + 3
    thr = Signal(signed(mb + 2), name="fl_thr")
    k_r = Signal(7, name="fl_k")
    mask_r = Signal(32, name="fl_mask")
    tmask_r = Signal(SW, name="fl_tmask")
    a_r = Signal(tb, name="fl_a")
    w_r = Signal(P, name="fl_w")                       # the word's weights, updated per lane
    mo_r = Signal(P * mb, name="fl_mo")                # the word's momenta, updated per lane
    d_r = Signal(P * db, name="fl_d")
    vis_r = Signal(P, name="fl_visit")                 # lanes still to visit
    fmask = Signal(P, name="fl_fmask")                 # lanes that flipped
    rm_r = Signal(32, name="fl_rm")                    # srand of lane 0, masked
    kl = Signal(max(1, lg), name="fl_lane")            # the lane being updated
    g_r = Signal(signed(db + tb + 1), name="fl_g")
    ms_r = Signal(signed(mb + gs_max + 1), name="fl_ms")
    rnd_r = Signal(32, name="fl_rnd")
    x_r = Signal(signed(W + 1), name="fl_x")
    s_r = Signal(signed(SW), name="fl_s")
    u_r = Signal(signed(mb + 2), name="fl_u")
    mn_r = Signal(signed(mb), name="fl_mn")
    msat_r = Signal(name="fl_msat")

    with m.State("LEARN_START"):
        if x.tbso:
            for l, u in enumerate(x.tb):
                m.d.comb += [u.start.eq(1), u.t.eq(x.t), u.s_d.eq(x.sd[l]), u.s_a.eq(x.sa[l]),
                             u.gamma_q.eq(x.gamma_q)]
            m.next = "TB_WAIT"
        else:
            m.next = "FL_LAYER"
        m.d.sync += lay.eq(0)
    with m.State("TB_WAIT"):
        with m.If(~Cat(*[u.busy for u in x.tb]).any() if x.tb else 1):
            m.next = "FL_LAYER"
    with m.State("FL_LAYER"):
        with m.If(lay == L):
            m.d.sync += [x.step.eq(x.step + 1), x.key.eq(x.key + GOLDEN32)]
            m.next = "DRAIN_STEP"
        with m.Elif(~x.nzd.bit_select(lay, 1)):
            m.d.sync += lay.eq(lay + 1)     # no delta: no synapse is visited
        with m.Else():
            if x.tbso:
                m.d.sync += thr.eq(pick(lay, [u.thr_flip for u in x.tb]))
            else:
                g = pick(lay, x.gamma)
                m.d.sync += thr.eq(Mux(g > d.mom_max, d.mom_max, g))
            m.d.sync += [k_r.eq(x.rate_shift + lay_sel(lay, cfg.grad_shift)),
                         i.eq(0), c.eq(0), row.eq(lay_sel(lay, mp.sbase[:-1]))]
            m.next = "FL_MASK"
    with m.State("FL_MASK"):                # the layer's rounding masks, from k = rate + gs
        m.d.sync += [mask_r.eq(Mux(k_r >= 32, 0xFFFFFFFF, ~(Const(0xFFFFFFFF, 32) << k_r)[:32])),
                     tmask_r.eq((Const((1 << SW) - 1, SW) << (k_r + mb + 1))[:SW])]
        m.next = "FL_I"
    with m.State("FL_I"):
        m.d.comb += x.trs.raddr.eq(x.adr["ti"])
        m.next = "FL_IS"
    with m.State("FL_IS"):                  # trs word of input i
        a = x.trs.rdata[:tb]
        with m.If(a != 0):
            m.d.sync += [a_r.eq(a)] + x.c_reset(C)
            m.next = "FL_0"
        with m.Elif(i == lay_sel(lay, N[:-1]) - 1):
            m.next = "FL_NEXT"
        with m.Else():
            m.d.comb += x.trs.raddr.eq(x.adr["ti1"])
            m.d.sync += [i.eq(i + 1), row.eq(row + C)]
    syn_a = x.adr["rc"]
    mo_k = mo_r.word_select(kl, mb).as_signed() if P > 1 else mo_r.as_signed()
    d_k = d_r.word_select(kl, db).as_signed() if P > 1 else d_r.as_signed()
    w_k = w_r.bit_select(kl, 1) if P > 1 else w_r[0]
    # lane k's random number: (R ^ K_k) & mask = (R & mask) ^ (K_k & mask) (hdl_gen.srand)
    K = Array([Const(lane_constant(k), 32) for k in range(P)])
    with m.State("FL_0"):
        m.d.comb += [x.syn.addr.eq(syn_a), x.dl.raddr.eq(x.adr["cc"])]
        m.next = "FL_1"
    with m.State("FL_1"):                   # words in; the word's random number
        m.d.comb += x.syn.addr.eq(syn_a)
        base = Signal(32, name="fl_base")
        m.d.comb += base.eq(i[:14] | (Cat(Const(0, lg), c)[:14] << 14) | (lay << 28))
        r0 = srand_value(m, base, x.key, name="fl_srand")
        vis = []
        for k in range(P):
            dk = x.dl.lane(k)
            vis.append((dk != 0) & (~x.c_last | (k < nvl)))
        m.d.sync += [rm_r.eq(r0 & mask_r), w_r.eq(x.syn.rdata[:P]), mo_r.eq(x.syn.rdata[P:]),
                     d_r.eq(x.dl.rdata), vis_r.eq(Cat(*vis)), fmask.eq(0)]
        with m.If(Cat(*vis).any()):
            m.next = "FL_PICK"
        with m.Else():
            _next_word(x, C)
    with m.State("FL_PICK"):                # the lowest lane still to visit
        m.d.comb += x.syn.addr.eq(syn_a)
        if P > 1:
            m.d.sync += kl.eq(lowest_set(vis_r, P))
        m.next = "FL_G"
    with m.State("FL_G"):                   # G = delta * a, M << gs, rnd
        m.d.comb += x.syn.addr.eq(syn_a)
        m.d.sync += [g_r.eq(d_k * a_r), ms_r.eq(pick(lay, [mo_k << g for g in cfg.grad_shift])),
                     rnd_r.eq(rm_r ^ (K[kl] & mask_r) if P > 1 else rm_r ^ (K[0] & mask_r))]
        m.next = "FL_X"
    with m.State("FL_X"):
        m.d.comb += x.syn.addr.eq(syn_a)
        m.d.sync += x_r.eq(g_r - ms_r)
        m.next = "FL_S"
    with m.State("FL_S"):
        m.d.comb += x.syn.addr.eq(syn_a)
        m.d.sync += s_r.eq(x_r + rnd_r)
        m.next = "FL_U"
    with m.State("FL_U"):                   # u = s >> k, clamped to what saturates alike
        m.d.comb += x.syn.addr.eq(syn_a)
        low = _narrow_sshr(m, s_r, k_r, mb + 2, name="fl_sh")
        sign = s_r[-1]
        fits = ~((s_r ^ sign.replicate(SW)) & tmask_r).any()
        m.d.sync += u_r.eq(Mux(fits, low.as_signed(), Mux(sign, -(1 << mb) - 1, 1 << mb)))
        m.next = "FL_M"
    with m.State("FL_M"):                   # M' = sat(M + u)
        m.d.comb += x.syn.addr.eq(syn_a)
        mn, sat = sat_sym(mo_k + u_r, d.mom_max)
        m.d.sync += [mn_r.eq(mn), msat_r.eq(sat)]
        m.next = "FL_F"
    with m.State("FL_F"):                   # flip = w * M' > thr; the lane's new w and M
        m.d.comb += x.syn.addr.eq(syn_a)
        flip = Mux(w_k, mn_r > thr, mn_r < -thr)
        keep = Mux(flip, 0, mn_r) if cfg.do_reset_momentum else mn_r
        rest = vis_r & ~(Const(1, P) << kl) if P > 1 else Const(0, 1)
        if P > 1:
            m.d.sync += [mo_r.word_select(kl, mb).eq(keep), w_r.bit_select(kl, 1).eq(w_k ^ flip),
                         fmask.bit_select(kl, 1).eq(flip)]
        else:
            m.d.sync += [mo_r.eq(keep), w_r.eq(w_k ^ flip), fmask.eq(flip)]
        m.d.sync += vis_r.eq(rest)
        m.d.comb += [x.inc["flips"].eq(flip), x.inc["sat_momentum"].eq(msat_r)]
        with m.If(rest.any()):
            m.next = "FL_PICK"
        with m.Else():
            m.next = "FL_W"
    with m.State("FL_W"):                   # write the word back
        m.d.comb += [x.syn.addr.eq(x.syn.addr_q), x.syn.wdata.eq(Cat(w_r, mo_r)),
                     x.syn.we.eq(1)]
        m.next = "FL_E"
    with m.State("FL_E"):                   # flips of the word, ascending post
        k = lowest_set(fmask, P) if P > 1 else Const(0, 1)
        frest = fmask & (fmask - 1)
        with m.If(x.flips_on & fmask.any()):
            m.d.comb += [x.fl.push.eq(1), x.fl.rec.t.eq(x.t), x.fl.rec.layer.eq(lay),
                         x.fl.rec.pre.eq(i), x.fl.rec.post.eq((c << lg) | k if lg else c)]
            with m.If(x.fl.ok):
                m.d.sync += fmask.eq(frest)
        with m.Else():
            _next_word(x, C)
    with m.State("FL_NEXT"):
        m.d.sync += lay.eq(lay + 1)
        m.next = "FL_LAYER"



def _next_word(x, C):
    m, i, c, row = x.m, x.i, x.c, x.row
    with m.If(~x.c_last):
        m.d.sync += x.c_step()
        m.next = "FL_0"
    with m.Elif(i == lay_sel(x.lay, x.cfg.layers[:-1]) - 1):
        m.next = "FL_NEXT"
    with m.Else():
        m.d.sync += [c.eq(0), i.eq(i + 1), row.eq(row + C)]
        m.next = "FL_I"


def add_states(x) -> None:
    _errors(x)
    _flips(x)
