"""The deframer: bytes in, frame items out (docs/protocol.md §2).

It hunts ``SYNC``, reads OP/SEQ/LEN (``LEN > MAX_PAYLOAD``: ``TOO_LONG`` at once), stores the
payload in a ``MAX_PAYLOAD`` buffer, runs CRC-16 (``amaranth.lib.crc`` with
:data:`host.protocol.CRC16`) over OP..CRC and tests the residue, and the CRC-32 of the payload
(``WRITE_CONFIG``). A line idle for ``idle_cycles`` inside a frame is ``TRUNCATED``. It then holds
the *item* (a frame or a frame error) until the executor acknowledges it, and takes no byte
meanwhile (the RX FIFO in front of it absorbs them; see :mod:`hdl_gen.board_top`).
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from host import protocol as P
from host.protocol import ErrorCode

from .fields import CRC16_ALGORITHM, CRC32_ALGORITHM, HDR_BYTES, SYNC0, SYNC1, ItemKind

__all__ = ["Deframer"]


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

