"""The executor's ``EVENTS``: input events into the T input slots (``T x NB`` bytes of bitmap).

* :func:`validate_states`: the bitmap's padding bits, every index below the input count (the
  maximum of the list), and ``t < T`` -- checked before the slot changes.
* :func:`states`: a bitmap is ORed (``APPEND``) or copied into slot ``t``; an index list sets
  its bits (after clearing the slot unless ``APPEND``); then the slot's population is counted
  for the ``ACK``.
"""
from __future__ import annotations

from amaranth import Const, Mux, Signal

from host import protocol as P
from host.protocol import Cmd, ErrorCode, EventFlags, Rsp

from .fields import be_block, hdr_field

__all__ = ["slot_logic", "validate_states", "states"]


def slot_logic(x):
    """``x.slot_base``: the first byte of slot ``tsel``; ``x.ev_fixed``: EVENTS' fixed part."""
    slot_base = Signal(range(x.T * x.NB + 1))
    x.m.d.comb += slot_base.eq(x.tsel * x.NB)
    x.slot_base = slot_base
    x.ev_fixed = P.CMD_LAYOUTS[Cmd.EVENTS].fixed_size


def validate_states(x):
    """EV_PAD (bitmap padding) and EV_SCAN (index list maximum)."""
    m, wd, acc, kk, T, n_in, NB = x.m, x.wd, x.acc, x.kk, x.T, x.n_in, x.NB
    cmd_error = x.cmd_error
    e_t_v = hdr_field(x.hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "t")
    x.load_state("EV_PAD", "EV_PAD_CHK")
    with m.State("EV_PAD_CHK"):
        if n_in % 8:
            pad = wd[:8] >> (n_in % 8)
            top = Signal(3)
            for b in range(8):
                with m.If(wd[b]):
                    m.d.comb += top.eq(b)
            with m.If(pad != 0):
                cmd_error(ErrorCode.ADDRESS, 8 * (NB - 1) + top)
            with m.Elif(e_t_v >= T):
                cmd_error(ErrorCode.ADDRESS, e_t_v)
            with m.Else():
                m.next = "X_START"
        else:
            with m.If(e_t_v >= T):
                cmd_error(ErrorCode.ADDRESS, e_t_v)
            with m.Else():
                m.next = "X_START"
    x.load_state("EV_SCAN", "EV_SCAN_NEXT")
    with m.State("EV_SCAN_NEXT"):
        newmax = Mux(wd[:16] > acc, wd[:16], acc)
        with m.If(kk == 0):           # empty list
            m.next = "EV_SCAN_END"
        with m.Elif(kk == 1):
            m.d.sync += acc.eq(newmax)
            m.next = "EV_SCAN_END"
        with m.Else():
            m.d.sync += [acc.eq(newmax), kk.eq(kk - 1), x.nb.eq(2), x.pend.eq(0)]
            m.next = "EV_SCAN"
    with m.State("EV_SCAN_END"):
        nidx = (x.plen - x.ev_fixed) >> 1
        with m.If((nidx != 0) & (acc >= n_in)):
            cmd_error(ErrorCode.ADDRESS, acc)
        with m.Elif(e_t_v >= T):
            cmd_error(ErrorCode.ADDRESS, e_t_v)
        with m.Else():
            m.next = "X_START"


def states(x):
    """EV_GO .. EV_RSP."""
    m, k, kk, wd, acc, NB, dfr = x.m, x.k, x.kk, x.wd, x.acc, x.NB, x.dfr
    sl_r, sl_w, slot_base, ev_fixed = x.sl_r, x.sl_w, x.slot_base, x.ev_fixed
    e_fl_v = hdr_field(x.hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "flags")
    ev_ack = be_block(P.ACK_LAYOUTS[Cmd.EVENTS], {"t": x.tsel, "active": acc})
    with m.State("EV_GO"):
        m.d.sync += [k.eq(0), kk.eq(0)]
        with m.If(e_fl_v & EventFlags.BITMAP):
            m.next = "EV_BM"
        with m.Elif(e_fl_v & EventFlags.APPEND):
            m.next = "EV_IX_NEXT"
        with m.Else():
            m.next = "EV_IX_CLR"
    # bitmap: slot byte j = (append ? old : 0) | payload byte j
    with m.State("EV_BM"):
        m.d.comb += [dfr.rd_addr.eq(ev_fixed + k), sl_r.addr.eq(slot_base + k)]
        m.next = "EV_BM_W"
    with m.State("EV_BM_W"):
        m.d.comb += [sl_w.addr.eq(slot_base + k), sl_w.en.eq(1),
                     sl_w.data.eq(Mux(e_fl_v & EventFlags.APPEND, sl_r.data, 0)
                                  | dfr.rd_data)]
        m.d.sync += k.eq(k + 1)
        with m.If(k == NB - 1):
            m.d.sync += k.eq(0)
            m.next = "EV_CNT"
        with m.Else():
            m.next = "EV_BM"
    with m.State("EV_IX_CLR"):
        m.d.comb += [sl_w.addr.eq(slot_base + k), sl_w.data.eq(0), sl_w.en.eq(1)]
        m.d.sync += k.eq(k + 1)
        with m.If(k == NB - 1):
            m.d.sync += k.eq(0)
            m.next = "EV_IX_NEXT"
    with m.State("EV_IX_NEXT"):
        with m.If(k == (x.plen - ev_fixed) >> 1):
            m.d.sync += k.eq(0)
            m.next = "EV_CNT"
        with m.Else():
            x.start_load(2, ev_fixed + 2 * k)
            m.next = "EV_IX_LOAD"
    x.load_state("EV_IX_LOAD", "EV_IX_RD")
    with m.State("EV_IX_RD"):
        m.d.comb += sl_r.addr.eq(slot_base + wd[3:16])
        m.next = "EV_IX_W"
    with m.State("EV_IX_W"):
        m.d.comb += [sl_w.addr.eq(slot_base + wd[3:16]), sl_w.en.eq(1),
                     sl_w.data.eq(sl_r.data | (Const(1, 8) << wd[:3]))]
        m.d.sync += k.eq(k + 1)
        m.next = "EV_IX_NEXT"
    # population of the slot
    with m.State("EV_CNT"):
        m.d.comb += sl_r.addr.eq(slot_base + k)
        m.d.sync += acc.eq(0)
        m.next = "EV_CNT_RD"
    with m.State("EV_CNT_RD"):
        pc = sum(sl_r.data[b] for b in range(8))
        m.d.sync += [acc.eq(acc + pc), k.eq(k + 1)]
        m.d.comb += sl_r.addr.eq(slot_base + k + 1)
        with m.If(k == NB - 1):
            m.next = "EV_RSP"
    x.simple_rsp("EV_RSP", Rsp.ACK, ev_ack, P.ACK_LAYOUTS[Cmd.EVENTS].fixed_size)
