"""BankedMemory: a word memory split into banks whose outputs are registered before the bank
multiplexer (read latency ``READ_LATENCY`` = 2 cycles).

A deep memory (the N-MNIST layer-0 weights: 36,992 words at P = 8) spans dozens of block RAMs.
With one read port, the multiplexer that picks one block RAM's output out of all of them sits
between the RAMs and the first register of every consumer, and on the ECP5-85F it was the
critical path of the whole chip (25.3 ns for the momentum memory, 21.8 ns for the weights).
Here every bank of ``bank_words`` words reads the same low address bits, its output is
registered next to its block RAMs, and the bank multiplexer gets a cycle of its own.

No golden twin: it stores words and returns them, two cycles later; every consumer's bench
reads through it.
"""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .common import uidx

__all__ = ["BankedMemory", "READ_LATENCY", "BANK_WORDS", "check_bank_words"]

#: Cycles from ``r_addr`` to ``r_data``: ``r_data`` in cycle ``t + 2`` is the word at the
#: address presented in cycle ``t`` (and stays so while the address is held).
READ_LATENCY = 2
#: Default words per bank (a power of two); 2048 words of up to 9 bits fill one ECP5 DP16KD.
BANK_WORDS = 2048


def check_bank_words(bank_words: int, name: str = "bank_words") -> None:
    """Raise ValueError unless ``bank_words`` is a power of two (the bank number is a slice)."""
    if bank_words < 1 or bank_words & (bank_words - 1):
        raise ValueError(f"{name}={bank_words} is invalid: allowed a power of two")


class BankedMemory(wiring.Component):
    """``depth`` words of ``width`` bits: one read port (latency 2), one write port.

    Parameters
    ----------
    width, depth : int
        Word width and number of words.
    init : sequence of int
        Initial contents (shorter than ``depth``: the rest is zero).
    bank_words : int
        Words per bank, a power of two; bank ``b`` holds words ``b*bank_words ..``.

    Members
    -------
    r_addr : In(addr); r_data : Out(width)
        Read: ``r_data`` is the word at the ``r_addr`` of two cycles earlier. A write and a read
        of the same word in the same cycle return the old word (no consumer does that).
    w_addr : In(addr); w_data : In(width); w_en : In(1)
        Write, in the cycle ``w_en`` is high.
    """

    def __init__(self, width: int, depth: int, *, init=(), bank_words: int = BANK_WORDS):
        if depth < 1:
            raise ValueError(f"depth={depth} is invalid: allowed >= 1")
        check_bank_words(bank_words)
        if len(init) > depth:
            raise ValueError(f"init has {len(init)} words, more than depth={depth}")
        self.width, self.depth, self.bank_words = width, depth, bank_words
        self._init = list(init)
        self.n_banks = -(-depth // bank_words)
        a = uidx(depth)
        super().__init__({"r_addr": In(a), "r_data": Out(width),
                          "w_addr": In(a), "w_data": In(width), "w_en": In(1)})

    def elaborate(self, platform):
        m = Module()
        bw, lb = self.bank_words, self.bank_words.bit_length() - 1
        qs = []
        for b in range(self.n_banks):
            lo = b * bw
            n = min(bw, self.depth - lo)
            bank = memory.Memory(shape=self.width, depth=n, init=self._init[lo:lo + n])
            m.submodules["mem" if self.n_banks == 1 else f"mem{b}"] = bank
            rp, wp = bank.read_port(), bank.write_port()
            q = Signal(self.width, name=f"q{b}")
            m.d.comb += [rp.addr.eq(self.r_addr[:len(rp.addr)]),
                         wp.addr.eq(self.w_addr[:len(wp.addr)]), wp.data.eq(self.w_data),
                         wp.en.eq(self.w_en & ((self.w_addr >> lb) == b))]
            m.d.sync += q.eq(rp.data)       # next to the bank's block RAMs
            qs.append(q)
        if self.n_banks == 1:
            m.d.comb += self.r_data.eq(qs[0])
        else:
            # the bank number, delayed to line up with the registered outputs
            sel1 = Signal(range(self.n_banks))
            sel2 = Signal(range(self.n_banks))
            m.d.sync += [sel1.eq(self.r_addr[lb:]), sel2.eq(sel1)]
            with m.Switch(sel2):
                for b, q in enumerate(qs):
                    with m.Case(b):
                        m.d.comb += self.r_data.eq(q)
        return m
