"""Seeded malformed link traffic with its expected answers (issue 17's fuzz bench).

:class:`FuzzSession` talks to a fixed-config :class:`host.link.emulator.EmulatorDevice` (the
reference device, like the board top) and yields :class:`Exchange` objects: the bytes a host
writes, how the line behaves after them (``"w"``: the line stays busy; ``"trunc"``: it goes
idle, so a partial frame is answered ``TRUNCATED`` or dropped), and the exact bytes the
reference answered. An RTL bench replays the exchanges on the board top and compares every
answer byte for byte; the emulator test just drains them.

Traffic, in a seeded random order: faults (see :data:`FAULTS`: bit flips, truncation, bad CRC,
``TOO_LONG``, garbage between frames, unknown opcodes, wrong lengths, out-of-range fields,
bad configs, retransmissions, wrong SEQ in a v2 session) and, between them, valid traffic that
changes state (memory writes, short learning samples) or only reads it (the probes).

The session checks two things on the reference itself and raises :class:`FuzzFailure`,
naming the exchange, when one fails:

* **a fault changes nothing**: the device's model state (:meth:`EmulatorDevice.snapshot`:
  config, weights, momenta, V, thresholds, biases, registers, membranes, traces, scores, step,
  input slots, label, learn flag, output mask, the core's counters) is equal before and after;
* **the device still works**: the valid probe right after each fault (a ``READ_MEM`` of a
  random range, or ``STATUS``) gets its answer (``DATA`` or ``STATUS``), not an ``ERROR`` —
  with the state unchanged it is the answer the device gave before the fault.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np

from golden.config import NetConfig
from host import protocol as P
from host.link.emulator import EmulatorDevice
from host.protocol import Cmd, EventFlags, Mem, Rsp

__all__ = ["Exchange", "FuzzFailure", "FuzzSession", "FAULTS"]

#: fault name -> relative weight in the random mix
FAULTS = {"flip": 4, "truncate": 3, "crc": 2, "too_long": 1, "garbage": 2, "opcode": 2,
          "length": 3, "range": 5, "config": 1, "replay": 2, "sequence": 2}


class FuzzFailure(AssertionError):
    """The reference device broke a fuzz invariant (message: which exchange, what differed)."""


@dataclass(frozen=True)
class Exchange:
    data: bytes          # what the host writes
    kind: str            # "w" (line stays busy) or "trunc" (line idle afterwards)
    expect: bytes        # what the reference device answered (idle flush included)
    what: str            # "probe", "valid", or the fault's name


class FuzzSession:
    """Fuzz traffic for a fixed-config device speaking ``version`` (1 or 2; the board top is 1).

    ``replay_bytes`` must be the device's (the RTL's) replay store. ``samples``: the share of
    valid exchanges that run a short learning sample (they cost simulated time).
    """

    def __init__(self, cfg: NetConfig, seed: int, *, version: int = 1,
                 replay_bytes: int = P.REPLAY_BYTES, samples: float = 0.05):
        if version not in P.VERSIONS:
            raise ValueError(f"version {version}: allowed {P.VERSIONS}")
        self.cfg, self.version, self.samples = cfg, version, samples
        self.rng = random.Random(seed)
        self.npr = np.random.default_rng(seed)
        self.dev = EmulatorDevice(cfg, replay_bytes=replay_bytes,
                                  versions=(1,) if version == 1 else (1, 2))
        self.seq = 0
        self.last_probe = None           # the last probe frame the device executed
        self.counts = {k: 0 for k in FAULTS} | {"probe": 0, "valid": 0}
        self.n = 0

    # --- frames ------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def frame(self, op, values=None, tail=b"", *, raw=None, seq=None) -> bytes:
        payload = raw if raw is not None else P.pack(op, values or {}, tail=tail)
        return P.encode_frame(op, self._next_seq() if seq is None else seq, payload)

    def _send(self, data: bytes, kind: str, what: str) -> Exchange:
        out = self.dev.receive(data)
        if kind == "trunc":
            out += self.dev.idle()
        if self.version == 2:                 # the host follows the device's next SEQ
            self.seq = (self.dev.next_seq - 1) & 0xFF
        self.n += 1
        self.counts[what] = self.counts.get(what, 0) + 1
        return Exchange(data, kind, out, what)

    # --- valid traffic -----------------------------------------------------------------------
    def _mem_hdr(self, mem, layer, offset, count):
        return {"mem": mem, "layer": layer, "offset": offset, "count": count}

    def _random_range(self, mem=None):
        cfg = self.cfg
        mem = self.rng.choice([m for m in Mem if m != Mem.V or cfg.optimizer == "tbso"]) \
            if mem is None else mem
        layer = self.rng.randrange(P.mem_layers(cfg, mem))
        size = P.mem_size(cfg, mem, layer)
        step = 8 if mem == Mem.WEIGHT else 1
        offset = self.rng.randrange(0, size, step)
        count = self.rng.randint(1, min(16, size - offset))
        if mem == Mem.WEIGHT:
            count = min(size - offset, max(8, count & ~7))
        return mem, layer, offset, count

    def probe(self) -> bytes:
        if self.rng.random() < 0.2:
            return self.frame(Cmd.STATUS)
        mem, layer, offset, count = self._random_range()
        return self.frame(Cmd.READ_MEM, self._mem_hdr(mem, layer, offset, count))

    def valid(self) -> list[bytes]:
        """A state-changing valid transaction: a memory write, or a short learning sample."""
        cfg, rng = self.cfg, self.rng
        if rng.random() >= self.samples:
            mem, layer, offset, count = self._random_range(rng.choice([Mem.MOMENTUM, Mem.BIAS,
                                                                       Mem.WEIGHT]))
            words = []
            for a in range(offset, offset + count):
                f = P.mem_format(cfg, mem, a)
                lo, hi = f.lo, min(f.hi, 1 << 20)
                if mem == Mem.BIAS:
                    one = cfg.derived().one_spike
                    lo, hi = max(lo, -one), min(hi, one)
                words.append(rng.randint(lo, hi))
            return [self.frame(Cmd.WRITE_MEM, self._mem_hdr(mem, layer, offset, count),
                               P.encode_elements(P.mem_format(cfg, mem, offset), words))]
        frames = [self.frame(Cmd.RESET_STATE), self.frame(Cmd.LEARN, {"on": 1}),
                  self.frame(Cmd.LABEL, {"label": rng.randrange(cfg.layers[-1])})]
        for t in range(cfg.T):
            ev = self.npr.random(cfg.layers[0]) < 0.3
            frames.append(self.frame(Cmd.EVENTS, {"t": t, "flags": EventFlags.BITMAP},
                                     np.packbits(ev, bitorder="little").tobytes()))
        frames.append(self.frame(Cmd.RUN, {"n": cfg.T}))
        return frames

    # --- faults ------------------------------------------------------------------------------
    def fault(self, name: str) -> tuple[bytes, str]:
        """The bytes of one fault and the line's behaviour after them."""
        rng, cfg = self.rng, self.cfg
        L, T, n_in, n_out = cfg.n_layers, cfg.T, cfg.layers[0], cfg.layers[-1]
        if name in ("flip", "truncate", "crc"):      # a damaged good frame
            good = self.probe() if rng.random() < 0.5 else self.valid()[0]
        if name == "flip":                   # 1-3 bit errors after the sync word: CRC finds them
            b = bytearray(good)
            for bit in rng.sample(range(16, 8 * len(b)), rng.randint(1, 3)):    # distinct bits
                b[bit // 8] ^= 1 << (bit % 8)
            return bytes(b), "trunc"
        if name == "truncate":
            return good[:rng.randrange(1, len(good))], "trunc"
        if name == "crc":
            b = bytearray(good)
            b[-rng.randint(1, 2)] ^= rng.randint(1, 255)
            return bytes(b), "w"
        if name == "too_long":
            n = rng.randint(P.MAX_PAYLOAD + 1, 0xFFFF)
            return (b"\xA5\x5A" + bytes([rng.choice(list(Cmd)), self._next_seq()])
                    + n.to_bytes(2, "big") + bytes(rng.randrange(256) for _ in range(8))), "trunc"
        if name == "garbage":
            junk = bytes(rng.choice([0x00, 0xFF, 0xA5, 0x5A, rng.randrange(256)])
                         for _ in range(rng.randint(1, 12)))
            return junk, "trunc"
        if name == "opcode":
            op = rng.choice([0x00, 0x0D, 0x2A, 0x7F, 0x80, 0x81, 0x87, 0xFF])
            return self.frame(op, raw=bytes(rng.randrange(256) for _ in range(rng.randrange(6)))), "w"
        if name == "length":
            op = rng.choice([Cmd.STATUS, Cmd.RESET_STATE, Cmd.LABEL, Cmd.LEARN, Cmd.RUN,
                             Cmd.OUTPUTS, Cmd.READ_MEM, Cmd.SYNC, Cmd.WRITE_MEM, Cmd.EVENTS])
            size = P.CMD_LAYOUTS[op].fixed_size
            n = rng.choice([k for k in range(0, size + 4) if k != size
                            and not (op == Cmd.SYNC and k == P.SYNC2_SIZE)
                            and not (op in (Cmd.WRITE_MEM, Cmd.EVENTS) and k >= size)])
            return self.frame(op, raw=bytes(rng.randrange(256) for _ in range(n))), "w"
        if name == "range":
            return self._out_of_range(L, T, n_in, n_out), "w"
        if name == "config":
            bad = rng.choice([b"", b"{", b"[1, 2]", b'{"layers": [16.5, 8, 4]}', bytes([0xFF]) * 5,
                              json.dumps(cfg.to_dict() | {"theta": "8"}).encode(),
                              json.dumps(cfg.to_dict() | {"T": 4.5}).encode(),
                              json.dumps(cfg.to_dict() | {"T": True}).encode(),
                              json.dumps(cfg.to_dict() | {"leak_shift": 1.5}).encode(),
                              P.config_bytes(cfg.replace(T=cfg.T + 1))])
            return self.frame(Cmd.WRITE_CONFIG, raw=bad), "w"
        if name == "replay" and self.last_probe is not None:
            return self.last_probe, "w"
        if name == "sequence" and self.version == 2:
            seq = (self.seq + rng.randint(2, 100)) & 0xFF
            return self.frame(Cmd.STATUS, seq=seq), "w"
        return self.frame(0x55, raw=b"\x01"), "w"          # fallback: an unknown opcode

    def _out_of_range(self, L, T, n_in, n_out) -> bytes:
        rng, cfg, d = self.rng, self.cfg, self.cfg.derived()
        hdr = self._mem_hdr
        big = P.mem_size(cfg, Mem.MOMENTUM, 0)
        choices = [
            lambda: self.frame(Cmd.READ_MEM, hdr(rng.randint(6, 255), 0, 0, 1)),
            lambda: self.frame(Cmd.READ_MEM, hdr(Mem.BIAS, rng.randint(L, 255), 0, 1)),
            lambda: self.frame(Cmd.READ_MEM, hdr(Mem.BIAS, 0, 0, 0)),
            lambda: self.frame(Cmd.READ_MEM, hdr(Mem.BIAS, 0, cfg.layers[1]
                                                 + rng.randrange(1000), 1)),
            lambda: self.frame(Cmd.READ_MEM, hdr(Mem.WEIGHT, 0, rng.choice([1, 4, 7]), 8)),
            lambda: self.frame(Cmd.READ_MEM, hdr(Mem.MOMENTUM, 0, 0, min(big, 0xFFFF))),
            lambda: self.frame(Cmd.WRITE_MEM, hdr(Mem.MOMENTUM, 0, 0, 2), P.encode_elements(
                P.mem_format(cfg, Mem.MOMENTUM), [0, -d.mom_max - 1])),
            lambda: self.frame(Cmd.WRITE_MEM, hdr(Mem.THETA, 0, 0, 1), P.encode_elements(
                P.mem_format(cfg, Mem.THETA), [rng.randint(-5, 0)])),
            lambda: self.frame(Cmd.WRITE_MEM, hdr(Mem.WEIGHT, 0, 0, 3), tail=b"\x0F"),
            lambda: self.frame(Cmd.EVENTS, {"t": 0, "flags": rng.choice([4, 8, 0x80])}),
            lambda: self.frame(Cmd.EVENTS, {"t": T + rng.randrange(10), "flags": 0},
                               tail=b"\x00\x01"),
            lambda: self.frame(Cmd.EVENTS, {"t": 0, "flags": 0},
                               tail=np.array([n_in + rng.randrange(100)], ">u2").tobytes()),
            lambda: self.frame(Cmd.EVENTS, {"t": 0, "flags": EventFlags.BITMAP}, tail=b"\x00"),
            lambda: self.frame(Cmd.EVENTS, {"t": 0, "flags": 0}, tail=b"\x00"),
            lambda: self.frame(Cmd.LABEL, {"label": n_out + rng.randrange(200)}),
            lambda: self.frame(Cmd.LEARN, {"on": rng.randint(2, 255)}),
            lambda: self.frame(Cmd.OUTPUTS, {"mask": rng.randint(4, 255)}),
            lambda: self.frame(Cmd.RUN, {"n": rng.choice([0, T + 1, 255])}),
            lambda: self.frame(Cmd.SYNC, {"flags": rng.randint(2, 255), "nonce": 1}, seq=0),
        ]
        return rng.choice(choices)()

    # --- the session -------------------------------------------------------------------------
    def start(self) -> list[Exchange]:
        if self.version == 1:
            f = self.frame(Cmd.SYNC, {"flags": P.SyncFlags.NEW_SESSION, "nonce": 0x1234}, seq=0)
        else:
            f = P.encode_frame(Cmd.SYNC, 0, P.pack(Cmd.SYNC, {
                "flags": P.SyncFlags.NEW_SESSION, "nonce": 0x1234, "version": 2,
                "next_seq": 1}, version=P.VERSION_2))
            self.seq = 0
        return [self._send(f, "w", "valid")]

    def _check_probe(self, ex: Exchange, where: str):
        frames = P.Deframer(rescan=False).feed(ex.expect)
        ops = [getattr(f, "op", None) for f in frames]
        if ops not in ([Rsp.DATA], [Rsp.STATUS]):
            raise FuzzFailure(f"{where}: the probe {ex.data.hex()} got {frames}")

    def exchanges(self, n_faults: int):
        """Yield the exchanges of ``n_faults`` faults, each followed by a probe, with valid
        traffic in between; raise :class:`FuzzFailure` when the reference breaks an invariant."""
        yield from self.start()
        names, weights = zip(*FAULTS.items())
        for i in range(n_faults):
            if self.rng.random() < 0.3:
                for f in self.valid():
                    yield self._send(f, "w", "valid")
            name = self.rng.choices(names, weights)[0]
            before = self.dev.snapshot()
            data, kind = self.fault(name)
            yield self._send(data, kind, name)
            after = self.dev.snapshot()
            if not _equal(before, after):
                raise FuzzFailure(f"fault {i} ({name}, {data.hex()}) changed the device state")
            probe = self.probe()
            ex = self._send(probe, "w", "probe")
            self._check_probe(ex, f"fault {i} ({name}, {data.hex()})")
            self.last_probe = probe
            yield ex


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    return a == b
