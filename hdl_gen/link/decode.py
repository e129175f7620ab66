"""The executor's front: taking an item, the command checks, and the error answers.

Every check of docs/protocol.md §3 runs, in the emulator's order (so that the same code and arg
come back), before anything changes:

* :func:`checks` registers the checks from the held item in two steps (the FSM passes DECODE1
  and DECODE2 first) so that DISPATCH's priority logic starts from flip-flops: one long
  combinational path became three short ones (ECP5 80 MHz).
* :func:`states`: IDLE (frame errors counted and answered), DECODE1/2, DISPATCH (per command:
  the field checks, or on to a validation scan, or to X_START), CMD_ERR / SEND_ERR (the ``ERROR``
  register frame, which never touches the replay store) and DONE (item acknowledged).
"""
from __future__ import annotations

from amaranth import Cat, Signal

from host import protocol as P
from host.protocol import Cmd, ErrorCode, EventFlags, Mem, OutputMask, Rsp

from .fields import ItemKind, be_block, hdr_field

__all__ = ["checks", "states"]


def checks(x):
    """The registered command checks ``x.chk`` (valid in DISPATCH)."""
    m, op, seq, plen, dfr, st = x.m, x.op, x.seq, x.plen, x.dfr, x.st
    f_mem, f_offset, f_count = x.f_mem, x.f_offset, x.f_count
    # the commands of protocol version 1, which this device speaks (SAMPLE is v2 only: in a v1
    # session it is an unknown opcode, as in the emulator)
    v1_cmds = [c for c in Cmd if c != Cmd.SAMPLE]
    op_known = Cat(*[op == int(c) for c in v1_cmds]).any()
    len_ok = Signal()
    with m.Switch(op):
        for c in v1_cmds:
            lay_ = P.CMD_LAYOUTS[c]
            with m.Case(int(c)):
                if lay_.tail is not None:
                    m.d.comb += len_ok.eq(plen >= lay_.fixed_size)
                elif lay_.item:
                    raise NotImplementedError("command with items")
                else:
                    m.d.comb += len_ok.eq(plen == lay_.fixed_size)
    rp_hit = x.rp_valid & (x.rp_seq == seq) & (x.rp_op == op) & (x.rp_crc == dfr.item_crc)

    d1_end = Signal(34)
    d1_mem_size = Signal.like(x.mem_size)
    d1_data_size = Signal.like(x.data_size)
    m.d.sync += [d1_end.eq(f_offset + f_count), d1_mem_size.eq(x.mem_size),
                 d1_data_size.eq(x.data_size)]
    run_n = hdr_field(x.hdr, P.CMD_LAYOUTS[Cmd.RUN], "n")
    chk = {k: Signal(name=f"chk_{k}") for k in (
        "op_known", "len_ok", "rp_hit", "rp_ok", "crc_cfg", "mem_bad", "size0", "count0",
        "mem_range", "oversize", "wlen_bad", "run_bad")}
    m.d.sync += [
        chk["op_known"].eq(op_known), chk["len_ok"].eq(len_ok), chk["rp_hit"].eq(rp_hit),
        chk["rp_ok"].eq(x.rp_ok), chk["crc_cfg"].eq(dfr.item_crc32 != x.cfg_crc),
        chk["mem_bad"].eq(f_mem > max(Mem)), chk["size0"].eq(d1_mem_size == 0),
        chk["count0"].eq(f_count == 0),
        chk["mem_range"].eq((d1_end > d1_mem_size) |
                            ((f_mem == Mem.WEIGHT) & (f_offset[:3] != 0))),
        chk["oversize"].eq(d1_data_size > x.room_data),
        chk["wlen_bad"].eq(plen - x.wm_fixed != d1_data_size),
        chk["run_bad"].eq((run_n == 0) | (st.t + run_n > x.T)),
    ]
    x.chk, x.d1_data_size, x.run_n = chk, d1_data_size, run_n


def states(x):
    """IDLE .. DISPATCH and the error answers."""
    m, op, plen, hdr, dfr, frm, stats = x.m, x.op, x.plen, x.hdr, x.dfr, x.frm, x.stats
    chk, cmd_error, start_load = x.chk, x.cmd_error, x.start_load
    f_mem, f_layer, f_offset, f_count = x.f_mem, x.f_layer, x.f_offset, x.f_count
    wm_fixed, ev_fixed, NB = x.wm_fixed, x.ev_fixed, x.NB
    err_blk = be_block(P.RSP_LAYOUTS[Rsp.ERROR], {"code": x.e_code, "op": op, "arg": x.e_arg})
    assert P.RSP_LAYOUTS[Rsp.ERROR].fixed_size == 6

    with m.State("IDLE"):
        m.d.comb += x.fsm_idle.eq(~dfr.item_valid)
        with m.If(dfr.item_valid):
            with m.If(dfr.item_kind == ItemKind.ERROR):
                with m.If(dfr.item_code == ErrorCode.CRC):
                    m.d.sync += stats["crc_errors"].eq(stats["crc_errors"] + 1)
                with m.Else():
                    m.d.sync += stats["length_errors"].eq(stats["length_errors"] + 1)
                m.d.sync += [x.e_code.eq(dfr.item_code), x.e_arg.eq(0)]
                m.next = "SEND_ERR"
            with m.Else():
                m.d.sync += stats["frames_ok"].eq(stats["frames_ok"] + 1)
                m.next = "DECODE1"
    with m.State("DECODE1"):          # d1_* registered from the item
        m.next = "DECODE2"
    with m.State("DECODE2"):          # chk_* registered
        m.next = "DISPATCH"

    with m.State("CMD_ERR"):
        m.d.sync += stats["cmd_errors"].eq(stats["cmd_errors"] + 1)
        m.next = "SEND_ERR"
    with m.State("SEND_ERR"):
        with m.If(frm.tx_idle):
            m.d.comb += frm.small.eq(1)
            m.d.sync += [x.small_op.eq(Rsp.ERROR), x.small_len.eq(6),
                         x.small_payload.eq(err_blk)]
            m.next = "SEND_ERR_W"
    with m.State("SEND_ERR_W"):       # the small registers are read until tx_idle
        with m.If(frm.tx_idle):
            m.next = "DONE"
    with m.State("DONE"):
        m.d.comb += dfr.item_ack.eq(1)
        m.next = "IDLE"

    with m.State("DISPATCH"):
        sync_flags = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.SYNC], "flags")
        with m.If(~chk["op_known"]):
            cmd_error(ErrorCode.UNKNOWN_OPCODE, op)
        with m.Elif(op == Cmd.SYNC):
            with m.If(plen != P.CMD_LAYOUTS[Cmd.SYNC].fixed_size):
                cmd_error(ErrorCode.BAD_LENGTH, plen)
            with m.Elif((sync_flags & (0xFF & ~int(P.SyncFlags.NEW_SESSION))) != 0):
                cmd_error(ErrorCode.RANGE, sync_flags)
            with m.Else():
                with m.If(sync_flags & P.SyncFlags.NEW_SESSION):
                    m.d.sync += x.rp_valid.eq(0)
                m.next = "SYNC_ACK"
        with m.Elif(chk["rp_hit"]):
            with m.If(chk["rp_ok"]):
                m.next = "REPLAY"
            with m.Else():
                cmd_error(ErrorCode.NO_REPLAY, 0)
        with m.Elif(~chk["len_ok"]):
            cmd_error(ErrorCode.BAD_LENGTH, plen)
        with m.Else():
            with m.Switch(op):
                with m.Case(Cmd.STATUS):
                    m.next = "X_START"
                with m.Case(Cmd.WRITE_CONFIG):
                    with m.If(chk["crc_cfg"]):
                        cmd_error(ErrorCode.CONFIG_MISMATCH, dfr.item_crc32)
                    with m.Else():
                        m.next = "X_START"
                with m.Case(Cmd.WRITE_MEM, Cmd.READ_MEM):
                    with m.If(chk["mem_bad"]):
                        cmd_error(ErrorCode.ADDRESS, f_mem)
                    with m.Elif(chk["size0"]):
                        cmd_error(ErrorCode.ADDRESS, f_layer)
                    with m.Elif(chk["count0"]):
                        cmd_error(ErrorCode.RANGE, 0)
                    with m.Elif(chk["mem_range"]):
                        cmd_error(ErrorCode.ADDRESS, f_offset)
                    with m.Elif(op == Cmd.READ_MEM):
                        with m.If(chk["oversize"]):
                            cmd_error(ErrorCode.OVERSIZE, f_count)
                        with m.Else():
                            m.next = "X_START"
                    with m.Elif(chk["wlen_bad"]):
                        cmd_error(ErrorCode.BAD_LENGTH, plen - wm_fixed)
                    with m.Elif(x.mem_nbytes == 0):
                        # packed: only the padding bits of the last byte can be wrong
                        with m.If(f_count[:3] != 0):
                            start_load(1, wm_fixed + x.d1_data_size - 1)
                            m.next = "WM_PAD"
                        with m.Else():
                            m.next = "X_START"
                    with m.Else():
                        m.d.sync += x.k.eq(0)
                        start_load(x.mem_nbytes, wm_fixed)
                        m.next = "WM_SCAN"
                with m.Case(Cmd.RESET_STATE, Cmd.LEARN, Cmd.OUTPUTS):
                    v8 = hdr[:8]
                    bad_mask = (v8 & (0xFF & ~int(OutputMask.ALL))) != 0
                    with m.If((op == Cmd.LEARN) & (v8 > 1)):
                        cmd_error(ErrorCode.RANGE, v8)
                    with m.Elif((op == Cmd.OUTPUTS) & bad_mask):
                        cmd_error(ErrorCode.RANGE, v8)
                    with m.Else():
                        m.next = "X_START"
                with m.Case(Cmd.LABEL):
                    lab = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.LABEL], "label")
                    with m.If(lab >= x.n_out):
                        cmd_error(ErrorCode.ADDRESS, lab)
                    with m.Else():
                        m.next = "X_START"
                with m.Case(Cmd.RUN):
                    with m.If(chk["run_bad"]):
                        cmd_error(ErrorCode.RANGE, x.run_n)
                    with m.Elif(x.learn & ~x.label_valid):
                        cmd_error(ErrorCode.NO_LABEL, 0)
                    with m.Else():
                        m.next = "X_START"
                with m.Case(Cmd.EVENTS):
                    e_t = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "t")
                    e_fl = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "flags")
                    dlen = Signal(16)
                    m.d.comb += dlen.eq(plen - ev_fixed)
                    m.d.sync += [x.tsel.eq(e_t), x.acc.eq(0), x.k.eq(0)]
                    known = int(EventFlags.APPEND | EventFlags.BITMAP)
                    with m.If((e_fl & (0xFF & ~known)) != 0):
                        cmd_error(ErrorCode.RANGE, e_fl)
                    with m.Elif(e_fl & EventFlags.BITMAP):
                        with m.If(dlen != NB):
                            cmd_error(ErrorCode.BAD_LENGTH, dlen)
                        with m.Else():
                            start_load(1, ev_fixed + NB - 1)
                            m.next = "EV_PAD"
                    with m.Else():
                        with m.If(dlen[0]):
                            cmd_error(ErrorCode.BAD_LENGTH, dlen)
                        with m.Elif((dlen >> 1) > P.MAX_BATCH_EVENTS):
                            cmd_error(ErrorCode.OVERSIZE, dlen >> 1)
                        with m.Else():
                            m.d.sync += [x.kk.eq(dlen >> 1), x.acc.eq(0)]
                            start_load(2, ev_fixed)
                            m.next = "EV_SCAN"
