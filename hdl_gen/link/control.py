"""The executor's control commands, the replay store's bookkeeping and the initialisation.

* X_START opens a new response (the framer's buffer from address 0, also the replay store) and
  branches to the command; FINISH remembers the replay key (SEQ, OP, CRC) and whether the
  responses fit; REPLAY sends the buffer again; SYNC_ACK answers from the register frame.
* ``STATUS``, ``RESET_STATE``, ``LABEL``, ``LEARN``, ``OUTPUTS``: a control op to the core and the
  executor's own copy of the state the host can ask for.
* ``WRITE_CONFIG`` (a fixed-config device: the CRC-32 was compared in DISPATCH) and power-up run
  the same initialisation: every memory to the emulator's power-up state through the memory
  port (:func:`init_segments` lists the fills), the input slots and the V shadow cleared.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal

from host import protocol as P
from host.protocol import Cmd, OutputMask, Rsp, StatusFlags

from ..common import NEURON_BITS
from .fields import be_block, hdr_field

__all__ = ["status_flags", "init_segments", "power_up_state", "states"]


def status_flags(x):
    """``x.sflags``: the STATUS flags byte."""
    sflags = Signal(8)
    x.m.d.comb += sflags.eq(StatusFlags.CONFIGURED | StatusFlags.FIXED_CONFIG
                            | Mux(x.learn, StatusFlags.LEARN, 0)
                            | Mux(x.label_valid, StatusFlags.LABEL_VALID, 0)
                            | Mux(x.rp_valid, StatusFlags.REPLAY_VALID, 0))
    x.sflags = sflags


def init_segments(x):
    """The initialisation's memory fills: ``x.segs`` and the selected segment's fields."""
    from ..core import MemSpace

    m, cfg, core, Ls, d, DW = x.m, x.cfg, x.core, x.Ls, x.d, x.DW
    # init: memory fill segments (space, layer, count, synapse n_post or 0, value)
    segs = []
    for l in range(x.NL):
        C = core.words_per_row(l)
        segs.append((MemSpace.WEIGHT_WORD, l, Ls[l] * C, 0, 0))
        segs.append((MemSpace.MOMENTUM, l, Ls[l] * Ls[l + 1], Ls[l + 1], 0))
        if x.tbso:
            segs.append((MemSpace.V, l, x.T, 0, 0))
        if l < x.NL - 1:
            segs.append((MemSpace.THETA, l, Ls[l + 1], 0, d.theta[l]))
        segs.append((MemSpace.BIAS, l, Ls[l + 1], 0, 0))
    regs0 = [0, cfg.rate_shift, int(round(cfg.tbso_gamma * (1 << cfg.tbso_gamma_frac))),
             *cfg.gamma]
    assert len(regs0) == P.reg_count(cfg)
    for a, v in enumerate(regs0):
        segs.append(("REG", a, 1, 0, v))
    seg = Signal(range(len(segs) + 1))
    sg_space, sg_layer, sg_count, sg_npost, sg_val, sg_addr0 = (
        Signal(4), Signal(4), Signal(29), Signal(NEURON_BITS + 1), Signal(DW), Signal(28))
    with m.Switch(seg):
        for i, (sp, l, cnt, npost, val) in enumerate(segs):
            with m.Case(i):
                if sp == "REG":
                    m.d.comb += [sg_space.eq(MemSpace.REG), sg_layer.eq(0),
                                 sg_addr0.eq(l)]
                else:
                    m.d.comb += [sg_space.eq(sp), sg_layer.eq(l), sg_addr0.eq(0)]
                m.d.comb += [sg_count.eq(cnt), sg_npost.eq(npost),
                             sg_val.eq(val & ((1 << DW) - 1))]
    fill_k = Signal(29)
    x.segs, x.seg, x.fill_k = segs, seg, fill_k
    x.sg = dict(space=sg_space, layer=sg_layer, count=sg_count, npost=sg_npost, val=sg_val,
                addr0=sg_addr0)


def power_up_state(x):
    """PWR_INIT, the FSM's first state: the initialisation, without a response."""
    with x.m.State("PWR_INIT"):
        x.m.d.sync += x.init_cmd.eq(0)
        x.m.next = "INIT"


def states(x):
    """X_START .. the initialisation."""
    from ..core import CtrlOp

    m, frm, dfr, hdr, st, k, pre, post = x.m, x.frm, x.dfr, x.hdr, x.st, x.k, x.pre, x.post
    stats, cfg_crc = x.stats, x.cfg_crc
    status_blk = be_block(P.STATUS_LAYOUT, {
        "version": P.PROTOCOL_VERSION, "flags": x.sflags, "outputs": x.outputs, "reserved": 0,
        "t": st.t, "label": Mux(x.label_valid, x.label, 0), "step": st.step,
        "config_crc": cfg_crc, "max_payload": dfr.max_payload,
        "max_batch": P.MAX_BATCH_EVENTS, "replay_bytes": x.ex.replay_bytes,
        "sat_membrane": st.sat_membrane, "sat_trace": st.sat_trace,
        "sat_delta": st.sat_delta, "sat_momentum": st.sat_momentum, "sat_v": st.sat_v,
        **stats})
    cfg_ack = be_block(P.ACK_LAYOUTS[Cmd.WRITE_CONFIG], {"config_crc": cfg_crc})
    sync_ack = be_block(P.ACK_LAYOUTS[Cmd.SYNC], {
        "nonce": hdr_field(hdr, P.CMD_LAYOUTS[Cmd.SYNC], "nonce"),
        "version": P.PROTOCOL_VERSION})
    assert P.ACK_LAYOUTS[Cmd.SYNC].fixed_size == 5

    # --- execution: a new response in the (replay) buffer -------------------------------------
    with m.State("X_START"):
        with m.If(frm.tx_idle):
            m.d.comb += frm.rsp_reset.eq(1)
            m.d.sync += [k.eq(0), x.kk.eq(0), x.em_i.eq(0)]
            with m.Switch(x.op):
                with m.Case(Cmd.STATUS):
                    m.next = "STATUS_RSP"
                with m.Case(Cmd.WRITE_CONFIG):
                    m.d.sync += x.init_cmd.eq(1)
                    m.next = "INIT"
                with m.Case(Cmd.WRITE_MEM):
                    m.next = "WM_GO"
                with m.Case(Cmd.READ_MEM):
                    m.next = "RM_BEGIN"
                with m.Case(Cmd.RESET_STATE):
                    m.next = "RS_CTRL"
                with m.Case(Cmd.EVENTS):
                    m.next = "EV_GO"
                with m.Case(Cmd.LABEL):
                    m.next = "LB_CTRL"
                with m.Case(Cmd.LEARN):
                    m.next = "LN_CTRL"
                with m.Case(Cmd.OUTPUTS):
                    m.next = "OU_CTRL"
                with m.Case(Cmd.RUN):
                    m.next = "RUN_GO"
    with m.State("FINISH"):           # remember the key; the responses are in the buffer
        m.d.sync += [x.rp_valid.eq(1), x.rp_seq.eq(x.seq), x.rp_op.eq(x.op),
                     x.rp_crc.eq(dfr.item_crc), x.rp_ok.eq(~frm.over), x.rp_end.eq(frm.wr_ptr)]
        m.next = "DONE"
    with m.State("REPLAY"):
        with m.If(frm.tx_idle):
            m.d.comb += [frm.replay.eq(1), frm.replay_end.eq(x.rp_end)]
            m.next = "DONE"
    with m.State("SYNC_ACK"):
        with m.If(frm.tx_idle):
            m.d.comb += frm.small.eq(1)
            m.d.sync += [x.small_op.eq(Rsp.ACK), x.small_len.eq(5),
                         x.small_payload.eq(Cat(Const(0, 8), sync_ack))]
            m.next = "SEND_ERR_W"

    x.simple_rsp("STATUS_RSP", Rsp.STATUS, status_blk, P.STATUS_LAYOUT.fixed_size)
    x.simple_rsp("ACK0", Rsp.ACK, Const(0, 8), 0)

    # --- simple controls ----------------------------------------------------------------------
    T, NB, sl_w = x.T, x.NB, x.sl_w
    x.ctrl_state("RS_CTRL", CtrlOp.RESET_SAMPLE, 0, "RS_SLOTS")
    with m.State("RS_SLOTS"):
        m.d.sync += x.label_valid.eq(0)
        m.d.comb += [sl_w.addr.eq(k), sl_w.data.eq(0), sl_w.en.eq(1)]
        m.d.sync += k.eq(k + 1)
        with m.If(k == T * NB - 1):
            m.next = "ACK0"
    lab_v = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.LABEL], "label")
    x.ctrl_state("LB_CTRL", CtrlOp.LABEL, lab_v, "LB_SET")
    with m.State("LB_SET"):
        m.d.sync += [x.label.eq(lab_v), x.label_valid.eq(1)]
        m.next = "ACK0"
    x.ctrl_state("LN_CTRL", CtrlOp.LEARN, hdr[:8], "LN_SET")
    with m.State("LN_SET"):
        m.d.sync += x.learn.eq(hdr[0])
        m.next = "ACK0"
    x.ctrl_state("OU_CTRL", CtrlOp.OUTPUTS, hdr[:8], "OU_SET")
    with m.State("OU_SET"):
        m.d.sync += x.outputs.eq(hdr[:2])
        m.next = "ACK0"

    # --- initialisation (power-up and WRITE_CONFIG) -------------------------------------------
    seg, fill_k, sg, mreq = x.seg, x.fill_k, x.sg, x.mreq
    x.ctrl_state("INIT", CtrlOp.RESET_SAMPLE, 0, "INIT_LEARN")
    x.ctrl_state("INIT_LEARN", CtrlOp.LEARN, 0, "INIT_OUT")
    x.ctrl_state("INIT_OUT", CtrlOp.OUTPUTS, int(OutputMask.ALL), "INIT_CNT")
    x.ctrl_state("INIT_CNT", CtrlOp.CLEAR_COUNTERS, 0, "INIT_SEG")
    with m.State("INIT_SEG"):
        m.d.sync += [seg.eq(0), fill_k.eq(0), pre.eq(0), post.eq(0),
                     x.learn.eq(0), x.outputs.eq(int(OutputMask.ALL)), x.label_valid.eq(0)]
        m.next = "INIT_FILL"
    with m.State("INIT_FILL"):
        m.d.comb += [mreq.valid.eq(1), x.mq_write.eq(1), x.mq_space.eq(sg["space"]),
                     x.mq_layer.eq(sg["layer"]), x.mq_data.eq(sg["val"]),
                     x.mq_addr.eq(Mux(sg["npost"] != 0, Cat(post, pre[:28 - NEURON_BITS]),
                                      sg["addr0"] + fill_k))]
        with m.If(mreq.ready):
            with m.If(fill_k + 1 == sg["count"]):
                m.d.sync += [fill_k.eq(0), pre.eq(0), post.eq(0), seg.eq(seg + 1)]
                with m.If(seg == len(x.segs) - 1):
                    m.d.sync += k.eq(0)
                    m.next = "INIT_SLOTS"
            with m.Else():
                m.d.sync += fill_k.eq(fill_k + 1)
                with m.If(post + 1 == sg["npost"]):
                    m.d.sync += [post.eq(0), pre.eq(pre + 1)]
                with m.Else():
                    m.d.sync += post.eq(post + 1)
    with m.State("INIT_SLOTS"):
        m.d.comb += [sl_w.addr.eq(k), sl_w.data.eq(0), sl_w.en.eq(1)]
        if not x.tbso:
            m.d.comb += [x.vsh_w.addr.eq(k), x.vsh_w.data.eq(0),
                         x.vsh_w.en.eq(k < x.NL * T)]
        m.d.sync += k.eq(k + 1)
        with m.If(k == max(T * NB, x.NL * T) - 1):
            m.next = "INIT_DONE"
    with m.State("INIT_DONE"):
        with m.If(x.init_cmd):
            m.next = "WC_RSP"
        with m.Else():
            m.next = "IDLE"
    x.simple_rsp("WC_RSP", Rsp.ACK, cfg_ack, P.ACK_LAYOUTS[Cmd.WRITE_CONFIG].fixed_size)
