"""The link layers of the board top: deframer, command executor and framer (docs/protocol.md).

Every opcode, code, layout, CRC parameter and memory-map rule comes from :mod:`host.protocol`
(the one definition); the reference behaviour is :class:`host.link.emulator.EmulatorDevice`, and
the benches compare this RTL with it byte for byte.

* :class:`Deframer` -- hunts ``SYNC``, reads OP/SEQ/LEN (``LEN > MAX_PAYLOAD``: ``TOO_LONG`` at
  once), stores the payload in a ``MAX_PAYLOAD`` buffer, runs CRC-16 (``amaranth.lib.crc`` with
  :data:`host.protocol.CRC16`) over OP..CRC and tests the residue, and the CRC-32 of the payload
  (``WRITE_CONFIG``). A line idle for ``idle_cycles`` inside a frame is ``TRUNCATED``. It then
  holds the *item* (a frame or a frame error) until the executor acknowledges it, and takes no
  byte meanwhile (the RX FIFO in front of it absorbs them; see :mod:`hdl_gen.board_top`).
* :class:`Framer` -- a circular byte buffer of ``replay_bytes`` holding responses as
  ``OP SEQ LEN payload`` records. The executor opens a frame, appends payload bytes (stalling
  while the buffer is full, i.e. while the UART is slower than the core), and closes it; closing
  writes the header, so LEN comes first on the wire although it is known last. The transmitter
  sends every closed frame with SYNC in front and the CRC-16 behind (computed on the fly). A
  command's responses start at address 0, so the buffer is also the replay store: if they fit
  (counted in wire bytes, as the emulator does) a retransmitted command is answered by sending
  the buffer again. ``ERROR`` and the ``SYNC`` ``ACK`` go out from a small separate register
  frame and never touch the replay store.
* :class:`CommandExecutor` -- validates a whole command (every check of docs/protocol.md §3, in
  the emulator's order, so the same code and arg come back) before it changes anything, then
  drives the Core's streams and memory port and builds the responses. It holds what the core
  does not: the T input slots, the label-valid bit, learning and output flags, the replay key,
  the link statistics, the per-step spike bitmaps (so ``SPIKES`` picks the emulator's format),
  and, for BSO cores, a shadow of the ``V`` memory (the emulator keeps V under BSO too).
  ``WRITE_CONFIG`` (a fixed-config device: CRC-32 compare) and power-up run the same
  initialisation: every memory to the emulator's power-up state through the memory port.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import crc, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from host import protocol as P
from host.protocol import Cmd, ErrorCode, EventFlags, Mem, OutputMask, Rsp, SpikeFormat, StatusFlags

from .common import NEURON_BITS, lowest_set

__all__ = ["Deframer", "Framer", "CommandExecutor", "CRC16_ALGORITHM", "CRC32_ALGORITHM",
           "ItemKind", "be_block", "hdr_field"]

#: CRC-16 of the frames, built from host.protocol's parameters (not restated here)
CRC16_ALGORITHM = crc.Algorithm(crc_width=P.CRC16.width, polynomial=P.CRC16.poly,
                                initial_crc=P.CRC16.init, reflect_input=P.CRC16.refin,
                                reflect_output=P.CRC16.refout, xor_output=P.CRC16.xorout)
assert CRC16_ALGORITHM(data_width=8).residue() == P.CRC16.residue
assert CRC16_ALGORITHM(data_width=8).compute(b"123456789") == P.CRC16.check
#: CRC-32/ISO-HDLC (``binascii.crc32``) of the WRITE_CONFIG payload (``protocol.config_crc``)
CRC32_ALGORITHM = crc.catalog.CRC32_ISO_HDLC

SYNC0, SYNC1 = P.SYNC[0], P.SYNC[1]
HDR_BYTES = 8                 # payload bytes the deframer also keeps in registers


class ItemKind:
    FRAME = 0
    ERROR = 1


def _fit(v, width):
    """``v`` zero-extended or truncated to ``width`` bits."""
    v = Value.cast(v)
    if len(v) >= width:
        return v[:width]
    return Cat(v, Const(0, width - len(v)))


def be_block(layout: P.Layout, values: dict) -> Value:
    """The fixed fields of ``layout`` as one big-endian value: byte 0 on the wire is the top byte.
    ``values`` maps field names to Amaranth values (truncated / zero-extended to the field)."""
    parts = [_fit(values[f.name], 8 * f.size) for f in layout.fields]
    return Cat(*reversed(parts))


def hdr_field(hdr: Value, layout: P.Layout, name: str) -> Value:
    """Field ``name`` of ``layout`` from the first payload bytes (byte k in ``hdr[8k:8k+8]``)."""
    off = layout.offset(name)
    size = next(f.size for f in layout.fields if f.name == name)
    assert off + size <= HDR_BYTES
    return Cat(*[hdr[8 * k:8 * k + 8] for k in reversed(range(off, off + size))])


def _block_byte(value: Value, nbytes: int, i):
    """Byte ``i`` (0 = first on the wire) of a ``nbytes``-byte big-endian block."""
    if nbytes <= 1:
        return value[:8]
    return value.word_select(Value.cast(nbytes - 1 - i)[:ceil_log2(nbytes)], 8)


# ==============================================================================================
class Deframer(wiring.Component):
    """Bytes in, frame items out (see module docstring).

    The item (``item_valid``) stays until ``item_ack``; meanwhile the payload buffer is the
    executor's (``rd_addr`` / ``rd_data``, one cycle of read latency).
    """

    def __init__(self, *, max_payload: int = P.MAX_PAYLOAD, idle_cycles: int = 4096):
        self.max_payload = max_payload
        self.idle_cycles = idle_cycles
        super().__init__({
            "i_byte": In(stream.Signature(8)),
            "item_valid": Out(1),
            "item_ack": In(1),
            "item_kind": Out(1),
            "item_code": Out(8),
            "item_op": Out(8),
            "item_seq": Out(8),
            "item_len": Out(range(max_payload + 1)),
            "item_crc": Out(16),
            "item_crc32": Out(32),
            "hdr": Out(8 * HDR_BYTES),
            "rd_addr": In(range(max_payload)),
            "rd_data": Out(8),
            "in_frame": Out(1),
            "hunting": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = memory.Memory(shape=8, depth=self.max_payload, init=[])
        wp = buf.write_port()
        rp = buf.read_port()
        m.d.comb += [rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data)]
        m.submodules.crc16 = c16 = CRC16_ALGORITHM(data_width=8).create()
        m.submodules.crc32 = c32 = CRC32_ALGORITHM(data_width=8).create()

        byte = self.i_byte.payload
        take = Signal()
        m.d.comb += self.i_byte.ready.eq(take)
        got = take & self.i_byte.valid
        cnt = Signal(range(self.max_payload + 1))
        lenr = Signal(16)
        idle = Signal(range(self.idle_cycles + 1))
        idle_out = Signal()
        counting = Signal()
        m.d.comb += [c16.data.eq(byte), c32.data.eq(byte), self.item_crc32.eq(c32.crc),
                     counting.eq(self.in_frame)]
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(counting & (idle != self.idle_cycles)):
            m.d.sync += idle.eq(idle + 1)
        m.d.comb += idle_out.eq(idle == self.idle_cycles)

        def error(code):
            m.d.sync += [self.item_kind.eq(ItemKind.ERROR), self.item_code.eq(code)]
            m.next = "ITEM"

        with m.FSM(name="deframer"):
            with m.State("HUNT"):
                m.d.comb += [take.eq(1), self.hunting.eq(1)]
                m.d.sync += idle.eq(0)
                with m.If(got & (byte == SYNC0)):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                m.d.comb += [take.eq(1), counting.eq(1)]
                with m.If(idle_out & ~got):       # a lone A5 then silence: forgotten
                    m.next = "HUNT"
                with m.If(got):
                    with m.If(byte == SYNC1):
                        m.d.sync += [self.item_op.eq(0), self.item_seq.eq(0), idle.eq(0)]
                        m.next = "OP"
                    with m.Elif(byte != SYNC0):
                        m.next = "HUNT"
            with m.State("OP"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.start.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    m.d.sync += self.item_op.eq(byte)
                    m.next = "SEQ"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("SEQ"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    m.d.sync += self.item_seq.eq(byte)
                    m.next = "LENH"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("LENH"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    m.d.sync += lenr[8:].eq(byte)
                    m.next = "LENL"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("LENL"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    n = Cat(byte, lenr[8:])
                    m.d.comb += c32.start.eq(1)
                    m.d.sync += [lenr[:8].eq(byte), cnt.eq(0), self.hdr.eq(0),
                                 self.item_len.eq(n)]
                    with m.If(n > self.max_payload):
                        error(ErrorCode.TOO_LONG)
                    with m.Elif(n == 0):
                        m.next = "CRCH"
                    with m.Else():
                        m.next = "PAYLOAD"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("PAYLOAD"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got),
                             c32.valid.eq(got), wp.addr.eq(cnt), wp.data.eq(byte),
                             wp.en.eq(got)]
                with m.If(got):
                    m.d.sync += cnt.eq(cnt + 1)
                    for k in range(HDR_BYTES):
                        with m.If(cnt == k):
                            m.d.sync += self.hdr[8 * k:8 * k + 8].eq(byte)
                    with m.If(cnt + 1 == lenr):
                        m.next = "CRCH"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("CRCH"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    m.d.sync += self.item_crc[8:].eq(byte)
                    m.next = "CRCL"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("CRCL"):
                m.d.comb += [take.eq(1), self.in_frame.eq(1), c16.valid.eq(got)]
                with m.If(got):
                    m.d.sync += self.item_crc[:8].eq(byte)
                    m.next = "CHECK"
                with m.Elif(idle_out):
                    error(ErrorCode.TRUNCATED)
            with m.State("CHECK"):            # the CRC register has taken the last byte
                with m.If(c16.match_detected):
                    m.d.sync += self.item_kind.eq(ItemKind.FRAME)
                    m.next = "ITEM"
                with m.Else():
                    error(ErrorCode.CRC)
            with m.State("ITEM"):
                m.d.comb += self.item_valid.eq(1)
                with m.If(self.item_ack):
                    m.next = "HUNT"
        return m


# ==============================================================================================
class Framer(wiring.Component):
    """Response buffer (also the replay store) and the transmitter (see module docstring).

    Executor side, one operation at a time: ``begin`` (needs ``can_begin``) opens a frame of
    opcode ``op``; ``put`` appends payload bytes; ``end`` closes it (``busy`` for 4 cycles while
    the header is written). ``seq`` is the SEQ of every frame. ``rsp_reset`` (only when
    ``tx_idle``) starts a new response at address 0; ``replay`` (only when ``tx_idle``) sends
    ``[0, replay_end)`` again. ``small`` sends the register frame ``small_op/len/payload``
    (``tx_idle`` first). ``wr_ptr`` is the end of the closed frames; ``over``: this response
    is longer than ``replay_bytes`` on the wire.
    """

    def __init__(self, replay_bytes: int = P.REPLAY_BYTES, max_payload: int = P.MAX_PAYLOAD):
        if replay_bytes & (replay_bytes - 1) or replay_bytes < max_payload + 8:
            raise ValueError(f"replay_bytes={replay_bytes} is invalid: allowed a power of two "
                             f">= MAX_PAYLOAD + 8 = {max_payload + 8}")
        self.replay_bytes = replay_bytes
        self.max_payload = max_payload
        self.aw = ceil_log2(replay_bytes)
        pw = self.aw + 1
        super().__init__({
            "begin": In(1), "op": In(8), "seq": In(8),
            "put": In(stream.Signature(8)),
            "end": In(1),
            "can_begin": Out(1), "busy": Out(1),
            "rsp_reset": In(1),
            "replay": In(1), "replay_end": In(pw),
            "wr_ptr": Out(pw),
            "over": Out(1),
            "small": In(1), "small_op": In(8), "small_len": In(8), "small_payload": In(48),
            "tx_idle": Out(1),
            "o_tx": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        R, aw = self.replay_bytes, self.aw
        pw = aw + 1
        m.submodules.buf = buf = memory.Memory(shape=8, depth=R, init=[])
        wp = buf.write_port()
        rp = buf.read_port()

        wr = Signal(pw)          # next payload byte position
        base = Signal(pw)        # the open frame's header position
        commit = Signal(pw)      # end of the closed frames
        rd = Signal(pw)          # transmitter position (start of the frame being sent)
        flen = Signal(range(self.max_payload + 1))
        wire = Signal(range(R + 2))       # wire bytes of this response, saturating at R + 1
        m.d.comb += [self.wr_ptr.eq(commit), self.over.eq(wire > R)]
        used = Signal(pw)
        m.d.comb += used.eq(wr - rd)
        space = Signal(range(R + 1))
        m.d.comb += space.eq(R - used)

        # --- writer ---------------------------------------------------------------------------
        hk = Signal(2)
        opr = Signal(8)
        with m.FSM(name="writer"):
            with m.State("CLOSED"):
                m.d.comb += self.can_begin.eq(space >= 4)
                with m.If(self.begin):
                    m.d.sync += [base.eq(wr), wr.eq(wr + 4), flen.eq(0), opr.eq(self.op)]
                    m.next = "OPEN"
            with m.State("OPEN"):
                m.d.comb += [self.put.ready.eq(space != 0),
                             wp.addr.eq(wr[:aw]), wp.data.eq(self.put.payload),
                             wp.en.eq(self.put.valid & (space != 0))]
                with m.If(self.put.valid & (space != 0)):
                    m.d.sync += [wr.eq(wr + 1), flen.eq(flen + 1)]
                with m.If(self.end):
                    m.d.sync += hk.eq(0)
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), wp.addr.eq((base + hk)[:aw]), wp.en.eq(1)]
                with m.Switch(hk):
                    with m.Case(0):
                        m.d.comb += wp.data.eq(opr)
                    with m.Case(1):
                        m.d.comb += wp.data.eq(self.seq)
                    with m.Case(2):
                        m.d.comb += wp.data.eq(flen >> 8)
                    with m.Case(3):
                        m.d.comb += wp.data.eq(flen[:8])
                m.d.sync += hk.eq(hk + 1)
                with m.If(hk == 3):
                    m.d.sync += [commit.eq(wr),
                                 wire.eq(Mux(wire + P.OVERHEAD + flen > R, R + 1,
                                             wire + P.OVERHEAD + flen))]
                    m.next = "CLOSED"
        with m.If(self.rsp_reset):
            m.d.sync += [wr.eq(0), commit.eq(0), rd.eq(0), wire.eq(0)]
        with m.If(self.replay):
            m.d.sync += [rd.eq(0), commit.eq(self.replay_end), wr.eq(self.replay_end)]

        # --- transmitter ----------------------------------------------------------------------
        m.submodules.crc16 = c16 = CRC16_ALGORITHM(data_width=8).create()
        small_pend = Signal()
        with m.If(self.small):
            m.d.sync += small_pend.eq(1)
        is_small = Signal()
        idx = Signal(range(self.max_payload + 5))
        tlen = Signal(16)
        fetched = Signal()
        small_bytes = [self.small_op, self.seq, Const(0, 8), self.small_len] + \
            [self.small_payload.word_select(5 - k, 8) for k in range(6)]
        sbyte = Signal(8)
        with m.Switch(idx):
            for k, b in enumerate(small_bytes):
                with m.Case(k):
                    m.d.comb += sbyte.eq(b)
        m.d.comb += rp.addr.eq((rd + idx)[:aw])
        body_byte = Mux(is_small, sbyte, rp.data)
        o = self.o_tx
        hs = o.valid & o.ready
        m.d.comb += c16.data.eq(o.payload)
        tx_fsm_idle = Signal()
        m.d.comb += self.tx_idle.eq(tx_fsm_idle & (rd == commit) & ~small_pend)
        with m.FSM(name="tx"):
            with m.State("IDLE"):
                m.d.comb += tx_fsm_idle.eq(1)
                with m.If(small_pend):
                    m.d.sync += [is_small.eq(1), small_pend.eq(0)]
                    m.next = "SYNC0"
                with m.Elif(rd != commit):
                    m.d.sync += is_small.eq(0)
                    m.next = "SYNC0"
            with m.State("SYNC0"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(SYNC0)]
                with m.If(o.ready):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(SYNC1), c16.start.eq(1)]
                with m.If(o.ready):
                    m.d.sync += [idx.eq(0), fetched.eq(0)]
                    m.next = "BODY"
            with m.State("BODY"):
                m.d.sync += fetched.eq(1)
                m.d.comb += [o.valid.eq(fetched), o.payload.eq(body_byte), c16.valid.eq(hs)]
                with m.If(hs):
                    m.d.sync += [idx.eq(idx + 1), fetched.eq(0)]
                    with m.If(idx == 2):
                        m.d.sync += tlen[8:].eq(body_byte)
                    with m.If(idx == 3):
                        m.d.sync += tlen[:8].eq(body_byte)
                        with m.If(Cat(body_byte, tlen[8:]) == 0):
                            m.next = "CRCH"
                    with m.If((idx > 3) & (idx - 3 == tlen)):
                        m.next = "CRCH"
            with m.State("CRCH"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(c16.crc[8:])]
                with m.If(o.ready):
                    m.next = "CRCL"
            with m.State("CRCL"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(c16.crc[:8])]
                with m.If(o.ready):
                    with m.If(~is_small):
                        m.d.sync += rd.eq(rd + 4 + tlen)
                    m.next = "IDLE"
        return m


# ==============================================================================================
def _nbytes(fmt: P.ElementFormat) -> int:
    return 0 if fmt.packed else fmt.nbytes


class CommandExecutor(wiring.Component):
    """Validates and executes commands against the Core (see module docstring).

    It is elaborated inside the board top next to ``core``, ``deframer`` and ``framer`` and drives
    their ports directly (each port has one driver: this module).
    """

    def __init__(self, cfg, core, deframer: Deframer, framer: Framer):
        self.cfg = cfg
        self.core = core
        self.dfr = deframer
        self.frm = framer
        self.replay_bytes = framer.replay_bytes
        L = cfg.layers
        hidden = L[1:-1]
        for n in hidden:
            if (n + 7) // 8 > P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.SPIKES].fixed_size - 4:
                raise ValueError(f"hidden layer of {n} neurons: SPIKES would need splitting")
        sb = P.score_bytes(cfg)
        if L[-1] > (P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size) // sb:
            raise ValueError(f"{L[-1]} outputs: PREDICTION would need splitting")
        super().__init__({"idle": Out(1)})

    def elaborate(self, platform):
        from .core import CtrlOp, MemSpace, Reg as CReg, ResultKind, data_width

        cfg, core, dfr, frm = self.cfg, self.core, self.dfr, self.frm
        m = Module()
        d = cfg.derived()
        Ls = cfg.layers
        NL = cfg.n_layers
        T = cfg.T
        n_in, n_out = Ls[0], Ls[-1]
        NB = (n_in + 7) // 8
        tbso = cfg.optimizer == "tbso"
        DW = data_width(cfg, core.lanes)
        st = core.status
        for mem in Mem:
            assert MemSpace[mem.name].value == int(mem), mem
        for r in P.Reg:
            assert CReg[r.name].value == int(r), r

        # --- item from the deframer ---------------------------------------------------------------
        op, seq, plen, hdr = dfr.item_op, dfr.item_seq, dfr.item_len, dfr.hdr
        m.d.comb += frm.seq.eq(seq)

        # --- link state -----------------------------------------------------------------------------
        stats = {k: Signal(32, name=k) for k in
                 ("frames_ok", "crc_errors", "length_errors", "cmd_errors")}
        learn = Signal()
        outputs = Signal(2, init=int(OutputMask.ALL))
        label = Signal(16)
        label_valid = Signal()
        rp_valid = Signal()                  # a (seq, op, crc) key is remembered
        rp_ok = Signal()                     # ... and its responses fit the replay store
        rp_seq, rp_op, rp_crc = Signal(8), Signal(8), Signal(16)
        rp_end = Signal(len(frm.replay_end))
        cfg_crc = P.config_crc(cfg)

        # --- error frame registers --------------------------------------------------------------------
        e_code = Signal(8)
        e_arg = Signal(32)
        small_payload = Signal(48)
        small_op = Signal(8)
        small_len = Signal(8)
        m.d.comb += [frm.small_payload.eq(small_payload), frm.small_op.eq(small_op),
                     frm.small_len.eq(small_len)]

        # --- response byte path ---------------------------------------------------------------------
        put_valid = Signal()
        put_data = Signal(8)
        m.d.comb += [frm.put.valid.eq(put_valid), frm.put.payload.eq(put_data)]
        put_ok = put_valid & frm.put.ready
        em_i = Signal(range(64))

        # --- core ports ---------------------------------------------------------------------------
        ctrl = core.i_ctrl
        ev = core.i_event
        mreq = core.i_mem
        mrsp = core.o_mem
        mq_write = Signal()
        mq_space = Signal(4)
        mq_layer = Signal(4)
        mq_addr = Signal(28)
        mq_data = Signal(DW)
        m.d.comb += [mreq.p.write.eq(mq_write), mreq.p.mem.eq(mq_space),
                     mreq.p.layer.eq(mq_layer), mreq.p.addr.eq(mq_addr), mreq.p.data.eq(mq_data)]

        # --- input slots: T x NB bytes ------------------------------------------------------------
        m.submodules.slots = slots = memory.Memory(shape=8, depth=T * NB, init=[])
        sl_w = slots.write_port()
        sl_r = slots.read_port()

        # --- spike bitmaps of the current step: hidden layers, bytes --------------------------------
        hid = Ls[1:-1]
        sp_base = [sum((n + 7) // 8 for n in hid[:l]) for l in range(len(hid))]
        SPB = sum((n + 7) // 8 for n in hid)
        if SPB:
            m.submodules.spmem = spmem = memory.Memory(shape=8, depth=SPB, init=[])
            sp_w = spmem.write_port()
            sp_r = spmem.read_port()
        sp_cnt = [Signal(16, name=f"sp_cnt{l}") for l in range(len(hid))]

        # --- BSO: V shadow (the emulator keeps V under BSO as plain memory) ------------------------
        if not tbso:
            m.submodules.vshadow = vsh = memory.Memory(shape=cfg.v_bits, depth=NL * T, init=[])
            vsh_w = vsh.write_port()
            vsh_r = vsh.read_port()

        # --- general registers -----------------------------------------------------------------------
        k = Signal(17)                 # word / byte / index counter
        kk = Signal(17)                # second counter
        wd = Signal(64)                # assembled word
        nb = Signal(4)                 # bytes left to load
        ptr = Signal(range(P.MAX_PAYLOAD + 1))
        pend = Signal()                # a payload read was issued last cycle
        pre = Signal(NEURON_BITS + 14)
        post = Signal(NEURON_BITS)
        byte = Signal(8)
        tsel = Signal(8)               # slot (time step)
        acc = Signal(16)               # popcount / max
        lay = Signal(4)
        rem = Signal(NEURON_BITS + 1)
        quo = Signal(28)
        div_i = Signal(range(29))
        m_spikes0, m_flips0 = Signal(32), Signal(32)
        steps = Signal(16)
        pred = Signal(16)
        flip_reg = Signal(48)
        fl_open = Signal()
        fl_n = Signal(range(256))
        flushed = Signal()
        quiet = Signal(3)
        init_cmd = Signal()            # initialisation for WRITE_CONFIG (else power-up)

        # --- memory map (host.protocol) --------------------------------------------------------------
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
            for l in range(NL):
                with m.Case(l):
                    m.d.comb += n_post.eq(Ls[l + 1])
        data_size = Signal(20)
        m.d.comb += data_size.eq(Mux(mem_nbytes == 0, (f_count + 7) >> 3, f_count * mem_nbytes))
        room_data = P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.DATA].fixed_size
        wm_fixed = P.CMD_LAYOUTS[Cmd.WRITE_MEM].fixed_size
        ev_fixed = P.CMD_LAYOUTS[Cmd.EVENTS].fixed_size

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
        w_bad = (wsx_r < w_lo_r) | (wsx_r > w_hi_r)
        w_bad_r = Signal()

        # core address of word k: synapse (pre, post) or linear offset + k
        lin_addr = Signal(33)
        m.d.comb += lin_addr.eq(f_offset + k)
        core_space = Signal(4)
        m.d.comb += core_space.eq(f_mem)
        word_addr = Mux(mem_syn, Cat(post, pre[:28 - NEURON_BITS]), lin_addr[:28])

        # --- helpers generating FSM states -------------------------------------------------------------
        def ctrl_state(name, cop, arg, nxt):
            with m.State(name):
                m.d.comb += [ctrl.valid.eq(1), ctrl.p.op.eq(cop), ctrl.p.arg.eq(arg)]
                with m.If(ctrl.ready):
                    m.next = nxt

        def begin_state(name, rop, nxt):
            with m.State(name):
                m.d.comb += frm.op.eq(rop)
                with m.If(frm.can_begin):
                    m.d.comb += frm.begin.eq(1)
                    m.next = nxt

        def end_state(name, nxt):
            with m.State(name):
                m.d.comb += frm.end.eq(1)
                m.next = name + "_W"
            with m.State(name + "_W"):
                with m.If(~frm.busy):
                    m.next = nxt

        def emit_state(name, block: Value, nbytes: int, nxt):
            """Append the ``nbytes``-byte big-endian ``block`` (em_i counts)."""
            with m.State(name):
                if nbytes == 0:
                    m.next = nxt
                    return
                m.d.comb += [put_valid.eq(1), put_data.eq(_block_byte(block, nbytes, em_i))]
                with m.If(put_ok):
                    m.d.sync += em_i.eq(em_i + 1)
                    with m.If(em_i == nbytes - 1):
                        m.d.sync += em_i.eq(0)
                        m.next = nxt

        def load_state(name, nxt):
            """Read ``nb`` payload bytes from ``ptr`` into ``wd`` (big-endian, shifted in)."""
            with m.State(name):
                m.d.comb += dfr.rd_addr.eq(ptr)
                with m.If(pend):
                    m.d.sync += wd.eq(Cat(dfr.rd_data, wd[:56]))
                with m.If(nb != 0):
                    m.d.sync += [ptr.eq(ptr + 1), nb.eq(nb - 1), pend.eq(1)]
                with m.Else():
                    m.d.sync += pend.eq(0)
                    m.next = nxt

        def start_load(n, at):
            m.d.sync += [nb.eq(n), ptr.eq(at), pend.eq(0), wd.eq(0)]

        def simple_rsp(prefix, rop, block, nbytes):
            """States ``prefix``: open a ``rop`` frame, emit ``block``, close it, finish."""
            begin_state(prefix, rop, prefix + "_EMIT")
            emit_state(prefix + "_EMIT", block, nbytes, prefix + "_END")
            end_state(prefix + "_END", "FINISH")

        def cmd_error(code, arg):
            m.d.sync += [e_code.eq(code), e_arg.eq(arg)]
            m.next = "CMD_ERR"

        # --- idle / flow -------------------------------------------------------------------------------
        fsm_idle = Signal()
        m.d.comb += self.idle.eq(fsm_idle & frm.tx_idle)

        # --- o_spike collection (in the RUN step states) -----------------------------------------------
        collect = Signal()
        sp_cur = Signal(8)
        sp_addr = Signal(range(max(SPB, 1)))
        sp_have = Signal()
        sp_flush = Signal()          # write sp_cur out (FLUSH state)
        m.d.comb += core.o_spike.ready.eq(collect)
        spk = core.o_spike.p
        if SPB:
            s_addr = Signal(range(max(SPB, 1) + 1))
            with m.Switch(spk.layer):
                for l in range(len(hid)):
                    with m.Case(l):
                        m.d.comb += s_addr.eq(sp_base[l] + (spk.neuron >> 3))
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
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != 7):
            m.d.sync += quiet.eq(quiet + 1)

        # --- response blocks ----------------------------------------------------------------------------
        sflags = Signal(8)
        m.d.comb += sflags.eq(StatusFlags.CONFIGURED | StatusFlags.FIXED_CONFIG
                              | Mux(learn, StatusFlags.LEARN, 0)
                              | Mux(label_valid, StatusFlags.LABEL_VALID, 0)
                              | Mux(rp_valid, StatusFlags.REPLAY_VALID, 0))
        status_blk = be_block(P.STATUS_LAYOUT, {
            "version": P.PROTOCOL_VERSION, "flags": sflags, "outputs": outputs, "reserved": 0,
            "t": st.t, "label": Mux(label_valid, label, 0), "step": st.step,
            "config_crc": cfg_crc, "max_payload": dfr.max_payload,
            "max_batch": P.MAX_BATCH_EVENTS, "replay_bytes": self.replay_bytes,
            "sat_membrane": st.sat_membrane, "sat_trace": st.sat_trace,
            "sat_delta": st.sat_delta, "sat_momentum": st.sat_momentum, "sat_v": st.sat_v,
            **stats})
        run_ack = be_block(P.ACK_LAYOUTS[Cmd.RUN], {
            "t": st.t, "step": st.step, "spikes": (st.spikes - m_spikes0)[:32],
            "flips": (st.flips - m_flips0)[:32]})
        ev_ack = be_block(P.ACK_LAYOUTS[Cmd.EVENTS], {"t": tsel, "active": acc})
        cfg_ack = be_block(P.ACK_LAYOUTS[Cmd.WRITE_CONFIG], {"config_crc": cfg_crc})
        sync_ack = be_block(P.ACK_LAYOUTS[Cmd.SYNC], {
            "nonce": hdr_field(hdr, P.CMD_LAYOUTS[Cmd.SYNC], "nonce"),
            "version": P.PROTOCOL_VERSION})
        err_blk = be_block(P.RSP_LAYOUTS[Rsp.ERROR], {"code": e_code, "op": op, "arg": e_arg})
        spk_hdr_bm = be_block(P.RSP_LAYOUTS[Rsp.SPIKES], {"t": st.t, "layer": lay,
                                                          "format": SpikeFormat.BITMAP})
        spk_hdr_ix = be_block(P.RSP_LAYOUTS[Rsp.SPIKES], {"t": st.t, "layer": lay,
                                                          "format": SpikeFormat.INDICES})
        pred_hdr = be_block(P.RSP_LAYOUTS[Rsp.PREDICTION], {"prediction": pred, "offset": 0})
        data_hdr = Cat(*[hdr[8 * j:8 * j + 8] for j in reversed(range(HDR_BYTES))])
        FLIP_ITEM = P.RSP_LAYOUTS[Rsp.FLIPS].item_size
        FLIPS_PER_FRAME = P.max_items(P.RSP_LAYOUTS[Rsp.FLIPS], P.MAX_PAYLOAD)
        SB = P.score_bytes(cfg)
        assert P.RSP_LAYOUTS[Rsp.ERROR].fixed_size == 6 and P.ACK_LAYOUTS[Cmd.SYNC].fixed_size == 5

        # --- constants of the checks -------------------------------------------------------------------
        cmd_ops = [int(c) for c in Cmd]
        op_known = Cat(*[op == c for c in cmd_ops]).any()
        len_ok = Signal()
        with m.Switch(op):
            for c in Cmd:
                lay_ = P.CMD_LAYOUTS[c]
                with m.Case(int(c)):
                    if lay_.tail is not None:
                        m.d.comb += len_ok.eq(plen >= lay_.fixed_size)
                    elif lay_.item:
                        raise NotImplementedError("command with items")
                    else:
                        m.d.comb += len_ok.eq(plen == lay_.fixed_size)
        rp_hit = rp_valid & (rp_seq == seq) & (rp_op == op) & (rp_crc == dfr.item_crc)

        # The checks of DISPATCH, computed from the held item in two registered steps (the FSM
        # passes DECODE1 and DECODE2 first), so that DISPATCH's priority logic starts from
        # flip-flops: one long combinational path became three short ones (ECP5 80 MHz).
        d1_end = Signal(34)
        d1_mem_size = Signal.like(mem_size)
        d1_data_size = Signal.like(data_size)
        m.d.sync += [d1_end.eq(f_offset + f_count), d1_mem_size.eq(mem_size),
                     d1_data_size.eq(data_size)]
        run_n = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.RUN], "n")
        chk = {k: Signal(name=f"chk_{k}") for k in (
            "op_known", "len_ok", "rp_hit", "rp_ok", "crc_cfg", "mem_bad", "size0", "count0",
            "mem_range", "oversize", "wlen_bad", "run_bad")}
        m.d.sync += [
            chk["op_known"].eq(op_known), chk["len_ok"].eq(len_ok), chk["rp_hit"].eq(rp_hit),
            chk["rp_ok"].eq(rp_ok), chk["crc_cfg"].eq(dfr.item_crc32 != cfg_crc),
            chk["mem_bad"].eq(f_mem > max(Mem)), chk["size0"].eq(d1_mem_size == 0),
            chk["count0"].eq(f_count == 0),
            chk["mem_range"].eq((d1_end > d1_mem_size) |
                                ((f_mem == Mem.WEIGHT) & (f_offset[:3] != 0))),
            chk["oversize"].eq(d1_data_size > room_data),
            chk["wlen_bad"].eq(plen - wm_fixed != d1_data_size),
            chk["run_bad"].eq((run_n == 0) | (st.t + run_n > T)),
        ]

        # init: memory fill segments (space, layer, count, synapse n_post or 0, value)
        segs = []
        for l in range(NL):
            C = core.words_per_row(l)
            segs.append((MemSpace.WEIGHT_WORD, l, Ls[l] * C, 0, 0))
            segs.append((MemSpace.MOMENTUM, l, Ls[l] * Ls[l + 1], Ls[l + 1], 0))
            if tbso:
                segs.append((MemSpace.V, l, T, 0, 0))
            if l < NL - 1:
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

        slot_base = Signal(range(T * NB + 1))
        m.d.comb += slot_base.eq(tsel * NB)
        lay_nb = Signal(16)
        lay_base = Signal(range(max(SPB, 1) + 1))
        lay_cnt = Signal(16)
        with m.Switch(lay):
            for l in range(len(hid)):
                with m.Case(l):
                    m.d.comb += [lay_nb.eq((hid[l] + 7) // 8), lay_base.eq(sp_base[l]),
                                 lay_cnt.eq(sp_cnt[l])]
        # =========================================================================================
        with m.FSM(name="exec", init="PWR_INIT"):
            # --- power-up: the emulator's power-up state -------------------------------------------
            with m.State("PWR_INIT"):
                m.d.sync += init_cmd.eq(0)
                m.next = "INIT"

            with m.State("IDLE"):
                m.d.comb += fsm_idle.eq(~dfr.item_valid)
                with m.If(dfr.item_valid):
                    with m.If(dfr.item_kind == ItemKind.ERROR):
                        with m.If(dfr.item_code == ErrorCode.CRC):
                            m.d.sync += stats["crc_errors"].eq(stats["crc_errors"] + 1)
                        with m.Else():
                            m.d.sync += stats["length_errors"].eq(stats["length_errors"] + 1)
                        m.d.sync += [e_code.eq(dfr.item_code), e_arg.eq(0)]
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
                    m.d.sync += [small_op.eq(Rsp.ERROR), small_len.eq(6),
                                 small_payload.eq(err_blk)]
                    m.next = "SEND_ERR_W"
            with m.State("SEND_ERR_W"):       # the small registers are read until tx_idle
                with m.If(frm.tx_idle):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += dfr.item_ack.eq(1)
                m.next = "IDLE"

            # --- decode -----------------------------------------------------------------------------
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
                            m.d.sync += rp_valid.eq(0)
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
                            with m.Elif(mem_nbytes == 0):
                                # packed: only the padding bits of the last byte can be wrong
                                with m.If(f_count[:3] != 0):
                                    start_load(1, wm_fixed + d1_data_size - 1)
                                    m.next = "WM_PAD"
                                with m.Else():
                                    m.next = "X_START"
                            with m.Else():
                                m.d.sync += k.eq(0)
                                start_load(mem_nbytes, wm_fixed)
                                m.next = "WM_SCAN"
                        with m.Case(Cmd.RESET_STATE, Cmd.LEARN, Cmd.OUTPUTS):
                            v8 = hdr[:8]
                            with m.If((op == Cmd.LEARN) & (v8 > 1)):
                                cmd_error(ErrorCode.RANGE, v8)
                            with m.Elif((op == Cmd.OUTPUTS) & ((v8 & (0xFF & ~int(OutputMask.ALL))) != 0)):
                                cmd_error(ErrorCode.RANGE, v8)
                            with m.Else():
                                m.next = "X_START"
                        with m.Case(Cmd.LABEL):
                            lab = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.LABEL], "label")
                            with m.If(lab >= n_out):
                                cmd_error(ErrorCode.ADDRESS, lab)
                            with m.Else():
                                m.next = "X_START"
                        with m.Case(Cmd.RUN):
                            n_run = run_n
                            with m.If(chk["run_bad"]):
                                cmd_error(ErrorCode.RANGE, n_run)
                            with m.Elif(learn & ~label_valid):
                                cmd_error(ErrorCode.NO_LABEL, 0)
                            with m.Else():
                                m.next = "X_START"
                        with m.Case(Cmd.EVENTS):
                            e_t = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "t")
                            e_fl = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "flags")
                            dlen = Signal(16)
                            m.d.comb += dlen.eq(plen - ev_fixed)
                            m.d.sync += [tsel.eq(e_t), acc.eq(0), k.eq(0)]
                            with m.If((e_fl & (0xFF & ~int(EventFlags.APPEND | EventFlags.BITMAP))) != 0):
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
                                    m.d.sync += [kk.eq(dlen >> 1), acc.eq(0)]
                                    start_load(2, ev_fixed)
                                    m.next = "EV_SCAN"

            # --- validation scans ---------------------------------------------------------------------
            load_state("WM_PAD", "WM_PAD_CHK")
            with m.State("WM_PAD_CHK"):
                with m.If((wd[:8] >> f_count[:3]) != 0):
                    cmd_error(ErrorCode.RANGE, wd[:8])
                with m.Else():
                    m.next = "X_START"
            load_state("WM_SCAN", "WM_SCAN_SX")
            with m.State("WM_SCAN_SX"):       # the word, sign-extended, registered (timing)
                m.d.sync += wsx_r.eq(wsx)
                m.next = "WM_SCAN_CMP"
            with m.State("WM_SCAN_CMP"):      # then the range comparison
                m.d.sync += w_bad_r.eq(w_bad)
                m.next = "WM_SCAN_CHK"
            with m.State("WM_SCAN_CHK"):
                with m.If(w_bad_r):
                    cmd_error(ErrorCode.RANGE, wsx[:32])
                with m.Elif(k + 1 == f_count):
                    m.next = "X_START"
                with m.Else():
                    m.d.sync += [k.eq(k + 1), nb.eq(mem_nbytes), pend.eq(0), wd.eq(0)]
                    m.next = "WM_SCAN"

            e_t_v = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "t")
            e_fl_v = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.EVENTS], "flags")
            load_state("EV_PAD", "EV_PAD_CHK")
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
            load_state("EV_SCAN", "EV_SCAN_NEXT")
            with m.State("EV_SCAN_NEXT"):
                newmax = Mux(wd[:16] > acc, wd[:16], acc)
                with m.If(kk == 0):           # empty list
                    m.next = "EV_SCAN_END"
                with m.Elif(kk == 1):
                    m.d.sync += acc.eq(newmax)
                    m.next = "EV_SCAN_END"
                with m.Else():
                    m.d.sync += [acc.eq(newmax), kk.eq(kk - 1), nb.eq(2), pend.eq(0)]
                    m.next = "EV_SCAN"
            with m.State("EV_SCAN_END"):
                nidx = (plen - ev_fixed) >> 1
                with m.If((nidx != 0) & (acc >= n_in)):
                    cmd_error(ErrorCode.ADDRESS, acc)
                with m.Elif(e_t_v >= T):
                    cmd_error(ErrorCode.ADDRESS, e_t_v)
                with m.Else():
                    m.next = "X_START"

            # --- execution: a new response in the (replay) buffer -----------------------------------
            with m.State("X_START"):
                with m.If(frm.tx_idle):
                    m.d.comb += frm.rsp_reset.eq(1)
                    m.d.sync += [k.eq(0), kk.eq(0), em_i.eq(0)]
                    with m.Switch(op):
                        with m.Case(Cmd.STATUS):
                            m.next = "STATUS_RSP"
                        with m.Case(Cmd.WRITE_CONFIG):
                            m.d.sync += init_cmd.eq(1)
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
                m.d.sync += [rp_valid.eq(1), rp_seq.eq(seq), rp_op.eq(op),
                             rp_crc.eq(dfr.item_crc), rp_ok.eq(~frm.over), rp_end.eq(frm.wr_ptr)]
                m.next = "DONE"
            with m.State("REPLAY"):
                with m.If(frm.tx_idle):
                    m.d.comb += [frm.replay.eq(1), frm.replay_end.eq(rp_end)]
                    m.next = "DONE"
            with m.State("SYNC_ACK"):
                with m.If(frm.tx_idle):
                    m.d.comb += frm.small.eq(1)
                    m.d.sync += [small_op.eq(Rsp.ACK), small_len.eq(5),
                                 small_payload.eq(Cat(Const(0, 8), sync_ack))]
                    m.next = "SEND_ERR_W"

            simple_rsp("STATUS_RSP", Rsp.STATUS, status_blk, P.STATUS_LAYOUT.fixed_size)
            simple_rsp("ACK0", Rsp.ACK, Const(0, 8), 0)

            # --- simple controls ---------------------------------------------------------------------
            ctrl_state("RS_CTRL", CtrlOp.RESET_SAMPLE, 0, "RS_SLOTS")
            with m.State("RS_SLOTS"):
                m.d.sync += label_valid.eq(0)
                m.d.comb += [sl_w.addr.eq(k), sl_w.data.eq(0), sl_w.en.eq(1)]
                m.d.sync += k.eq(k + 1)
                with m.If(k == T * NB - 1):
                    m.next = "ACK0"
            lab_v = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.LABEL], "label")
            ctrl_state("LB_CTRL", CtrlOp.LABEL, lab_v, "LB_SET")
            with m.State("LB_SET"):
                m.d.sync += [label.eq(lab_v), label_valid.eq(1)]
                m.next = "ACK0"
            ctrl_state("LN_CTRL", CtrlOp.LEARN, hdr[:8], "LN_SET")
            with m.State("LN_SET"):
                m.d.sync += learn.eq(hdr[0])
                m.next = "ACK0"
            ctrl_state("OU_CTRL", CtrlOp.OUTPUTS, hdr[:8], "OU_SET")
            with m.State("OU_SET"):
                m.d.sync += outputs.eq(hdr[:2])
                m.next = "ACK0"

            # --- initialisation (power-up and WRITE_CONFIG) ------------------------------------------
            ctrl_state("INIT", CtrlOp.RESET_SAMPLE, 0, "INIT_LEARN")
            ctrl_state("INIT_LEARN", CtrlOp.LEARN, 0, "INIT_OUT")
            ctrl_state("INIT_OUT", CtrlOp.OUTPUTS, int(OutputMask.ALL), "INIT_CNT")
            ctrl_state("INIT_CNT", CtrlOp.CLEAR_COUNTERS, 0, "INIT_SEG")
            with m.State("INIT_SEG"):
                m.d.sync += [seg.eq(0), fill_k.eq(0), pre.eq(0), post.eq(0),
                             learn.eq(0), outputs.eq(int(OutputMask.ALL)), label_valid.eq(0)]
                m.next = "INIT_FILL"
            with m.State("INIT_FILL"):
                m.d.comb += [mreq.valid.eq(1), mq_write.eq(1), mq_space.eq(sg_space),
                             mq_layer.eq(sg_layer), mq_data.eq(sg_val),
                             mq_addr.eq(Mux(sg_npost != 0, Cat(post, pre[:28 - NEURON_BITS]),
                                            sg_addr0 + fill_k))]
                with m.If(mreq.ready):
                    with m.If(fill_k + 1 == sg_count):
                        m.d.sync += [fill_k.eq(0), pre.eq(0), post.eq(0), seg.eq(seg + 1)]
                        with m.If(seg == len(segs) - 1):
                            m.d.sync += k.eq(0)
                            m.next = "INIT_SLOTS"
                    with m.Else():
                        m.d.sync += fill_k.eq(fill_k + 1)
                        with m.If(post + 1 == sg_npost):
                            m.d.sync += [post.eq(0), pre.eq(pre + 1)]
                        with m.Else():
                            m.d.sync += post.eq(post + 1)
            with m.State("INIT_SLOTS"):
                m.d.comb += [sl_w.addr.eq(k), sl_w.data.eq(0), sl_w.en.eq(1)]
                if not tbso:
                    m.d.comb += [vsh_w.addr.eq(k), vsh_w.data.eq(0),
                                 vsh_w.en.eq(k < NL * T)]
                m.d.sync += k.eq(k + 1)
                with m.If(k == max(T * NB, NL * T) - 1):
                    m.next = "INIT_DONE"
            with m.State("INIT_DONE"):
                with m.If(init_cmd):
                    m.next = "WC_RSP"
                with m.Else():
                    m.next = "IDLE"
            simple_rsp("WC_RSP", Rsp.ACK, cfg_ack, P.ACK_LAYOUTS[Cmd.WRITE_CONFIG].fixed_size)

            # --- WRITE_MEM ------------------------------------------------------------------------------
            def div_states(prefix, nxt):
                """(pre, post) = divmod(offset, n_post) by restoring division (28 steps)."""
                with m.State(prefix):
                    m.d.sync += [rem.eq(0), quo.eq(f_offset[:28]), div_i.eq(0)]
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

            with m.State("WM_GO"):
                with m.If(mem_syn):
                    m.next = "WM_DIV"
                with m.Else():
                    m.next = "WM_NEXT"
            div_states("WM_DIV", "WM_NEXT")
            with m.State("WM_NEXT"):
                with m.If(k == f_count):
                    m.next = "ACK0"
                with m.Elif(mem_nbytes == 0):
                    with m.If(k[:3] == 0):
                        start_load(1, wm_fixed + (k >> 3))
                        m.next = "WM_LOAD"
                    with m.Else():
                        m.next = "WM_REQ"
                with m.Else():
                    start_load(mem_nbytes, wm_fixed + k_bytes)
                    m.next = "WM_LOAD"
            load_state("WM_LOAD", "WM_REQ")
            with m.State("WM_REQ"):
                wbit = wd[:8].bit_select(k[:3], 1)
                val = Mux(mem_nbytes == 0, wbit, wd[:DW])
                v_shadow = (f_mem == Mem.V) if not tbso else Const(0, 1)
                with m.If(v_shadow):
                    if not tbso:
                        m.d.comb += [vsh_w.addr.eq(f_layer * T + lin_addr), vsh_w.data.eq(wd),
                                     vsh_w.en.eq(1)]
                    advance_word()
                    m.next = "WM_NEXT"
                with m.Else():
                    m.d.comb += [mreq.valid.eq(1), mq_write.eq(1), mq_space.eq(core_space),
                                 mq_layer.eq(f_layer), mq_addr.eq(word_addr), mq_data.eq(val)]
                    with m.If(mreq.ready):
                        advance_word()
                        m.next = "WM_NEXT"

            # --- READ_MEM -------------------------------------------------------------------------------
            begin_state("RM_BEGIN", Rsp.DATA, "RM_HDR")
            emit_state("RM_HDR", data_hdr, HDR_BYTES, "RM_GO")
            with m.State("RM_GO"):
                m.d.sync += byte.eq(0)
                with m.If(mem_syn):
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
                    m.d.comb += vsh_r.addr.eq(f_layer * T + lin_addr)
                    m.next = "RM_VSH2"
                with m.State("RM_VSH2"):
                    m.d.comb += vsh_r.addr.eq(f_layer * T + lin_addr)
                    m.d.sync += wd.eq(vsh_r.data)
                    m.next = "RM_EMIT"
            else:
                with m.State("RM_VSH"):
                    m.next = "RM_REQ"
            with m.State("RM_REQ"):
                m.d.comb += [mreq.valid.eq(1), mq_write.eq(0), mq_space.eq(core_space),
                             mq_layer.eq(f_layer), mq_addr.eq(word_addr)]
                with m.If(mreq.ready):
                    m.next = "RM_WAIT"
            with m.State("RM_WAIT"):
                m.d.comb += mrsp.ready.eq(1)
                with m.If(mrsp.valid):
                    data = mrsp.p.data
                    with m.If(mem_signed):
                        with m.Switch(mem_bits):
                            for b in sorted({P.mem_format(cfg, x).bits for x in Mem}):
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
                        m.d.comb += [put_valid.eq(1), put_data.eq(byte)]
                        with m.If(put_ok):
                            m.d.sync += byte.eq(0)
                            advance_word()
                            m.next = "RM_NEXT"
                    with m.Else():
                        advance_word()
                        m.next = "RM_NEXT"
                with m.Else():
                    m.d.comb += [put_valid.eq(1),
                                 put_data.eq(wd.word_select((mem_nbytes - 1 - em_i).as_unsigned()[:3], 8))]
                    with m.If(put_ok):
                        m.d.sync += em_i.eq(em_i + 1)
                        with m.If(em_i + 1 == mem_nbytes):
                            m.d.sync += em_i.eq(0)
                            advance_word()
                            m.next = "RM_NEXT"
            end_state("RM_END", "FINISH")

            # --- EVENTS -----------------------------------------------------------------------------------
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
                with m.If(k == (plen - ev_fixed) >> 1):
                    m.d.sync += k.eq(0)
                    m.next = "EV_CNT"
                with m.Else():
                    start_load(2, ev_fixed + 2 * k)
                    m.next = "EV_IX_LOAD"
            load_state("EV_IX_LOAD", "EV_IX_RD")
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
            simple_rsp("EV_RSP", Rsp.ACK, ev_ack, P.ACK_LAYOUTS[Cmd.EVENTS].fixed_size)

            # --- RUN ---------------------------------------------------------------------------------------
            n_run_v = hdr_field(hdr, P.CMD_LAYOUTS[Cmd.RUN], "n")
            with m.State("RUN_GO"):
                m.d.sync += [m_spikes0.eq(st.spikes), m_flips0.eq(st.flips), steps.eq(n_run_v)]
                m.next = "STEP_CLR"
            with m.State("STEP_CLR"):          # clear the spike bitmaps and counts
                m.d.sync += [k.eq(0), kk.eq(0), fl_open.eq(0), fl_n.eq(0), flushed.eq(0),
                             sp_have.eq(0), tsel.eq(st.t)]
                for c in sp_cnt:
                    m.d.sync += c.eq(0)
                m.next = "STEP_CLR_RUN" if SPB else "STEP_EV"
            if SPB:
                with m.State("STEP_CLR_RUN"):
                    m.d.comb += [sp_w.addr.eq(k), sp_w.data.eq(0), sp_w.en.eq(1)]
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == SPB - 1):
                        m.d.sync += k.eq(0)
                        m.next = "STEP_EV"
            # input events of slot t, ascending
            with m.State("STEP_EV"):
                m.d.comb += sl_r.addr.eq(slot_base + k)
                with m.If(k == NB):
                    m.next = "STEP_CTRL"
                with m.Else():
                    m.next = "STEP_EV_RD"
            with m.State("STEP_EV_RD"):
                m.d.sync += byte.eq(sl_r.data)
                m.next = "STEP_EV_SEND"
            with m.State("STEP_EV_SEND"):
                low = lowest_set(byte, 8)
                with m.If(byte == 0):
                    m.d.sync += k.eq(k + 1)
                    m.next = "STEP_EV"
                with m.Else():
                    m.d.comb += [ev.valid.eq(1), ev.p.pre.eq(Cat(low, k[:13]))]
                    with m.If(ev.ready):
                        m.d.sync += byte.eq(byte & ~(Const(1, 8) << low))
            ctrl_state("STEP_CTRL", CtrlOp.STEP, 0, "STEP_RUN")
            with m.State("STEP_RUN"):
                m.d.comb += collect.eq(1)
                with m.If(quiet == 7):
                    with m.If(~flushed & (core.o_flip.valid | core.o_result.valid)):
                        m.d.sync += [lay.eq(0), k.eq(0)]
                        m.next = "FLUSH"
                    with m.Elif(core.o_flip.valid):
                        m.d.comb += core.o_flip.ready.eq(1)
                        fp = core.o_flip.p
                        m.d.sync += flip_reg.eq(be_block(
                            P.Layout(P.RSP_LAYOUTS[Rsp.FLIPS].item),
                            {"t": fp.t, "layer": fp.layer, "post": fp.post, "pre": fp.pre}))
                        with m.If(fl_open):
                            m.next = "FL_EMIT"
                        with m.Else():
                            m.next = "FL_BEGIN"
                    with m.Elif(core.o_result.valid):
                        m.d.comb += core.o_result.ready.eq(1)
                        m.d.sync += [pred.eq(core.o_result.p.pred), steps.eq(steps - 1)]
                        with m.If(fl_open):
                            m.next = "FL_CLOSE"
                        with m.Else():
                            m.next = "STEP_DONE"
            begin_state("FL_BEGIN", Rsp.FLIPS, "FL_EMIT")
            with m.State("FL_EMIT"):
                m.d.comb += [put_valid.eq(1), put_data.eq(_block_byte(flip_reg, FLIP_ITEM, em_i))]
                with m.If(put_ok):
                    m.d.sync += em_i.eq(em_i + 1)
                    with m.If(em_i == FLIP_ITEM - 1):
                        m.d.sync += [em_i.eq(0), fl_open.eq(1), fl_n.eq(fl_n + 1)]
                        with m.If(fl_n == FLIPS_PER_FRAME - 1):
                            m.next = "FL_END"
                        with m.Else():
                            m.next = "STEP_RUN"
            with m.State("FL_END"):
                m.d.comb += frm.end.eq(1)
                m.d.sync += [fl_open.eq(0), fl_n.eq(0)]
                m.next = "FL_END_W"
            with m.State("FL_END_W"):
                with m.If(~frm.busy):
                    m.next = "STEP_RUN"
            with m.State("FL_CLOSE"):
                m.d.comb += frm.end.eq(1)
                m.d.sync += [fl_open.eq(0), fl_n.eq(0)]
                m.next = "FL_CLOSE_W"
            with m.State("FL_CLOSE_W"):
                with m.If(~frm.busy):
                    m.next = "STEP_DONE"
            with m.State("STEP_DONE"):
                with m.If(steps == 0):
                    m.next = "RUN_END"
                with m.Else():
                    m.next = "STEP_CLR"

            # SPIKES frames of every hidden layer, the emulator's format choice
            with m.State("FLUSH"):
                if SPB:
                    m.d.comb += sp_flush.eq(1)
                with m.If(~outputs[0] | (len(hid) == 0)):
                    m.d.sync += flushed.eq(1)
                    m.next = "STEP_RUN"
                with m.Else():
                    m.next = "SP_BEGIN"
            begin_state("SP_BEGIN", Rsp.SPIKES, "SP_HDR")
            with m.State("SP_HDR"):
                bm = lay_nb <= 2 * lay_cnt
                m.d.comb += [put_valid.eq(1),
                             put_data.eq(Mux(bm, _block_byte(spk_hdr_bm, 3, em_i),
                                             _block_byte(spk_hdr_ix, 3, em_i)))]
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
                with m.If(st.t == T):
                    m.next = "PR_BEGIN"
                with m.Else():
                    m.next = "RUN_ACK"
            begin_state("PR_BEGIN", Rsp.PREDICTION, "PR_HDR")
            emit_state("PR_HDR", pred_hdr, P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size, "PR_NEXT")
            with m.State("PR_NEXT"):
                with m.If(k == n_out):
                    m.next = "PR_END"
                with m.Else():
                    m.next = "PR_REQ"
            with m.State("PR_REQ"):
                m.d.comb += [mreq.valid.eq(1), mq_write.eq(0), mq_space.eq(MemSpace.SCORE),
                             mq_layer.eq(NL - 1), mq_addr.eq(k)]
                with m.If(mreq.ready):
                    m.next = "PR_WAIT"
            with m.State("PR_WAIT"):
                m.d.comb += mrsp.ready.eq(1)
                with m.If(mrsp.valid):
                    m.d.sync += wd.eq(mrsp.p.data.as_signed())
                    m.next = "PR_EMIT"
            with m.State("PR_EMIT"):
                m.d.comb += [put_valid.eq(1), put_data.eq(_block_byte(wd, SB, em_i))]
                with m.If(put_ok):
                    m.d.sync += em_i.eq(em_i + 1)
                    with m.If(em_i == SB - 1):
                        m.d.sync += [em_i.eq(0), k.eq(k + 1)]
                        m.next = "PR_NEXT"
            end_state("PR_END", "RUN_ACK")
            simple_rsp("RUN_ACK", Rsp.ACK, run_ack, P.ACK_LAYOUTS[Cmd.RUN].fixed_size)

        return m
