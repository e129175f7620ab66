"""The command executor's shared state and its FSM-building helpers.

:class:`ExecContext` is made once per elaboration of the
:class:`~hdl_gen.link.executor.CommandExecutor`. It holds the module, the ports of the deframer,
framer and core, every register and memory that more than one part of the executor uses (the
parts -- :mod:`.decode`, :mod:`.control`, :mod:`.memory_access`, :mod:`.events`, :mod:`.run` --
add their states to the one ``exec`` FSM through it), and the helpers that generate the
recurring states (a control op to the core, open / fill / close a response frame, load payload
bytes into ``wd``).
"""
from __future__ import annotations

from amaranth import Cat, Signal, Value
from amaranth.lib import memory

from host import protocol as P
from host.protocol import OutputMask

from ..common import NEURON_BITS
from .fields import block_byte

__all__ = ["ExecContext"]


class ExecContext:
    """Registers, memories and port shorthands of one executor (attributes named as the signals).

    The constructor adds the port wiring statements to ``m``; nothing else here adds logic
    except through the state helpers, which must be called inside the ``exec`` FSM.
    """

    def __init__(self, ex, m):
        from ..core import data_width

        cfg, core, dfr, frm = ex.cfg, ex.core, ex.dfr, ex.frm
        self.ex, self.m = ex, m
        self.cfg, self.core, self.dfr, self.frm = cfg, core, dfr, frm
        self.d = cfg.derived()
        self.Ls = Ls = cfg.layers
        self.NL = cfg.n_layers
        self.T = T = cfg.T
        self.n_in, self.n_out = Ls[0], Ls[-1]
        self.NB = NB = (self.n_in + 7) // 8
        self.tbso = cfg.optimizer == "tbso"
        self.DW = DW = data_width(cfg, core.lanes)
        self.st = core.status

        # --- item from the deframer -----------------------------------------------------------
        self.op, self.seq, self.plen, self.hdr = dfr.item_op, dfr.item_seq, dfr.item_len, dfr.hdr
        m.d.comb += frm.seq.eq(self.seq)

        # --- link state -----------------------------------------------------------------------
        self.stats = {k: Signal(32, name=k) for k in
                      ("frames_ok", "crc_errors", "length_errors", "cmd_errors")}
        self.learn = Signal()
        self.outputs = Signal(2, init=int(OutputMask.ALL))
        self.label = Signal(16)
        self.label_valid = Signal()
        self.rp_valid = Signal()                  # a (seq, op, crc) key is remembered
        self.rp_ok = Signal()                     # ... and its responses fit the replay store
        self.rp_seq = Signal(8)
        self.rp_op = Signal(8)
        self.rp_crc = Signal(16)
        self.rp_end = Signal(len(frm.replay_end))
        self.cfg_crc = P.config_crc(cfg)

        # --- error frame registers ------------------------------------------------------------
        self.e_code = Signal(8)
        self.e_arg = Signal(32)
        self.small_payload = Signal(48)
        self.small_op = Signal(8)
        self.small_len = Signal(8)
        m.d.comb += [frm.small_payload.eq(self.small_payload), frm.small_op.eq(self.small_op),
                     frm.small_len.eq(self.small_len)]

        # --- response byte path ---------------------------------------------------------------
        self.put_valid = Signal()
        self.put_data = Signal(8)
        m.d.comb += [frm.put.valid.eq(self.put_valid), frm.put.payload.eq(self.put_data)]
        self.put_ok = self.put_valid & frm.put.ready
        self.em_i = Signal(range(64))

        # --- core ports -----------------------------------------------------------------------
        self.ctrl = core.i_ctrl
        self.ev = core.i_event
        self.mreq = mreq = core.i_mem
        self.mrsp = core.o_mem
        self.mq_write = Signal()
        self.mq_space = Signal(4)
        self.mq_layer = Signal(4)
        self.mq_addr = Signal(28)
        self.mq_data = Signal(DW)
        m.d.comb += [mreq.p.write.eq(self.mq_write), mreq.p.mem.eq(self.mq_space),
                     mreq.p.layer.eq(self.mq_layer), mreq.p.addr.eq(self.mq_addr),
                     mreq.p.data.eq(self.mq_data)]

        # --- input slots: T x NB bytes --------------------------------------------------------
        m.submodules.slots = slots = memory.Memory(shape=8, depth=T * NB, init=[])
        self.sl_w = slots.write_port()
        self.sl_r = slots.read_port()

        # --- spike bitmaps of the current step: hidden layers, bytes --------------------------
        self.hid = hid = Ls[1:-1]
        self.sp_base = [sum((n + 7) // 8 for n in hid[:l]) for l in range(len(hid))]
        self.SPB = SPB = sum((n + 7) // 8 for n in hid)
        if SPB:
            m.submodules.spmem = spmem = memory.Memory(shape=8, depth=SPB, init=[])
            self.sp_w = spmem.write_port()
            self.sp_r = spmem.read_port()
        self.sp_cnt = [Signal(16, name=f"sp_cnt{l}") for l in range(len(hid))]

        # --- BSO: V shadow (the emulator keeps V under BSO as plain memory) -------------------
        if not self.tbso:
            m.submodules.vshadow = vsh = memory.Memory(shape=cfg.v_bits, depth=self.NL * T,
                                                       init=[])
            self.vsh_w = vsh.write_port()
            self.vsh_r = vsh.read_port()

        # --- general registers ----------------------------------------------------------------
        self.k = Signal(17)                 # word / byte / index counter
        self.kk = Signal(17)                # second counter
        self.wd = Signal(64)                # assembled word
        self.nb = Signal(4)                 # bytes left to load
        self.ptr = Signal(range(P.MAX_PAYLOAD + 1))
        self.pend = Signal()                # a payload read was issued last cycle
        self.pre = Signal(NEURON_BITS + 14)
        self.post = Signal(NEURON_BITS)
        self.byte = Signal(8)
        self.tsel = Signal(8)               # slot (time step)
        self.acc = Signal(16)               # popcount / max
        self.lay = Signal(4)
        self.rem = Signal(NEURON_BITS + 1)
        self.quo = Signal(28)
        self.div_i = Signal(range(29))
        self.m_spikes0 = Signal(32)         # status counters at the start of the RUN
        self.m_flips0 = Signal(32)
        self.steps = Signal(16)
        self.pred = Signal(16)
        self.flip_reg = Signal(48)
        self.fl_open = Signal()
        self.fl_n = Signal(range(256))
        self.flushed = Signal()
        self.quiet = Signal(3)
        self.init_cmd = Signal()            # initialisation for WRITE_CONFIG (else power-up)

    # --- helpers generating FSM states (call inside the exec FSM) --------------------------------
    def ctrl_state(self, name, cop, arg, nxt):
        """State ``name``: hand control op ``cop`` (argument ``arg``) to the core, then ``nxt``."""
        m, ctrl = self.m, self.ctrl
        with m.State(name):
            m.d.comb += [ctrl.valid.eq(1), ctrl.p.op.eq(cop), ctrl.p.arg.eq(arg)]
            with m.If(ctrl.ready):
                m.next = nxt

    def begin_state(self, name, rop, nxt):
        """State ``name``: open a response frame of opcode ``rop`` (waits for ``can_begin``)."""
        m, frm = self.m, self.frm
        with m.State(name):
            m.d.comb += frm.op.eq(rop)
            with m.If(frm.can_begin):
                m.d.comb += frm.begin.eq(1)
                m.next = nxt

    def end_state(self, name, nxt):
        """States ``name`` and ``name_W``: close the open frame, wait while the framer is busy."""
        m, frm = self.m, self.frm
        with m.State(name):
            m.d.comb += frm.end.eq(1)
            m.next = name + "_W"
        with m.State(name + "_W"):
            with m.If(~frm.busy):
                m.next = nxt

    def emit_state(self, name, block: Value, nbytes: int, nxt):
        """Append the ``nbytes``-byte big-endian ``block`` (em_i counts)."""
        m, em_i = self.m, self.em_i
        with m.State(name):
            if nbytes == 0:
                m.next = nxt
                return
            m.d.comb += [self.put_valid.eq(1), self.put_data.eq(block_byte(block, nbytes, em_i))]
            with m.If(self.put_ok):
                m.d.sync += em_i.eq(em_i + 1)
                with m.If(em_i == nbytes - 1):
                    m.d.sync += em_i.eq(0)
                    m.next = nxt

    def load_state(self, name, nxt):
        """Read ``nb`` payload bytes from ``ptr`` into ``wd`` (big-endian, shifted in)."""
        m, dfr, wd, nb, ptr, pend = self.m, self.dfr, self.wd, self.nb, self.ptr, self.pend
        with m.State(name):
            m.d.comb += dfr.rd_addr.eq(ptr)
            with m.If(pend):
                m.d.sync += wd.eq(Cat(dfr.rd_data, wd[:56]))
            with m.If(nb != 0):
                m.d.sync += [ptr.eq(ptr + 1), nb.eq(nb - 1), pend.eq(1)]
            with m.Else():
                m.d.sync += pend.eq(0)
                m.next = nxt

    def start_load(self, n, at):
        """Set up a :meth:`load_state` of ``n`` bytes from payload offset ``at``."""
        self.m.d.sync += [self.nb.eq(n), self.ptr.eq(at), self.pend.eq(0), self.wd.eq(0)]

    def simple_rsp(self, prefix, rop, block, nbytes):
        """States ``prefix``: open a ``rop`` frame, emit ``block``, close it, finish."""
        self.begin_state(prefix, rop, prefix + "_EMIT")
        self.emit_state(prefix + "_EMIT", block, nbytes, prefix + "_END")
        self.end_state(prefix + "_END", "FINISH")

    def cmd_error(self, code, arg):
        """Answer ``ERROR code arg`` (a command error: counted, nothing executed)."""
        self.m.d.sync += [self.e_code.eq(code), self.e_arg.eq(arg)]
        self.m.next = "CMD_ERR"
