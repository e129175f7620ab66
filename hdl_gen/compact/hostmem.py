"""Host memory access of the compact core: the ``i_mem`` / ``o_mem`` port while idle.

Contract: the memory spaces of :class:`hdl_gen.core.MemSpace` and registers of
:class:`hdl_gen.core.Reg`, with :class:`hdl_gen.core.Core`'s semantics: an invalid request
(space, layer or address out of range, a write to a read-only space) counts in ``bad_cmd``, a
write is then ignored and a read answers 0; every read answers exactly once on ``o_mem``
(signed spaces sign-extended). Synapse spaces (``(pre << 14) | post``) and ``WEIGHT_WORD``
read-modify-write the synapse word, so a weight write keeps the momenta and vice versa. A
write of ``Reg.STEP`` also sets ``KEY = seed + STEP * GOLDEN32`` (one multiplier bit per cycle).

States: ``MEM_A0`` (addresses registered) -> ``MEM_A`` (addresses presented, plain writes) ->
``MEM_B`` (read data; synapse writes) -> ``MEM_C`` (answer); ``MEM_KEY``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal

from golden.fixed import GOLDEN32

from ..common import NEURON_BITS
from ..core import MemSpace, Reg, data_width
from .memmap import lay_sel, pick

__all__ = ["add_states"]


def add_states(x) -> None:
    m, cfg, mp, P = x.m, x.cfg, x.map, x.P
    L, N, lg, mb = cfg.n_layers, cfg.layers, mp.lg, mp.mb
    DW = data_width(cfg, P)
    mq = x.mq
    pre = mq.addr[NEURON_BITS:2 * NEURON_BITS]
    post = mq.addr[:NEURON_BITS]
    idx = mq.addr
    sp = MemSpace

    def is_(space):
        return mq.mem == space

    ok_terms = []
    for l in range(L):
        here = mq.layer == l
        syn = (pre < N[l]) & (post < N[l + 1])
        ok_terms += [
            here & (is_(sp.WEIGHT) | is_(sp.MOMENTUM)) & syn,
            here & is_(sp.WEIGHT_WORD) & (idx < N[l] * mp.C[l]),
            here & is_(sp.V) & (idx < cfg.T),
            here & is_(sp.BIAS) & (idx < N[l + 1]),
            here & is_(sp.MEMBRANE) & (idx < N[l + 1]) & ~mq.write,
            here & is_(sp.TRACE) & (idx < N[l]) & ~mq.write,
        ]
        if l < L - 1:
            ok_terms.append(here & is_(sp.THETA) & (idx < N[l + 1]))
    reg_ok = (idx < int(Reg.GAMMA) + L) | (idx == int(Reg.KEY))
    ok_terms += [is_(sp.REG) & reg_ok, is_(sp.SCORE) & (idx < N[-1]) & ~mq.write]
    ok = Signal(name="mq_ok")                # registered in MEM_A0

    ly = mq.layer
    lane = post[:lg] if lg else Const(0, 1)
    # addresses, registered in MEM_A0 (the multiply by C and the bases stay off the memories'
    # address paths)
    syn_addr = Signal(len(x.syn.addr), name="mq_syn_addr")
    n_addr = Signal(len(x.nv.raddr), name="mq_n_addr")
    t_addr = Signal(len(x.trs.raddr), name="mq_t_addr")
    word = pick(ly, [pre * mp.C[l] + (post >> lg) for l in range(L)])
    with m.State("MEM_A0"):
        m.d.sync += [syn_addr.eq(lay_sel(ly, mp.sbase[:-1]) + Mux(is_(sp.WEIGHT_WORD), idx, word)),
                     n_addr.eq(lay_sel(ly, mp.nbase[:-1]) + idx),
                     t_addr.eq(lay_sel(ly, mp.tbase[:-1]) + idx), ok.eq(Cat(*ok_terms).any())]
        m.next = "MEM_A"
    resp = Signal(DW, name="mq_resp")
    key_bit = Signal(range(33))
    key_add = Signal(32, name="key_add")     # GOLDEN32 << key_bit
    key_mul = Signal(32, name="key_mul")     # STEP >> key_bit

    def clamp(v, reg):
        top = (1 << len(reg)) - 1
        return Mux(v > top, top, v)

    def sx(v):
        return v.as_signed()

    def present():
        m.d.comb += [x.syn.addr.eq(syn_addr), x.trs.raddr.eq(t_addr),
                     x.nv.raddr.eq(n_addr), x.nb.raddr.eq(n_addr), x.score.raddr.eq(idx)]
        if x.nth is not None:
            m.d.comb += x.nth.raddr.eq(n_addr)

    with m.State("MEM_A"):
        present()
        w = mq.write & ok
        with m.If(w & is_(sp.BIAS)):
            x.nb.write(m, n_addr, mq.data)
        if x.nth is not None:
            with m.If(w & is_(sp.THETA)):
                x.nth.write(m, n_addr, mq.data)
        for l, u in enumerate(x.tb):
            here = ly == l
            m.d.comb += [u.v_addr.eq(idx), u.v_wdata.eq(mq.data),
                         u.v_re.eq(here & is_(sp.V)), u.v_we.eq(w & here & is_(sp.V))]
        with m.If(w & is_(sp.REG)):
            with m.Switch(idx):
                with m.Case(int(Reg.STEP)):
                    m.d.sync += [x.step.eq(mq.data), x.key.eq(cfg.seed & 0xFFFFFFFF),
                                 key_bit.eq(0), key_add.eq(GOLDEN32), key_mul.eq(mq.data)]
                # schedule registers saturate at their widths (golden.config.SCHEDULE_LIMITS)
                with m.Case(int(Reg.RATE_SHIFT)):
                    m.d.sync += x.rate_shift.eq(clamp(mq.data, x.rate_shift))
                with m.Case(int(Reg.TBSO_GAMMA_Q)):
                    m.d.sync += x.gamma_q.eq(clamp(mq.data, x.gamma_q))
                with m.Case(int(Reg.KEY)):
                    m.d.sync += x.key.eq(mq.data)
                for l in range(L):
                    with m.Case(int(Reg.GAMMA) + l):
                        m.d.sync += x.gamma[l].eq(clamp(mq.data, x.gamma[l]))
        with m.If(~ok):
            m.d.comb += x.inc["bad_cmd"].eq(1)
        is_syn = is_(sp.WEIGHT) | is_(sp.MOMENTUM) | is_(sp.WEIGHT_WORD)
        with m.If(w & is_(sp.REG) & (idx == int(Reg.STEP))):
            m.next = "MEM_KEY"
        with m.Elif(mq.write & (~ok | ~is_syn)):
            m.next = "IDLE"
        with m.Else():
            m.next = "MEM_B"

    with m.State("MEM_B"):                  # read data of the addresses presented in MEM_A
        present()
        m.d.comb += x.syn.addr.eq(x.syn.addr_q)
        rd = x.syn.rdata
        wbits = rd[:P]
        moms = rd[P:]
        onehot = Const(1, P) << lane if P > 1 else Const(1, 1)
        with m.If(mq.write):                # synapse read-modify-write (ok checked in MEM_A)
            with m.Switch(mq.mem):
                with m.Case(sp.WEIGHT):
                    nw = Mux(mq.data[0], wbits | onehot, wbits & ~onehot)
                    m.d.comb += x.syn.wdata.eq(Cat(nw, moms))
                with m.Case(sp.MOMENTUM):
                    nm = Cat(*[Mux(lane == k, mq.data[:mb], moms[k * mb:(k + 1) * mb])
                               for k in range(P)])
                    m.d.comb += x.syn.wdata.eq(Cat(wbits, nm))
                with m.Case(sp.WEIGHT_WORD):
                    m.d.comb += x.syn.wdata.eq(Cat(mq.data[:P], moms))
            m.d.comb += x.syn.we.eq(1)
            m.next = "IDLE"
        with m.Else():
            rdata = Signal(DW, name="mq_rdata")
            with m.Switch(mq.mem):
                with m.Case(sp.WEIGHT):
                    m.d.comb += rdata.eq(wbits.bit_select(lane, 1) if P > 1 else wbits)
                with m.Case(sp.WEIGHT_WORD):
                    m.d.comb += rdata.eq(wbits)
                with m.Case(sp.MOMENTUM):
                    m.d.comb += rdata.eq(sx(moms.word_select(lane, mb)) if P > 1
                                         else sx(moms))
                with m.Case(sp.V):
                    for l, u in enumerate(x.tb):
                        with m.If(ly == l):
                            m.d.comb += rdata.eq(u.v_rdata)
                with m.Case(sp.BIAS):
                    m.d.comb += rdata.eq(sx(x.nb.rdata))
                with m.Case(sp.MEMBRANE):
                    m.d.comb += rdata.eq(sx(x.nv.rdata))
                with m.Case(sp.THETA):
                    if x.nth is not None:
                        m.d.comb += rdata.eq(sx(x.nth.rdata))
                with m.Case(sp.TRACE):
                    m.d.comb += rdata.eq(x.trs.rdata[:mp.tb])
                with m.Case(sp.SCORE):
                    m.d.comb += rdata.eq(sx(x.score.rdata))
                with m.Case(sp.REG):
                    with m.Switch(idx):
                        with m.Case(int(Reg.STEP)):
                            m.d.comb += rdata.eq(x.step)
                        with m.Case(int(Reg.RATE_SHIFT)):
                            m.d.comb += rdata.eq(x.rate_shift)
                        with m.Case(int(Reg.TBSO_GAMMA_Q)):
                            m.d.comb += rdata.eq(x.gamma_q)
                        with m.Case(int(Reg.KEY)):
                            m.d.comb += rdata.eq(x.key)
                        for l in range(L):
                            with m.Case(int(Reg.GAMMA) + l):
                                m.d.comb += rdata.eq(x.gamma[l])
            m.d.sync += resp.eq(Mux(ok, rdata, 0))
            m.next = "MEM_C"

    with m.State("MEM_C"):
        m.d.comb += [x.o_mem.valid.eq(1), x.o_mem.p.data.eq(resp)]
        with m.If(x.o_mem.ready):
            m.next = "IDLE"

    with m.State("MEM_KEY"):
        # KEY = seed + STEP * GOLDEN32 (mod 2^32), one multiplier bit per cycle (shift
        # registers, no barrel shifter)
        with m.If(key_mul[0]):
            m.d.sync += x.key.eq(x.key + key_add)
        m.d.sync += [key_bit.eq(key_bit + 1), key_add.eq(key_add << 1), key_mul.eq(key_mul >> 1)]
        with m.If(key_bit == 31):
            m.next = "IDLE"

