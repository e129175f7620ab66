"""The framer: the response buffer (also the replay store) and the transmitter.

A circular byte buffer of ``replay_bytes`` holds responses as ``OP SEQ LEN payload`` records.
The executor opens a frame, appends payload bytes (stalling while the buffer is full, i.e. while
the UART is slower than the core), and closes it; closing writes the header, so LEN comes first
on the wire although it is known last. The transmitter sends every closed frame with SYNC in
front and the CRC-16 behind (computed on the fly). A command's responses start at address 0, so
the buffer is also the replay store: if they fit (counted in wire bytes, as the emulator does) a
retransmitted command is answered by sending the buffer again. ``ERROR`` and the ``SYNC``
``ACK`` go out from a small separate register frame and never touch the replay store.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from host import protocol as P

from .fields import CRC16_ALGORITHM, SYNC0, SYNC1

__all__ = ["Framer"]


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

