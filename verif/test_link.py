"""Link benches: the board top (UART, deframer, executor, framer, Core) against the reference device.

``link_matches_emulator`` drives the UART pins with cocotbext-uart and feeds every host write to
:class:`host.link.emulator.EmulatorDevice` (fixed config, same replay buffer size) too; the bytes
the board sends back must equal the emulator's, byte for byte, after every write. The script:

* bring-up: ``SYNC``, ``STATUS``, ``WRITE_CONFIG`` (good and foreign), loading and reading back
  every memory (weights, momentum, V, theta, bias, registers) with random contents;
* every command error of docs/protocol.md §3/§7 (unknown op, bad lengths, addresses, ranges,
  padding bits, oversize batches and reads, NO_LABEL, bad flags), each followed by a read-back
  that proves nothing changed (the emulator and the board would differ otherwise);
* transport errors: CRC, ``TOO_LONG``, truncated frames (line idle mid-frame), garbage and
  ``A5 A5 5A`` between frames;
* training samples with bitmap and index-list events, ``APPEND``, runs split into pieces, the
  three output masks; retransmissions (replay, also across an ``ERROR`` and a ``SYNC``;
  ``NO_REPLAY`` once a RUN's answer outgrew the 2 KiB replay store; a fresh session executes
  again); a pipelined burst of commands sent without waiting (flow control);
* random frames (valid CRC, random opcodes and fields) and random inter-byte gaps.

Fault injection and the host-level end-to-end runs go through :class:`host.link.SimLink` (bridge
bench :mod:`verif.uart_bridge`): see verif/test_system_link.py.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
import pytest

from golden.config import NetConfig, tiny_config
from golden.core import Core as GoldenCore
from host import protocol as P
from host.link.emulator import EmulatorDevice
from host.protocol import Cmd, EventFlags, Mem, OutputMask
from verif.uart_bridge import (CLK_NS, build_board, settle, start_board, uart_models,
                               write_line)

DIVISOR = 4
REPLAY = 2048

# name: (config, lanes)
CASES = {
    # BSO, many flips (gamma 0 and a fast momentum), a hidden layer not a multiple of 8
    "bso": (dict(layers=(20, 28, 4), T=4, theta=(2.0,), grad_shift=(0, 0), gamma=(1, 1),
                 rate_shift=0), 8),
    # T-BSO (V through the core), two hidden layers
    "tbso": (dict(layers=(16, 8, 8, 4), T=4, theta=(2.0, 2.0), grad_shift=(1, 1, 1),
                  gamma=(4, 4, 4), optimizer="tbso", rate_shift=1, tbso_gamma=0.25), 8),
}


def case_config(name):
    kw, lanes = CASES[name]
    return tiny_config(**kw), lanes


# Icarus is ~8x slower per cycle on this design: one case, shorter script
@pytest.mark.parametrize("sim,case", [("verilator", "bso"), ("verilator", "tbso"),
                                      ("icarus", "bso")])
def test_link_matches_emulator(sim, case):
    from hdl_gen.board_top import BoardTop
    cfg, lanes = case_config(case)
    top = BoardTop(cfg, lanes=lanes, baud_divisor=DIVISOR, replay_bytes=REPLAY)
    build_board(sim, top, "verif.test_link", testcase="link_matches_emulator",
                name=case, env={"BSNN_CFG": cfg.to_dict(), "BSNN_DIVISOR": DIVISOR,
                                "BSNN_IDLE": top.idle_cycles,
                                "BSNN_SHORT": int(sim == "icarus")})


# ------------------------------------------------------------------------------------------------
class Host:
    """Frame builder with the host's SEQ numbering."""

    def __init__(self):
        self.seq = 0

    def frame(self, op, values=None, tail=b"", *, seq=None, raw=None):
        if seq is None:
            self.seq = (self.seq + 1) & 0xFF
            seq = self.seq
        payload = raw if raw is not None else P.pack(op, values or {}, tail=tail)
        return P.encode_frame(op, seq, payload)


def script(cfg: NetConfig, rng: random.Random, short: bool = False):
    """Yield ``(bytes, kind)``: kind ``"w"`` (a write, compare after it), ``"burst"`` (several
    frames at once), ``"trunc"`` (a partial frame: the line then stays idle). ``short`` (for
    Icarus, ~8x slower per cycle): fewer read-backs, samples and random frames, no burst."""
    h = Host()
    L, T, n_in, n_out = cfg.n_layers, cfg.T, cfg.layers[0], cfg.layers[-1]
    d = cfg.derived()
    npr = np.random.default_rng(rng.randrange(1 << 30))

    def mem_hdr(mem, layer, offset, count):
        return {"mem": mem, "layer": layer, "offset": offset, "count": count}

    def write_mem(mem, layer, words, offset=0):
        fmt = P.mem_format(cfg, mem, offset)
        if fmt.packed:
            data = P.encode_elements(fmt, words)
        else:       # raw, wrapped to the word's bytes: out-of-range words reach the device's
            mask = (1 << 8 * fmt.nbytes) - 1              # RANGE check (the host refuses them)
            data = b"".join((int(w) & mask).to_bytes(fmt.nbytes, "big") for w in words)
        return h.frame(Cmd.WRITE_MEM, mem_hdr(mem, layer, offset, len(words)), data)

    def read_all():
        for mem in Mem:
            for layer in range(P.mem_layers(cfg, mem)):
                n = P.mem_size(cfg, mem, layer)
                yield h.frame(Cmd.READ_MEM, mem_hdr(mem, layer, 0, n)), "w"

    def random_words(mem, n, offset=0):
        out = []
        for a in range(offset, offset + n):
            f = P.mem_format(cfg, mem, a)
            out.append(int(npr.integers(f.lo, min(f.hi, 1 << 40) + 1)))
        return out

    yield h.frame(Cmd.SYNC, {"flags": P.SyncFlags.NEW_SESSION, "nonce": 0x12345678}), "w"
    yield h.frame(Cmd.STATUS), "w"
    if not short:
        yield from read_all()                   # power-up state
    yield h.frame(Cmd.WRITE_CONFIG, tail=P.config_bytes(cfg.replace(T=cfg.T + 1))), "w"
    yield h.frame(Cmd.WRITE_CONFIG, tail=P.config_bytes(cfg)), "w"

    # --- load every memory with random words, read back ----------------------------------------
    for mem in Mem:
        for layer in range(P.mem_layers(cfg, mem)):
            n = P.mem_size(cfg, mem, layer)
            if mem == Mem.REG:
                words = random_words(mem, n)
                words[P.Reg.STEP] = rng.randrange(1 << 32)
                words[P.Reg.RATE_SHIFT] = rng.randrange(0, 4)
                words[P.Reg.TBSO_GAMMA_Q] = rng.randrange(16, 128)
                for l in range(L):
                    words[P.Reg.GAMMA + l] = rng.randrange(0, 4)
            elif mem == Mem.V:
                words = [rng.randrange(0, 1 << 16) for _ in range(n)]
            elif mem == Mem.THETA:
                words = [d.theta[layer] + rng.randrange(-d.one_spike, d.one_spike)
                         for _ in range(n)]
            elif mem == Mem.BIAS:
                words = [rng.randrange(-d.one_spike, d.one_spike) for _ in range(n)]
            else:
                words = random_words(mem, n)
            # in two pieces (an offset inside the memory; weights at a multiple of 8)
            cut = (n // 2) & ~7 if mem == Mem.WEIGHT else n // 2
            if cut:
                yield write_mem(mem, layer, words[:cut]), "w"
            yield write_mem(mem, layer, words[cut:], cut), "w"
    if not short:
        yield from read_all()

    # --- command errors (and proof that nothing changed) ----------------------------------------
    bad = [
        h.frame(0x55, raw=b"\x01\x02"),                                   # unknown opcode
        h.frame(0x00, raw=b""),
        h.frame(Cmd.STATUS, raw=b"\x00"),                                 # BAD_LENGTH
        h.frame(Cmd.RESET_STATE, raw=b"\x00\x00"),
        h.frame(Cmd.LABEL, raw=b"\x00"),
        h.frame(Cmd.RUN, raw=b"\x00\x01\x02"),
        h.frame(Cmd.READ_MEM, raw=bytes(7)),
        h.frame(Cmd.WRITE_MEM, raw=bytes(5)),
        h.frame(Cmd.EVENTS, raw=b"\x00"),
        h.frame(Cmd.SYNC, raw=b"\x00\x00\x00\x00"),
        h.frame(Cmd.SYNC, {"flags": 0x02, "nonce": 7}),                   # RANGE flags
        h.frame(Cmd.READ_MEM, mem_hdr(6, 0, 0, 1)),                      # ADDRESS mem
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.THETA, L - 1, 0, 1)),          # ADDRESS layer
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.REG, 1, 0, 1)),
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.BIAS, 0, 0, 0)),               # RANGE count 0
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.BIAS, 0, cfg.layers[1], 1)),   # ADDRESS offset
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.BIAS, 0, 0xFFFFFFFF, 2)),
        h.frame(Cmd.READ_MEM, mem_hdr(Mem.WEIGHT, 0, 4, 4)),             # weight offset % 8
        h.frame(Cmd.WRITE_MEM, mem_hdr(Mem.BIAS, 0, 0, 2), tail=b"\x00\x01"),   # BAD_LENGTH
        write_mem(Mem.MOMENTUM, 0, [0, -d.mom_max - 1]),                 # RANGE word
        write_mem(Mem.THETA, 0, [5, 0]),
        write_mem(Mem.BIAS, L - 1, [d.mem_max + 1]),
        write_mem(Mem.REG, 0, [70], offset=P.Reg.RATE_SHIFT),
        write_mem(Mem.REG, 0, [1, 1 << 16], offset=P.Reg.RATE_SHIFT),
        h.frame(Cmd.WRITE_MEM, mem_hdr(Mem.WEIGHT, 0, 0, 3), tail=b"\x0F"),    # padding bits
        h.frame(Cmd.EVENTS, {"t": 0, "flags": 4}),                       # RANGE flags
        h.frame(Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, tail=b"\x00"),  # bitmap len
        h.frame(Cmd.EVENTS, {"t": 0, "flags": 0}, tail=b"\x00"),         # odd index list
        h.frame(Cmd.EVENTS, {"t": 0, "flags": 0},
                tail=bytes(2 * (P.MAX_BATCH_EVENTS + 1))),               # OVERSIZE
        h.frame(Cmd.EVENTS, {"t": 0, "flags": 0},
                tail=np.array([1, n_in + 3, 2, n_in], ">u2").tobytes()),  # ADDRESS (max)
        h.frame(Cmd.EVENTS, {"t": T, "flags": 0}, tail=b"\x00\x01"),      # ADDRESS t
        h.frame(Cmd.EVENTS, {"t": T + 3, "flags": EventFlags.BITMAP},
                tail=bytes((n_in + 7) // 8)),
        h.frame(Cmd.LABEL, {"label": n_out}),
        h.frame(Cmd.LEARN, {"on": 2}),
        h.frame(Cmd.OUTPUTS, {"mask": 4}),
        h.frame(Cmd.RUN, {"n": 0}),
        h.frame(Cmd.RUN, {"n": T + 1}),
    ]
    if n_in % 8:
        bm = bytearray((n_in + 7) // 8)
        bm[-1] = 0x80
        bad.append(h.frame(Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, tail=bytes(bm)))
    # a read larger than one frame
    big = next(((m_, l_) for m_ in (Mem.MOMENTUM, Mem.V) for l_ in range(L)
                if P.mem_format(cfg, m_).data_size(P.mem_size(cfg, m_, l_)) > 1016), None)
    if big is None:
        bad.append(h.frame(Cmd.READ_MEM, mem_hdr(Mem.REG, 0, 0, 300)))   # ADDRESS instead
    for f in bad:
        yield f, "w"
    yield h.frame(Cmd.STATUS), "w"
    yield h.frame(Cmd.LEARN, {"on": 1}), "w"
    yield h.frame(Cmd.RUN, {"n": 1}), "w"                                 # NO_LABEL

    # --- transport errors --------------------------------------------------------------------
    f = bytearray(h.frame(Cmd.STATUS))
    f[3] ^= 0x10
    yield bytes(f), "w"                                                   # CRC (seq damaged)
    f = bytearray(write_mem(Mem.BIAS, 0, [1, 2]))
    f[-3] ^= 0x01
    yield bytes(f), "w"                                                   # CRC (payload)
    yield b"\xA5\x5A\x02\x09\x04\x01" + bytes(20), "w"                    # TOO_LONG then junk
    yield b"\x00\xFF\xA5\xA5\x5A" + h.frame(Cmd.STATUS)[2:], "w"         # garbage, A5 A5 5A
    yield h.frame(Cmd.LABEL, {"label": 1})[:5], "trunc"                  # truncated header
    yield write_mem(Mem.BIAS, 0, [3])[:-1], "trunc"                      # truncated CRC
    yield b"\xA5", "trunc"                                                # a lone sync byte
    yield b"\xA5\x5A", "trunc"
    yield from read_all()                       # nothing changed since the load

    # --- training -----------------------------------------------------------------------------
    yield h.frame(Cmd.WRITE_CONFIG, tail=P.config_bytes(cfg)), "w"
    g = GoldenCore(cfg)
    for l in range(L):
        yield write_mem(Mem.WEIGHT, l, (g.w_sign[l] > 0).T.ravel().astype(int).tolist()), "w"
    # thresholds 0 and the fastest momentum: many flips, a first RUN longer than the replay store
    yield write_mem(Mem.REG, 0, [0, 0] + [0] * L, offset=P.Reg.RATE_SHIFT), "w"
    for k in range(3 if short else 6):
        if k == 1:
            yield h.frame(Cmd.WRITE_MEM, mem_hdr(Mem.REG, 0, P.Reg.RATE_SHIFT, 2 + L),
                          P.encode_elements(P.mem_format(cfg, Mem.REG),
                                            [2, 64] + [3] * L)), "w"
        y = rng.randrange(n_out)
        learn = k != 3
        mask = [OutputMask.ALL, OutputMask.SPIKES, OutputMask.FLIPS, 0, OutputMask.ALL,
                OutputMask.ALL][k]
        yield h.frame(Cmd.OUTPUTS, {"mask": mask}), "w"
        yield h.frame(Cmd.RESET_STATE), "w"
        yield h.frame(Cmd.LEARN, {"on": int(learn)}), "w"
        yield h.frame(Cmd.LABEL, {"label": y}), "w"
        ev = npr.random((T, n_in)) < 0.4
        for t in range(T):
            idx = np.flatnonzero(ev[t])
            if t % 2:
                yield h.frame(Cmd.EVENTS, {"t": t, "flags": EventFlags.BITMAP},
                              np.packbits(ev[t], bitorder="little").tobytes()), "w"
            else:
                half = len(idx) // 2
                dup = np.concatenate([idx[:half], idx[:1]])
                yield h.frame(Cmd.EVENTS, {"t": t, "flags": 0}, dup.astype(">u2").tobytes()), "w"
                yield h.frame(Cmd.EVENTS, {"t": t, "flags": EventFlags.APPEND},
                              idx[half:][::-1].astype(">u2").tobytes()), "w"
        if k == 4:
            yield h.frame(Cmd.RUN, {"n": 1}), "w"
            run = h.frame(Cmd.RUN, {"n": T - 1})
        else:
            run = h.frame(Cmd.RUN, {"n": T})
        yield run, "w"
        if k == 0:
            yield run, "w"                                               # replay
            yield h.frame(0x33, raw=b""), "w"                            # an ERROR in between
            yield h.frame(Cmd.SYNC, {"flags": 0, "nonce": 99}), "w"      # a SYNC in between
            yield run, "w"                                               # replay again
            yield h.frame(Cmd.SYNC, {"flags": P.SyncFlags.NEW_SESSION, "nonce": 5}), "w"
            yield run, "w"                                               # executes: RANGE
        yield h.frame(Cmd.STATUS), "w"
    if not short:
        yield from read_all()

    # --- a pipelined burst (the host does not wait): nothing may be lost. The long answers to
    # the first reads keep the UART busy while the rest of the burst keeps coming: the RX FIFO
    # fills and CTS must drop.
    n_m = min(P.mem_size(cfg, Mem.MOMENTUM, 0), 1000)
    burst = [h.frame(Cmd.READ_MEM, mem_hdr(Mem.MOMENTUM, 0, 0, n_m))
             for _ in range(-(-3000 // n_m))]
    burst += [h.frame(Cmd.OUTPUTS, {"mask": OutputMask.ALL}),
             h.frame(Cmd.RESET_STATE), h.frame(Cmd.LEARN, {"on": 1}),
             h.frame(Cmd.LABEL, {"label": 0})]
    for t in range(T):
        burst.append(h.frame(Cmd.EVENTS, {"t": t, "flags": EventFlags.BITMAP},
                             np.packbits(npr.random(n_in) < 0.5, bitorder="little").tobytes()))
    burst += [h.frame(Cmd.RUN, {"n": T}), h.frame(Cmd.STATUS)]
    bias = [rng.randrange(-d.one_spike, d.one_spike) for _ in range(cfg.layers[1])]
    burst += [write_mem(Mem.BIAS, 0, bias)] * max(8, 2600 // (16 + 2 * cfg.layers[1]))
    burst += [h.frame(Cmd.STATUS)]
    if not short:
        yield b"".join(burst), "burst"

    # --- random frames --------------------------------------------------------------------------
    ops = [int(c) for c in Cmd if c != Cmd.WRITE_CONFIG] + [0x7F, 0x80]
    for _ in range(15 if short else 60):
        op = rng.choice(ops)
        n = rng.choice([0, 1, 2, 3, 5, 8, 9, 12])
        payload = bytearray(rng.randrange(256) for _ in range(n))
        if op in (Cmd.READ_MEM, Cmd.WRITE_MEM) and n >= 8:
            payload[0] = rng.randrange(7)
            payload[1] = rng.randrange(L + 1)
            payload[2:6] = rng.randrange(0, 40).to_bytes(4, "big")
            payload[6:8] = rng.randrange(0, 3).to_bytes(2, "big")
        if op in (Cmd.EVENTS, Cmd.LABEL, Cmd.RUN, Cmd.LEARN, Cmd.OUTPUTS) and n:
            payload[0] = rng.randrange(0, T + 2) if op == Cmd.EVENTS else rng.randrange(3)
        if op == Cmd.SYNC and n >= 1:
            payload[0] &= 1
        yield h.frame(op, raw=bytes(payload)), "w"
    yield h.frame(Cmd.STATUS), "w"
    yield from read_all()


@cocotb.test()
async def link_matches_emulator(dut):
    cfg = NetConfig.from_dict(json.loads(os.environ["BSNN_CFG"]))
    divisor = int(os.environ["BSNN_DIVISOR"])
    idle_cycles = int(os.environ["BSNN_IDLE"])
    rng = random.Random(int(os.environ["BSNN_SEED"]))
    short = os.environ.get("BSNN_SHORT") == "1"
    emu = EmulatorDevice(cfg, replay_bytes=REPLAY)
    await start_board(dut)
    src, sink = uart_models(dut, divisor)
    byte_ns = 10 * divisor * CLK_NS
    n_writes = n_bytes = cts_waits = 0

    for data, kind in script(cfg, rng, short):
        expect = emu.receive(data)
        cts_waits += await write_line(dut, src, data, byte_ns, rng,
                                      gaps=0.1 if kind == "w" else 0.0)
        if kind == "trunc":
            expect += emu.idle()
        await settle(dut, src, sink, 4 * idle_cycles + 4_000_000 // max(1, divisor))
        got = bytes(sink.read_nowait())
        n_writes += 1
        if os.environ.get("BSNN_VERBOSE"):
            dut._log.info("write %d (%s, %d B): %d B back", n_writes, kind, len(data), len(got))
        n_bytes += len(got)
        if got != expect:
            def frames(b):
                return P.Deframer(rescan=False).feed(b)
            raise AssertionError(f"write {n_writes} ({kind}, {data[:16].hex()}...): board sent "
                                 f"{frames(got)} {got[:80].hex()}, emulator {frames(expect)} "
                                 f"{expect[:80].hex()}")
    dut._log.info("%d writes, %d response bytes identical to the emulator; the host waited "
                  "%d byte times for CTS", n_writes, n_bytes, cts_waits)
    if not short:
        assert cts_waits > 0, "the burst never filled the RX FIFO (flow control untested)"
