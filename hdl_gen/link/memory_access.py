"""The executor's memory access: the memory map, ``WRITE_MEM`` and ``READ_MEM``.

* :func:`memory_map` decodes the ``mem``/``layer``/``offset``/``count`` fields of the held frame
  against :mod:`host.protocol`'s memory map (size, element format, synapse addressing) and the
  per-word range limits; its signals become attributes of the :class:`.context.ExecContext`.
* :func:`validate_states`: the scans that check every ``WRITE_MEM`` word (or the packed padding
  bits) before anything is written.
* :func:`states`: the execution -- words to or from the core's memory port (synapse memories
  addressed ``(pre, post)`` from ``offset`` by a restoring division), the BSO ``V`` shadow, and
  the ``DATA`` response of ``READ_MEM``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, signed

from host import protocol as P
from host.protocol import Cmd, ErrorCode, Mem, Rsp

from ..common import NEURON_BITS
from .fields import HDR_BYTES, hdr_field

__all__ = ["memory_map", "validate_states", "states"]


def _nbytes(fmt: P.ElementFormat) -> int:
    return 0 if fmt.packed else fmt.nbytes


def memory_map(x):
    """Decode the memory-map fields of the held frame (combinational, plus registered limits)."""
    m, cfg, hdr, k, wd, post, pre = x.m, x.cfg, x.hdr, x.k, x.wd, x.post, x.pre
    f_mem = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.WRITE_MEM], "mem")
    f_layer = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.WRITE_MEM], "layer")
    f_offset = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.WRITE_MEM], "offset")
    f_count = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.WRITE_MEM], "count")
    mem_size = Signal(29)
    mem_nbytes = Signal(4)          # 0 = packed
    mem_signed = Signal()
    mem_bits = Signal(7)
    mem_syn = Signal()              # synapse addressing
    n_post = Signal(NEURON_BITS + 1)
    with m.Switch(f_mem):
        for mem in Mem:
            with m.Case(int(mem)):
                fmt = P.mem_format(cfg, mem)
                m.d.comb += [mem_nbytes.eq(_nbytes(fmt)), mem_signed.eq(fmt.signed),
                             mem_bits.eq(fmt.bits),
                             mem_syn.eq(mem in (Mem.WEIGHT, Mem.MOMENTUM))]
                with m.Switch(f_layer):
                    for l in range(P.mem_layers(cfg, mem)):
                        with m.Case(l):
                            m.d.comb += mem_size.eq(P.mem_size(cfg, mem, l))
    with m.Switch(f_layer):
        for l in range(x.NL):
            with m.Case(l):
                m.d.comb += n_post.eq(x.Ls[l + 1])
    data_size = Signal(20)
    m.d.comb += data_size.eq(Mux(mem_nbytes == 0, (f_count + 7) >> 3, f_count * mem_nbytes))

    # word range check (WRITE_MEM): wd holds the word as read (nbytes, big-endian)
    wsx = Signal(signed(65))         # the word as a (sign-extended) integer
    with m.Switch(mem_nbytes):
        for n in (1, 2, 4, 8):
            with m.Case(n):
                m.d.comb += wsx.eq(Mux(mem_signed, wd[:8 * n].as_signed(), wd[:8 * n]))
    w_lo = Signal(signed(65))
    w_hi = Signal(signed(65))
    reg_addr = Signal(33)
    m.d.comb += reg_addr.eq(f_offset + k)
    with m.Switch(f_mem):
        for mem in Mem:
            with m.Case(int(mem)):
                if mem == Mem.REG:
                    with m.Switch(reg_addr):
                        for a in range(P.reg_count(cfg)):
                            with m.Case(a):
                                f = P.mem_format(cfg, mem, a)
                                m.d.comb += [w_lo.eq(f.lo), w_hi.eq(f.hi)]
                else:
                    f = P.mem_format(cfg, mem)
                    m.d.comb += [w_lo.eq(f.lo), w_hi.eq(f.hi)]
    # the limits registered: k is set the cycle before WM_SCAN, which lasts at least two
    # cycles, so they are valid in WM_SCAN_CHK (and the address add stays off the compare)
    w_lo_r = Signal.like(w_lo)
    w_hi_r = Signal.like(w_hi)
    m.d.sync += [w_lo_r.eq(w_lo), w_hi_r.eq(w_hi)]
    # byte offset of word k: k * nbytes as a shift (nbytes is 1, 2, 4 or 8), no multiplier
    k_bytes = Signal(len(k) + 3)
    with m.Switch(mem_nbytes):
        for n in (1, 2, 4, 8):
            with m.Case(n):
                m.d.comb += k_bytes.eq(k << (n.bit_length() - 1))
    wsx_r = Signal.like(wsx)
    w_bad_r = Signal()

    # core address of word k: synapse (pre, post) or linear offset + k
    lin_addr = Signal(33)
    m.d.comb += lin_addr.eq(f_offset + k)
    core_space = Signal(4)
    m.d.comb += core_space.eq(f_mem)

    x.f_mem, x.f_layer, x.f_offset, x.f_count = f_mem, f_layer, f_offset, f_count
    x.mem_size, x.mem_nbytes, x.mem_signed, x.mem_bits = mem_size, mem_nbytes, mem_signed, mem_bits
    x.mem_syn, x.n_post, x.data_size = mem_syn, n_post, data_size
    x.wsx, x.wsx_r, x.w_bad_r, x.k_bytes = wsx, wsx_r, w_bad_r, k_bytes
    x.w_bad = (wsx_r < w_lo_r) | (wsx_r > w_hi_r)
    x.lin_addr, x.core_space = lin_addr, core_space
    x.word_addr = Mux(mem_syn, Cat(post, pre[:28 - NEURON_BITS]), lin_addr[:28])
    x.room_data = P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.DATA].fixed_size
    x.wm_fixed = P.CMD_LAYOUTS[Cmd.WRITE_MEM].fixed_size


def validate_states(x):
    """WM_PAD / WM_SCAN: every word of a ``WRITE_MEM`` in range (or the padding bits zero)."""
    m, k, wd = x.m, x.k, x.wd
    x.load_state("WM_PAD", "WM_PAD_CHK")
    with m.State("WM_PAD_CHK"):
        with m.If((wd[:8] >> x.f_count[:3]) != 0):
            x.cmd_error(ErrorCode.RANGE, wd[:8])
        with m.Else():
            m.next = "X_START"
    x.load_state("WM_SCAN", "WM_SCAN_SX")
    with m.State("WM_SCAN_SX"):       # the word, sign-extended, registered (timing)
        m.d.sync += x.wsx_r.eq(x.wsx)
        m.next = "WM_SCAN_CMP"
    with m.State("WM_SCAN_CMP"):      # then the range comparison
        m.d.sync += x.w_bad_r.eq(x.w_bad)
        m.next = "WM_SCAN_CHK"
    with m.State("WM_SCAN_CHK"):
        with m.If(x.w_bad_r):
            x.cmd_error(ErrorCode.RANGE, x.wsx[:32])
        with m.Elif(k + 1 == x.f_count):
            m.next = "X_START"
        with m.Else():
            m.d.sync += [k.eq(k + 1), x.nb.eq(x.mem_nbytes), x.pend.eq(0), wd.eq(0)]
            m.next = "WM_SCAN"


def states(x):
    """WRITE_MEM and READ_MEM execution states."""
    m, cfg, k, wd, pre, post = x.m, x.cfg, x.k, x.wd, x.pre, x.post
    tbso, T, DW, n_post, mem_nbytes = x.tbso, x.T, x.DW, x.n_post, x.mem_nbytes
    f_mem, f_layer, f_count, lin_addr = x.f_mem, x.f_layer, x.f_count, x.lin_addr
    mreq, mrsp, wm_fixed, byte, em_i = x.mreq, x.mrsp, x.wm_fixed, x.byte, x.em_i

    def div_states(prefix, nxt):
        """(pre, post) = divmod(offset, n_post) by restoring division (28 steps)."""
        rem, quo, div_i = x.rem, x.quo, x.div_i
        with m.State(prefix):
            m.d.sync += [rem.eq(0), quo.eq(x.f_offset[:28]), div_i.eq(0)]
            m.next = prefix + "_RUN"
        with m.State(prefix + "_RUN"):
            r2 = Cat(quo[27], rem)
            ge = r2 >= n_post
            m.d.sync += [rem.eq(Mux(ge, r2 - n_post, r2)),
                         quo.eq(Cat(ge, quo[:27])), div_i.eq(div_i + 1)]
            with m.If(div_i == 27):
                m.next = prefix + "_END"
        with m.State(prefix + "_END"):
            m.d.sync += [pre.eq(quo), post.eq(rem)]
            m.next = nxt

    def advance_word():
        m.d.sync += k.eq(k + 1)
        with m.If(post + 1 == n_post):
            m.d.sync += [post.eq(0), pre.eq(pre + 1)]
        with m.Else():
            m.d.sync += post.eq(post + 1)

    # --- WRITE_MEM ----------------------------------------------------------------------------
    with m.State("WM_GO"):
        with m.If(x.mem_syn):
            m.next = "WM_DIV"
        with m.Else():
            m.next = "WM_NEXT"
    div_states("WM_DIV", "WM_NEXT")
    with m.State("WM_NEXT"):
        with m.If(k == f_count):
            m.next = "ACK0"
        with m.Elif(mem_nbytes == 0):
            with m.If(k[:3] == 0):
                x.start_load(1, wm_fixed + (k >> 3))
                m.next = "WM_LOAD"
            with m.Else():
                m.next = "WM_REQ"
        with m.Else():
            x.start_load(mem_nbytes, wm_fixed + x.k_bytes)
            m.next = "WM_LOAD"
    x.load_state("WM_LOAD", "WM_REQ")
    with m.State("WM_REQ"):
        wbit = wd[:8].bit_select(k[:3], 1)
        val = Mux(mem_nbytes == 0, wbit, wd[:DW])
        v_shadow = (f_mem == Mem.V) if not tbso else Const(0, 1)
        with m.If(v_shadow):
            if not tbso:
                m.d.comb += [x.vsh_w.addr.eq(f_layer * T + lin_addr), x.vsh_w.data.eq(wd),
                             x.vsh_w.en.eq(1)]
            advance_word()
            m.next = "WM_NEXT"
        with m.Else():
            m.d.comb += [mreq.valid.eq(1), x.mq_write.eq(1), x.mq_space.eq(x.core_space),
                         x.mq_layer.eq(f_layer), x.mq_addr.eq(x.word_addr), x.mq_data.eq(val)]
            with m.If(mreq.ready):
                advance_word()
                m.next = "WM_NEXT"

    # --- READ_MEM -----------------------------------------------------------------------------
    data_hdr = Cat(*[x.hdr[8 * j:8 * j + 8] for j in reversed(range(HDR_BYTES))])
    x.begin_state("RM_BEGIN", Rsp.DATA, "RM_HDR")
    x.emit_state("RM_HDR", data_hdr, HDR_BYTES, "RM_GO")
    with m.State("RM_GO"):
        m.d.sync += byte.eq(0)
        with m.If(x.mem_syn):
            m.next = "RM_DIV"
        with m.Else():
            m.next = "RM_NEXT"
    div_states("RM_DIV", "RM_NEXT")
    with m.State("RM_NEXT"):
        with m.If(k == f_count):
            m.next = "RM_END"
        with m.Elif((f_mem == Mem.V) if not tbso else Const(0, 1)):
            m.next = "RM_VSH"
        with m.Else():
            m.next = "RM_REQ"
    if not tbso:
        with m.State("RM_VSH"):
            m.d.comb += x.vsh_r.addr.eq(f_layer * T + lin_addr)
            m.next = "RM_VSH2"
        with m.State("RM_VSH2"):
            m.d.comb += x.vsh_r.addr.eq(f_layer * T + lin_addr)
            m.d.sync += wd.eq(x.vsh_r.data)
            m.next = "RM_EMIT"
    else:
        with m.State("RM_VSH"):
            m.next = "RM_REQ"
    with m.State("RM_REQ"):
        m.d.comb += [mreq.valid.eq(1), x.mq_write.eq(0), x.mq_space.eq(x.core_space),
                     x.mq_layer.eq(f_layer), x.mq_addr.eq(x.word_addr)]
        with m.If(mreq.ready):
            m.next = "RM_WAIT"
    with m.State("RM_WAIT"):
        m.d.comb += mrsp.ready.eq(1)
        with m.If(mrsp.valid):
            data = mrsp.p.data
            with m.If(x.mem_signed):
                with m.Switch(x.mem_bits):
                    for b in sorted({P.mem_format(cfg, mem).bits for mem in Mem}):
                        with m.Case(b):
                            if b <= DW:
                                m.d.sync += wd.eq(data[:b].as_signed())
            with m.Else():
                m.d.sync += wd.eq(data)
            m.d.sync += byte.eq(byte | (data[0] << k[:3]))
            m.next = "RM_EMIT"
    with m.State("RM_EMIT"):
        with m.If(mem_nbytes == 0):
            last = (k[:3] == 7) | (k + 1 == f_count)
            with m.If(last):
                m.d.comb += [x.put_valid.eq(1), x.put_data.eq(byte)]
                with m.If(x.put_ok):
                    m.d.sync += byte.eq(0)
                    advance_word()
                    m.next = "RM_NEXT"
            with m.Else():
                advance_word()
                m.next = "RM_NEXT"
        with m.Else():
            sel = (mem_nbytes - 1 - em_i).as_unsigned()[:3]
            m.d.comb += [x.put_valid.eq(1), x.put_data.eq(wd.word_select(sel, 8))]
            with m.If(x.put_ok):
                m.d.sync += em_i.eq(em_i + 1)
                with m.If(em_i + 1 == mem_nbytes):
                    m.d.sync += em_i.eq(0)
                    advance_word()
                    m.next = "RM_NEXT"
    x.end_state("RM_END", "FINISH")
