"""The executor's ``RUN``: time steps through the core and their responses.

Per step: the spike bitmaps and counts are cleared, slot ``t``'s input events go to the core in
ascending order, ``STEP``; while the core runs, :func:`collect_spikes` gathers its hidden-layer
spikes into per-layer bitmaps (so that ``SPIKES`` picks the emulator's format: the shorter of
bitmap and index list) and FLIPS frames are filled as flips come. Once the spike stream has been
quiet for 7 cycles and a flip or the result is waiting, the SPIKES frames go out (if enabled);
the step ends with the result. After the last step of a sample: ``PREDICTION`` (scores read
through the memory port), then the RUN ``ACK``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal

from host import protocol as P
from host.protocol import Cmd, Rsp, SpikeFormat

from ..common import lowest_set
from .fields import be_block, block_byte, hdr_field

__all__ = ["collect_spikes", "layer_select", "states"]


def collect_spikes(x):
    """``o_spike`` into the step's bitmaps (while ``x.collect``); ``quiet`` counts idle cycles.

    Also drives the executor's ``idle`` output from ``x.fsm_idle``.
    """
    m, core, hid, SPB, sp_cnt = x.m, x.core, x.hid, x.SPB, x.sp_cnt
    fsm_idle = Signal()
    m.d.comb += x.ex.idle.eq(fsm_idle & x.frm.tx_idle)

    collect = Signal()
    sp_cur = Signal(8)
    sp_addr = Signal(range(max(SPB, 1)))
    sp_have = Signal()
    sp_flush = Signal()          # write sp_cur out (FLUSH state)
    m.d.comb += core.o_spike.ready.eq(collect)
    spk = core.o_spike.p
    if SPB:
        sp_w = x.sp_w
        s_addr = Signal(range(max(SPB, 1) + 1))
        with m.Switch(spk.layer):
            for l in range(len(hid)):
                with m.Case(l):
                    m.d.comb += s_addr.eq(x.sp_base[l] + (spk.neuron >> 3))
        s_bit = Signal(8)
        m.d.comb += s_bit.eq(Const(1, 8) << spk.neuron[:3])
        with m.If(collect & core.o_spike.valid):
            for l in range(len(hid)):
                with m.If(spk.layer == l):
                    m.d.sync += sp_cnt[l].eq(sp_cnt[l] + 1)
            with m.If(sp_have & (s_addr != sp_addr)):
                m.d.comb += [sp_w.addr.eq(sp_addr), sp_w.data.eq(sp_cur), sp_w.en.eq(1)]
                m.d.sync += sp_cur.eq(s_bit)
            with m.Else():
                m.d.sync += sp_cur.eq(Mux(sp_have, sp_cur, 0) | s_bit)
            m.d.sync += [sp_addr.eq(s_addr), sp_have.eq(1)]
        with m.If(sp_flush):
            m.d.comb += [sp_w.addr.eq(sp_addr), sp_w.data.eq(sp_cur), sp_w.en.eq(sp_have)]
            m.d.sync += sp_have.eq(0)
    with m.If(collect & core.o_spike.valid):
        m.d.sync += x.quiet.eq(0)
    with m.Elif(x.quiet != 7):
        m.d.sync += x.quiet.eq(x.quiet + 1)
    x.fsm_idle, x.collect, x.sp_have, x.sp_flush = fsm_idle, collect, sp_have, sp_flush


def layer_select(x):
    """Bytes, bitmap base and spike count of hidden layer ``x.lay``."""
    m, hid = x.m, x.hid
    lay_nb = Signal(16)
    lay_base = Signal(range(max(x.SPB, 1) + 1))
    lay_cnt = Signal(16)
    with m.Switch(x.lay):
        for l in range(len(hid)):
            with m.Case(l):
                m.d.comb += [lay_nb.eq((hid[l] + 7) // 8), lay_base.eq(x.sp_base[l]),
                             lay_cnt.eq(x.sp_cnt[l])]
    x.lay_nb, x.lay_base, x.lay_cnt = lay_nb, lay_base, lay_cnt


def states(x):
    """RUN_GO .. RUN_ACK."""
    from ..core import CtrlOp, MemSpace

    m, core, frm, st, k, kk, em_i, byte = x.m, x.core, x.frm, x.st, x.k, x.kk, x.em_i, x.byte
    SPB, hid, lay, wd, mreq, mrsp = x.SPB, x.hid, x.lay, x.wd, x.mreq, x.mrsp
    steps, flushed, fl_open, fl_n = x.steps, x.flushed, x.fl_open, x.fl_n
    put_valid, put_data, put_ok = x.put_valid, x.put_data, x.put_ok
    run_ack = be_block(P.ACK_LAYOUTS[Cmd.RUN], {
        "t": st.t, "step": st.step, "spikes": (st.spikes - x.m_spikes0)[:32],
        "flips": (st.flips - x.m_flips0)[:32]})
    spk_hdr_bm = be_block(P.RSP_LAYOUTS[Rsp.SPIKES], {"t": st.t, "layer": lay,
                                                      "format": SpikeFormat.BITMAP})
    spk_hdr_ix = be_block(P.RSP_LAYOUTS[Rsp.SPIKES], {"t": st.t, "layer": lay,
                                                      "format": SpikeFormat.INDICES})
    pred_hdr = be_block(P.RSP_LAYOUTS[Rsp.PREDICTION], {"prediction": x.pred, "offset": 0})
    FLIP_ITEM = P.RSP_LAYOUTS[Rsp.FLIPS].item_size
    FLIPS_PER_FRAME = P.max_items(P.RSP_LAYOUTS[Rsp.FLIPS], P.MAX_PAYLOAD)
    SB = P.score_bytes(x.cfg)

    n_run_v = hdr_field(x.hdr, P.CMD_LAYOUTS[Cmd.RUN], "n")
    with m.State("RUN_GO"):
        m.d.sync += [x.m_spikes0.eq(st.spikes), x.m_flips0.eq(st.flips), steps.eq(n_run_v)]
        m.next = "STEP_CLR"
    with m.State("STEP_CLR"):          # clear the spike bitmaps and counts
        m.d.sync += [k.eq(0), kk.eq(0), fl_open.eq(0), fl_n.eq(0), flushed.eq(0),
                     x.sp_have.eq(0), x.tsel.eq(st.t)]
        for c in x.sp_cnt:
            m.d.sync += c.eq(0)
        m.next = "STEP_CLR_RUN" if SPB else "STEP_EV"
    if SPB:
        sp_w, sp_r = x.sp_w, x.sp_r
        with m.State("STEP_CLR_RUN"):
            m.d.comb += [sp_w.addr.eq(k), sp_w.data.eq(0), sp_w.en.eq(1)]
            m.d.sync += k.eq(k + 1)
            with m.If(k == SPB - 1):
                m.d.sync += k.eq(0)
                m.next = "STEP_EV"
    # input events of slot t, ascending
    with m.State("STEP_EV"):
        m.d.comb += x.sl_r.addr.eq(x.slot_base + k)
        with m.If(k == x.NB):
            m.next = "STEP_CTRL"
        with m.Else():
            m.next = "STEP_EV_RD"
    with m.State("STEP_EV_RD"):
        m.d.sync += byte.eq(x.sl_r.data)
        m.next = "STEP_EV_SEND"
    with m.State("STEP_EV_SEND"):
        low = lowest_set(byte, 8)
        with m.If(byte == 0):
            m.d.sync += k.eq(k + 1)
            m.next = "STEP_EV"
        with m.Else():
            m.d.comb += [x.ev.valid.eq(1), x.ev.p.pre.eq(Cat(low, k[:13]))]
            with m.If(x.ev.ready):
                m.d.sync += byte.eq(byte & ~(Const(1, 8) << low))
    x.ctrl_state("STEP_CTRL", CtrlOp.STEP, 0, "STEP_RUN")
    with m.State("STEP_RUN"):
        m.d.comb += x.collect.eq(1)
        with m.If(x.quiet == 7):
            with m.If(~flushed & (core.o_flip.valid | core.o_result.valid)):
                m.d.sync += [lay.eq(0), k.eq(0)]
                m.next = "FLUSH"
            with m.Elif(core.o_flip.valid):
                m.d.comb += core.o_flip.ready.eq(1)
                fp = core.o_flip.p
                m.d.sync += x.flip_reg.eq(be_block(
                    P.Layout(P.RSP_LAYOUTS[Rsp.FLIPS].item),
                    {"t": fp.t, "layer": fp.layer, "post": fp.post, "pre": fp.pre}))
                with m.If(fl_open):
                    m.next = "FL_EMIT"
                with m.Else():
                    m.next = "FL_BEGIN"
            with m.Elif(core.o_result.valid):
                m.d.comb += core.o_result.ready.eq(1)
                m.d.sync += [x.pred.eq(core.o_result.p.pred), steps.eq(steps - 1)]
                with m.If(fl_open):
                    m.next = "FL_CLOSE"
                with m.Else():
                    m.next = "STEP_DONE"
    x.begin_state("FL_BEGIN", Rsp.FLIPS, "FL_EMIT")
    with m.State("FL_EMIT"):
        m.d.comb += [put_valid.eq(1), put_data.eq(block_byte(x.flip_reg, FLIP_ITEM, em_i))]
        with m.If(put_ok):
            m.d.sync += em_i.eq(em_i + 1)
            with m.If(em_i == FLIP_ITEM - 1):
                m.d.sync += [em_i.eq(0), fl_open.eq(1), fl_n.eq(fl_n + 1)]
                with m.If(fl_n == FLIPS_PER_FRAME - 1):
                    m.next = "FL_END"
                with m.Else():
                    m.next = "STEP_RUN"
    for name, nxt in (("FL_END", "STEP_RUN"), ("FL_CLOSE", "STEP_DONE")):
        with m.State(name):
            m.d.comb += frm.end.eq(1)
            m.d.sync += [fl_open.eq(0), fl_n.eq(0)]
            m.next = name + "_W"
        with m.State(name + "_W"):
            with m.If(~frm.busy):
                m.next = nxt
    with m.State("STEP_DONE"):
        with m.If(steps == 0):
            m.next = "RUN_END"
        with m.Else():
            m.next = "STEP_CLR"

    # SPIKES frames of every hidden layer, the emulator's format choice
    lay_nb, lay_base = x.lay_nb, x.lay_base
    with m.State("FLUSH"):
        if SPB:
            m.d.comb += x.sp_flush.eq(1)
        with m.If(~x.outputs[0] | (len(hid) == 0)):
            m.d.sync += flushed.eq(1)
            m.next = "STEP_RUN"
        with m.Else():
            m.next = "SP_BEGIN"
    x.begin_state("SP_BEGIN", Rsp.SPIKES, "SP_HDR")
    with m.State("SP_HDR"):
        bm = lay_nb <= 2 * x.lay_cnt
        m.d.comb += [put_valid.eq(1),
                     put_data.eq(Mux(bm, block_byte(spk_hdr_bm, 3, em_i),
                                     block_byte(spk_hdr_ix, 3, em_i)))]
        with m.If(put_ok):
            m.d.sync += em_i.eq(em_i + 1)
            with m.If(em_i == 2):
                m.d.sync += [em_i.eq(0), k.eq(0)]
                with m.If(bm):
                    m.next = "SP_BM"
                with m.Else():
                    m.next = "SP_IX"
    if SPB:
        with m.State("SP_BM"):
            m.d.comb += sp_r.addr.eq(lay_base + k)
            m.next = "SP_BM_PUT"
        with m.State("SP_BM_PUT"):
            m.d.comb += [sp_r.addr.eq(lay_base + k), put_valid.eq(1),
                         put_data.eq(sp_r.data)]
            with m.If(put_ok):
                m.d.sync += k.eq(k + 1)
                with m.If(k + 1 == lay_nb):
                    m.next = "SP_END"
                with m.Else():
                    m.next = "SP_BM"
        with m.State("SP_IX"):
            m.d.comb += sp_r.addr.eq(lay_base + k)
            with m.If(k == lay_nb):
                m.next = "SP_END"
            with m.Else():
                m.next = "SP_IX_RD"
        with m.State("SP_IX_RD"):
            m.d.sync += byte.eq(sp_r.data)
            m.next = "SP_IX_PUT"
        with m.State("SP_IX_PUT"):
            low = lowest_set(byte, 8)
            idx16 = Cat(low, k[:13])
            with m.If(byte == 0):
                m.d.sync += k.eq(k + 1)
                m.next = "SP_IX"
            with m.Else():
                m.d.comb += [put_valid.eq(1),
                             put_data.eq(Mux(em_i == 0, idx16[8:16], idx16[:8]))]
                with m.If(put_ok):
                    m.d.sync += em_i.eq(~em_i[0])
                    with m.If(em_i == 1):
                        m.d.sync += byte.eq(byte & ~(Const(1, 8) << low))
    else:
        with m.State("SP_BM"):
            m.next = "SP_END"
        with m.State("SP_IX"):
            m.next = "SP_END"
    with m.State("SP_END"):
        m.d.comb += frm.end.eq(1)
        m.d.sync += em_i.eq(0)
        m.next = "SP_END_W"
    with m.State("SP_END_W"):
        with m.If(~frm.busy):
            with m.If(lay == len(hid) - 1):
                m.d.sync += flushed.eq(1)
                m.next = "STEP_RUN"
            with m.Else():
                m.d.sync += lay.eq(lay + 1)
                m.next = "SP_BEGIN"

    # end of the run: PREDICTION when the sample ended, then the ACK
    with m.State("RUN_END"):
        m.d.sync += k.eq(0)
        with m.If(st.t == x.T):
            m.next = "PR_BEGIN"
        with m.Else():
            m.next = "RUN_ACK"
    x.begin_state("PR_BEGIN", Rsp.PREDICTION, "PR_HDR")
    x.emit_state("PR_HDR", pred_hdr, P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size, "PR_NEXT")
    with m.State("PR_NEXT"):
        with m.If(k == x.n_out):
            m.next = "PR_END"
        with m.Else():
            m.next = "PR_REQ"
    with m.State("PR_REQ"):
        m.d.comb += [mreq.valid.eq(1), x.mq_write.eq(0), x.mq_space.eq(MemSpace.SCORE),
                     x.mq_layer.eq(x.NL - 1), x.mq_addr.eq(k)]
        with m.If(mreq.ready):
            m.next = "PR_WAIT"
    with m.State("PR_WAIT"):
        m.d.comb += mrsp.ready.eq(1)
        with m.If(mrsp.valid):
            m.d.sync += wd.eq(mrsp.p.data.as_signed())
            m.next = "PR_EMIT"
    with m.State("PR_EMIT"):
        m.d.comb += [put_valid.eq(1), put_data.eq(block_byte(wd, SB, em_i))]
        with m.If(put_ok):
            m.d.sync += em_i.eq(em_i + 1)
            with m.If(em_i == SB - 1):
                m.d.sync += [em_i.eq(0), k.eq(k + 1)]
                m.next = "PR_NEXT"
    x.end_state("PR_END", "RUN_ACK")
    x.simple_rsp("RUN_ACK", Rsp.ACK, run_ack, P.ACK_LAYOUTS[Cmd.RUN].fixed_size)
