"""Forward sequencer of the compact core: accumulation, LIF (and output error), traces.

Contract (golden ``Core.step_once`` steps 1 and 2, int mode, bit for bit), per weight layer
``l = 0 .. L-1`` from ``FWD_START``:

* ``ACC_IS`` / ``ACC_W``: every input ``i`` of the layer whose spike bit is set adds its synapse
  row to the accumulators, ``z[post] += w ? +1 : -1``, one word (``P`` posts) per cycle; a
  silent input costs one cycle. Cycles: ``N_l + S_l * C_l`` (``S_l`` spiking inputs).
* ``LIF_B`` .. ``LIF_D``: per post neuron ``j``, four cycles:
  ``u = sat(v - (v >> leak_shift) + z * 2^membrane_frac + bias)``; hidden layers fire at
  ``u >= theta`` (soft: ``v = sat(u - theta)``, hard: ``v = 0``), store the surrogate
  ``max(0, 2^ss - |u - theta|)`` for the hidden error, set the spike bit of input ``j`` of layer
  ``l+1`` and emit the spike (stalling on a full output register); the output layer keeps
  ``v = u``, adds ``u`` to the score (the running argmax is the prediction, lowest index on
  ties) and writes ``delta_out = sat(shr_round(u - target * [j == label], err_shift))``
  (its saturation is counted only with learning on, as golden computes it only then). ``z[j]``
  is cleared as it is read. Cycles: ``4 * N_{l+1}``.
* ``TR_B``: every layer's input trace ``a = sat(a - (a >> trace_shift) + s * 2^trace_frac)``,
  spike bit cleared, one node per cycle (``sum_{l<L} N_l``); T-BSO sums ``a^2`` per layer.

Then ``ERR_START`` (learning on) or ``DRAIN_STEP``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, signed

from ..common import sat_sym, shr_round
from .memmap import lay_sel

__all__ = ["setup", "add_states", "step_start"]


def setup(x) -> None:
    """Signals shared with the learning sequencer: the address sums (one adder each, whatever
    the number of states that use them) and T-BSO's per-layer sums of delta^2 and a^2 (inputs
    of the TbsoUnits)."""
    m, mp = x.m, x.map
    lay, i, j, c, row, lg = x.lay, x.i, x.j, x.c, x.row, mp.lg
    adr = {}

    def add(name, width, expr):
        s = Signal(width, name=f"adr_{name}")
        m.d.comb += s.eq(expr)
        adr[name] = s

    sb, tw = len(x.syn.addr), len(x.trs.raddr)
    cw, nw = len(x.z.raddr), len(x.nv.raddr)
    tbase = lay_sel(lay, mp.tbase[:-1] + [0])
    cbase = lay_sel(lay, mp.cbase[:-1] + [0])
    nbase = lay_sel(lay, mp.nbase[:-1] + [0])
    tnext = lay_sel(lay, mp.tbase[1:] + [0])
    add("rc", sb, row + c)
    add("rc1", sb, adr["rc"] + 1)
    add("ti", tw, tbase + i)
    add("ti1", tw, adr["ti"] + 1)
    add("cc", cw, cbase + c)
    add("cc1", cw, adr["cc"] + 1)
    add("cn", cw, lay_sel(lay + 1, mp.cbase + [0]) + c)
    add("cn1", cw, adr["cn"] + 1)
    add("nj", nw, nbase + j)
    add("nj1", nw, adr["nj"] + 1)
    add("cj", cw, cbase + (j >> lg))
    add("cj1", cw, cbase + ((j + 1) >> lg))
    add("tj", tw, tnext + j)
    add("tj1", tw, adr["tj"] + 1)
    x.adr = adr
    # c counts the words of a row up, cr (C - 1 - c) down: "last word" is a zero test on a
    # register, not a compare with a layer-selected constant
    x.cr = Signal.like(c, name="c_rest")
    x.c_last = Signal(name="c_last")
    m.d.comb += x.c_last.eq(x.cr == 0)
    x.c_reset = lambda C: [c.eq(0), x.cr.eq(C - 1)]
    x.c_step = lambda: [c.eq(c + 1), x.cr.eq(x.cr - 1)]
    if x.tbso:
        x.sd = [Signal(len(u.s_d), name=f"sd{l}") for l, u in enumerate(x.tb)]
        x.sa = [Signal(len(u.s_a), name=f"sa{l}") for l, u in enumerate(x.tb)]
    else:
        x.sd, x.sa = [], []


def step_start(x) -> None:
    """Sync statements when a STEP starts: per-step sums cleared."""
    for s in x.sd + x.sa:
        x.m.d.sync += s.eq(0)


def add_states(x) -> None:
    m, cfg, mp, P = x.m, x.cfg, x.map, x.P
    d = cfg.derived()
    L, N, lg, tb = cfg.n_layers, cfg.layers, mp.lg, mp.tb
    lay, i, j, c, row = x.lay, x.i, x.j, x.c, x.row
    C = lay_sel(lay, mp.C)
    n_pre = lay_sel(lay, N[:-1])
    n_post = lay_sel(lay, N[1:])
    tbase = lay_sel(lay, mp.tbase[:-1])
    tnext = lay_sel(lay, mp.tbase[1:] + [0])       # the next layer's inputs (hidden layers)
    nbase = lay_sel(lay, mp.nbase[:-1])
    cbase = lay_sel(lay, mp.cbase[:-1])
    sbase = lay_sel(lay, mp.sbase[:-1])
    last = lay == L - 1

    # --- accumulation ----------------------------------------------------------------------
    with m.State("FWD_START"):
        m.d.comb += x.trs.raddr.eq(tbase)
        m.d.sync += [i.eq(0), row.eq(sbase)] + x.c_reset(C)
        m.next = "ACC_IS"

    def next_row_or_lif():
        with m.If(i == n_pre - 1):
            m.d.sync += j.eq(0)
            m.next = "LIF_START"
        with m.Else():
            m.d.comb += x.trs.raddr.eq(x.adr["ti1"])
            m.d.sync += [i.eq(i + 1), row.eq(row + C)]
            m.next = "ACC_IS"

    with m.State("ACC_IS"):                 # trs word of input i
        with m.If(x.trs.rdata[tb]):
            m.d.comb += [x.syn.addr.eq(row), x.z.raddr.eq(cbase)]
            m.d.sync += x.c_reset(C)
            m.next = "ACC_W"
        with m.Else():
            next_row_or_lif()
    with m.State("ACC_W"):                  # synapse word c of row i and z word c
        zb = mp.zb
        lanes = []
        for k in range(P):
            zk = x.z.lane(k).as_signed()
            lanes.append((zk + Mux(x.syn.rdata[k], 1, -1))[:zb])
        x.z.write(m, x.adr["cc"], Cat(*lanes))
        with m.If(~x.c_last):
            m.d.comb += [x.syn.addr.eq(x.adr["rc1"]), x.z.raddr.eq(x.adr["cc1"])]
            m.d.sync += x.c_step()
        with m.Else():
            next_row_or_lif()

    # --- LIF ---------------------------------------------------------------------------------
    def lif_read(nxt):
        a = x.adr
        n, jv = (a["nj1"], j + 1) if nxt else (a["nj"], j)
        m.d.comb += [x.z.raddr.eq(a["cj1"] if nxt else a["cj"]), x.nv.raddr.eq(n),
                     x.nb.raddr.eq(n), x.trs.raddr.eq(a["tj1"] if nxt else a["tj"]),
                     x.score.raddr.eq(jv)]
        if x.nth is not None:
            m.d.comb += x.nth.raddr.eq(n)

    with m.State("LIF_START"):
        lif_read(False)
        m.next = "LIF_B"

    vb = mp.vb
    wide = signed(vb + mp.zb + cfg.membrane_frac + 3)
    a_r = Signal(wide, name="lif_leak")          # v - (v >> leak_shift)
    zb_r = Signal(wide, name="lif_zb")           # z * one_spike + bias
    u_r = Signal(signed(vb), name="lif_u")
    usat_r = Signal(name="lif_usat")
    th_r = Signal(signed(vb), name="lif_theta")
    tr_r = Signal(tb, name="lif_trace")
    sc_r = Signal(signed(mp.sw), name="lif_score")
    diff_r = Signal(signed(vb + 2), name="lif_diff")     # u - theta
    e0_r = Signal(signed(vb + 2), name="lif_err")        # shr_round(u - target, err_shift)
    lane = j[:lg] if lg else Const(0, 1)
    with m.State("LIF_B"):                  # memory words of neuron j
        zsel = x.z.rdata.word_select(lane, mp.zb).as_signed() if P > 1 else \
            x.z.rdata.as_signed()
        v = x.nv.rdata.as_signed()
        m.d.sync += [a_r.eq(v - (v >> cfg.leak_shift)),
                     zb_r.eq((zsel << cfg.membrane_frac) + x.nb.rdata.as_signed()),
                     tr_r.eq(x.trs.rdata[:tb]), sc_r.eq(x.score.rdata.as_signed())]
        if x.nth is not None:
            m.d.sync += th_r.eq(x.nth.rdata.as_signed())
        m.next = "LIF_U"
    with m.State("LIF_U"):
        u0 = Signal(wide, name="lif_u0")
        m.d.comb += u0.eq(a_r + zb_r)
        us, usat = sat_sym(u0, d.mem_max)
        m.d.sync += [u_r.eq(us), usat_r.eq(usat)]
        m.next = "LIF_C"
    with m.State("LIF_C"):
        tgt = Mux(j == x.label, d.target, 0)
        m.d.sync += [diff_r.eq(u_r - th_r), e0_r.eq(shr_round(u_r - tgt, cfg.err_shift)),
                     sc_r.eq(sc_r + u_r)]
        m.next = "LIF_D"

    with m.State("LIF_D"):
        lif_read(True)                       # next neuron's words (the writes below are j's)
        n = x.adr["nj"]
        done = Signal(name="lif_done")       # neuron j finished (not stalled)
        x.z.write_lane(m, x.adr["cj"], lane, Const(0, mp.zb))
        with m.If(last):
            m.d.comb += done.eq(1)
            x.nv.write(m, n, u_r)
            x.score.write(m, j, sc_r)
            best = Signal(signed(mp.sw), name="argmax_best")
            with m.If((j == 0) | (sc_r > best)):
                m.d.sync += [best.eq(sc_r), x.pred.eq(j)]
            dv, dsat = sat_sym(e0_r, d.delta_max)
            x.dl.write_lane(m, x.adr["cj"], lane, dv[:mp.db])
            m.d.comb += x.inc["sat_delta"].eq(dsat & x.learn)
            with m.If(dv != 0):
                m.d.sync += x.nzd.bit_select(lay, 1).eq(1)
            if x.tbso:
                with m.If(x.learn):
                    m.d.sync += x.sd[L - 1].eq(x.sd[L - 1] + dv * dv)
            m.d.comb += x.inc["sat_membrane"].eq(usat_r)
        with m.Else():
            s = ~diff_r[-1]                  # u >= theta
            if cfg.reset == "soft":
                vsoft, vsat = sat_sym(diff_r, d.mem_max)
                vn = Mux(s, vsoft, u_r)
                vsat = vsat & s
            else:
                vn, vsat = Mux(s, 0, u_r), Const(0)
            one = 1 << cfg.surrogate_shift
            sg0 = Signal(signed(vb + 3), name="lif_sg0")     # 2^ss - |u - theta|
            m.d.comb += sg0.eq(Mux(s, one - diff_r, one + diff_r))
            sg = Mux(sg0[-1], 0, sg0)
            stall = s & x.spikes_on & ~x.sp.ok
            with m.If(~stall):
                m.d.comb += done.eq(1)
                x.nv.write(m, n, vn)
                if x.nsg is not None:
                    x.nsg.write(m, n, sg[:mp.sgb])
                with m.If(s):
                    x.trs.write(m, x.adr["tj"], Cat(tr_r, Const(1, 1)))
                m.d.comb += [x.inc["spikes"].eq(s), x.inc["sat_membrane"].eq(usat_r + vsat),
                             x.sp.push.eq(s & x.spikes_on), x.sp.rec.t.eq(x.t),
                             x.sp.rec.layer.eq(lay), x.sp.rec.neuron.eq(j)]
        with m.If(~done):
            m.d.comb += x.z.we.eq(0)         # stalled: nothing written
        with m.If(done):
            with m.If(j == n_post - 1):
                with m.If(last):
                    m.next = "TR_START"
                with m.Else():
                    m.d.sync += lay.eq(lay + 1)
                    m.next = "FWD_START"
            with m.Else():
                m.d.sync += j.eq(j + 1)
                m.next = "LIF_B"

    # --- traces --------------------------------------------------------------------------------
    with m.State("TR_START"):
        m.d.comb += x.trs.raddr.eq(0)
        m.d.sync += [i.eq(0), lay.eq(0)]
        m.next = "TR_B"
    with m.State("TR_B"):                   # trs word of node i (input of layer lay)
        a = x.trs.rdata[:tb]
        s = x.trs.rdata[tb]
        a0 = Signal(tb + 2, name="trace_new")
        m.d.comb += a0.eq(a - (a >> cfg.trace_shift) + Mux(s, d.trace_one, 0))
        over = a0 > d.trace_max
        an = Mux(over, d.trace_max, a0)[:tb]
        x.trs.write(m, i, an)
        m.d.comb += x.inc["sat_trace"].eq(over)
        if x.tbso:
            for l in range(L):
                with m.If(lay == l):
                    m.d.sync += x.sa[l].eq(x.sa[l] + an * an)
        with m.If(i == lay_sel(lay, mp.tbase[1:]) - 1):
            m.d.sync += lay.eq(lay + 1)
        with m.If(i == mp.trs_depth - 1):
            with m.If(x.learn):
                m.next = "ERR_START"
            with m.Else():
                m.next = "DRAIN_STEP"
        with m.Else():
            m.d.comb += x.trs.raddr.eq(i + 1)
            m.d.sync += i.eq(i + 1)
