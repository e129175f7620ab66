"""The commands of the reference device (:class:`host.link.emulator.EmulatorDevice`).

Each ``_cmd_<name>`` handler validates the whole command first (raising :class:`CommandError`,
answered with ``ERROR`` and changing nothing), then changes state and returns the responses as
``[(Rsp, payload)]``, exactly as docs/protocol.md §3 and §9.4 say.
"""
from __future__ import annotations

import binascii

import numpy as np

from golden.config import NetConfig

from .. import protocol as P
from ..protocol import (Cmd, ErrorCode, EventFlags, Mem, OutputMask, Reg, Rsp, SampleFlags,
                        StatusFlags)

__all__ = ["CommandError", "DeviceCommands"]

_LEARN, _SPIKES, _FLIPS, _SCORES, _KEEP_STATE, _CONTINUE = (
    int(SampleFlags.LEARN), int(SampleFlags.SPIKES), int(SampleFlags.FLIPS),
    int(SampleFlags.SCORES), int(SampleFlags.KEEP_STATE), int(SampleFlags.CONTINUE))


class CommandError(Exception):
    """Raised inside the device: the command is answered with ``ERROR code``, changes nothing."""

    def __init__(self, code: ErrorCode, arg: int = 0):
        super().__init__(code, arg)
        self.code = ErrorCode(code)
        self.arg = int(arg) & 0xFFFFFFFF


class DeviceCommands:
    """Mixin: the command handlers over ``self.core``, ``self.cfg``, ``self.slots`` & co."""

    @staticmethod
    def _ack(cmd, **values):
        return [(Rsp.ACK, P.pack(Rsp.ACK, values, ack_of=cmd))]

    def _need_config(self):
        if self.core is None:
            raise CommandError(ErrorCode.NOT_CONFIGURED)

    def _cmd_status(self, v, tail):
        flags = StatusFlags(0)
        if self.core is not None:
            flags |= StatusFlags.CONFIGURED
            if self.learn:
                flags |= StatusFlags.LEARN
            if self.label is not None:
                flags |= StatusFlags.LABEL_VALID
        if self._replay is not None:
            flags |= StatusFlags.REPLAY_VALID
        if self.fixed_cfg is not None:
            flags |= StatusFlags.FIXED_CONFIG
        c = self.core
        sat = c.counters if c is not None else {}
        m32 = 0xFFFFFFFF
        values = {
            "version": P.PROTOCOL_VERSION, "flags": flags,
            "outputs": int(self.outputs), "reserved": 0,
            "t": c.t if c is not None else 0,
            "label": self.label if self.label is not None else 0,
            "step": (c.step & m32) if c is not None else 0, "config_crc": self.config_crc,
            "max_payload": self.max_payload, "max_batch": P.MAX_BATCH_EVENTS,
            "replay_bytes": self.replay_bytes,
            **{f"sat_{k}": sat.get(k, 0) & m32
               for k in ("membrane", "trace", "delta", "momentum", "v")},
            **{k: n & m32 for k, n in self.stats.items()},
        }
        if self.session >= P.VERSION_2:
            values.update(version=P.VERSION_2, window=self.window, credit=self.credit,
                          next_seq=self.next_seq or 0)
        return [(Rsp.STATUS, P.pack(Rsp.STATUS, values, version=self.session))]

    def _cmd_write_config(self, v, tail):
        if self.fixed_cfg is not None:
            crc = binascii.crc32(tail) & 0xFFFFFFFF
            if crc != P.config_crc(self.fixed_cfg):
                raise CommandError(ErrorCode.CONFIG_MISMATCH, crc)
            cfg = self.fixed_cfg
        else:
            try:
                cfg = NetConfig.from_json(tail.decode())
            except Exception:
                raise CommandError(ErrorCode.BAD_CONFIG) from None
        self._configure(cfg)
        return self._ack(Cmd.WRITE_CONFIG, config_crc=self.config_crc)

    def _mem_check(self, v):
        self._need_config()
        mem, layer, offset, count = v["mem"], v["layer"], v["offset"], v["count"]
        if mem not in Mem._value2member_map_:
            raise CommandError(ErrorCode.ADDRESS, mem)
        mem = Mem(mem)
        size = P.mem_size(self.cfg, mem, layer)
        if size == 0:
            raise CommandError(ErrorCode.ADDRESS, layer)
        if count == 0:
            raise CommandError(ErrorCode.RANGE, 0)
        if offset + count > size or (mem == Mem.WEIGHT and offset % 8):
            raise CommandError(ErrorCode.ADDRESS, offset)
        return mem, layer, offset, count

    def _cells(self, mem, layer, offset, count):
        """(array, index) of the words ``offset .. offset+count`` of ``mem``/``layer``."""
        c = self.core
        e = np.arange(offset, offset + count)
        if mem in (Mem.WEIGHT, Mem.MOMENTUM):
            n_post = self.cfg.layers[layer + 1]
            arr = c.w_sign[layer] if mem == Mem.WEIGHT else c.M[layer]
            return arr, (e % n_post, e // n_post)
        arr = {Mem.V: c.V, Mem.THETA: c.theta, Mem.BIAS: c.bias}[mem][layer]
        return arr, e

    def _regs(self) -> list[int]:
        c = self.core
        return [c.step & 0xFFFFFFFF, c.rate_shift, c.tbso_gamma_q, *c.gamma]

    def _cmd_write_mem(self, v, data):
        mem, layer, offset, count = self._mem_check(v)
        fmts = ([P.mem_format(self.cfg, mem, a) for a in range(offset, offset + count)]
                if mem == Mem.REG else None)
        fmt = P.mem_format(self.cfg, mem, offset)
        if len(data) != fmt.data_size(count):
            raise CommandError(ErrorCode.BAD_LENGTH, len(data))
        words = P.decode_elements(fmt, data, count)
        if fmt.packed and count % 8 and data[-1] >> (count % 8):
            raise CommandError(ErrorCode.RANGE, data[-1])
        for k, w in enumerate(words.tolist()):
            f = fmts[k] if fmts else fmt
            if not f.lo <= w <= f.hi:
                raise CommandError(ErrorCode.RANGE, w)
        c = self.core
        if mem == Mem.REG:
            for a, w in zip(range(offset, offset + count), words.tolist()):
                if a == Reg.STEP:
                    c.step = w
                elif a == Reg.RATE_SHIFT:
                    c.rate_shift = w
                elif a == Reg.TBSO_GAMMA_Q:
                    c.tbso_gamma_q = w
                else:
                    c.gamma[a - Reg.GAMMA] = w
        else:
            arr, ix = self._cells(mem, layer, offset, count)
            arr[ix] = words * 2 - 1 if mem == Mem.WEIGHT else words
        return self._ack(Cmd.WRITE_MEM)

    def _cmd_read_mem(self, v, tail):
        mem, layer, offset, count = self._mem_check(v)
        fmt = P.mem_format(self.cfg, mem, offset)
        room = self.max_payload - P.RSP_LAYOUTS[Rsp.DATA].fixed_size
        if fmt.data_size(count) > room:
            raise CommandError(ErrorCode.OVERSIZE, count)
        if mem == Mem.REG:
            words = np.array(self._regs()[offset:offset + count], np.int64)
        else:
            arr, ix = self._cells(mem, layer, offset, count)
            words = np.asarray(arr[ix], np.int64)
            if mem == Mem.WEIGHT:
                words = (words > 0).astype(np.int64)
        data = P.encode_elements(fmt, words)
        return [(Rsp.DATA, P.pack(Rsp.DATA, v, tail=data))]

    def _cmd_reset_state(self, v, tail):
        self._need_config()
        self.core.reset_sample()
        self.slots[...] = False
        self.label = None
        return self._ack(Cmd.RESET_STATE)

    def _cmd_events(self, v, data):
        self._need_config()
        t, flags = v["t"], v["flags"]
        n_in = self.cfg.layers[0]
        if flags & ~int(EventFlags.APPEND | EventFlags.BITMAP):
            raise CommandError(ErrorCode.RANGE, flags)
        if flags & EventFlags.BITMAP:
            if len(data) != (n_in + 7) // 8:
                raise CommandError(ErrorCode.BAD_LENGTH, len(data))
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            if bits[n_in:].any():
                raise CommandError(ErrorCode.ADDRESS, int(np.flatnonzero(bits)[-1]))
            idx = np.flatnonzero(bits[:n_in])
        else:
            if len(data) % 2:
                raise CommandError(ErrorCode.BAD_LENGTH, len(data))
            if len(data) // 2 > P.MAX_BATCH_EVENTS:
                raise CommandError(ErrorCode.OVERSIZE, len(data) // 2)
            idx = np.frombuffer(data, ">u2").astype(np.int64)
            if idx.size and idx.max() >= n_in:
                raise CommandError(ErrorCode.ADDRESS, int(idx.max()))
        if t >= self.cfg.T:
            raise CommandError(ErrorCode.ADDRESS, t)
        if not flags & EventFlags.APPEND:
            self.slots[t] = False
        self.slots[t, idx] = True
        return self._ack(Cmd.EVENTS, t=t, active=int(self.slots[t].sum()))

    def _cmd_label(self, v, tail):
        self._need_config()
        if v["label"] >= self.cfg.layers[-1]:
            raise CommandError(ErrorCode.ADDRESS, v["label"])
        self.label = v["label"]
        return self._ack(Cmd.LABEL)

    def _cmd_learn(self, v, tail):
        self._need_config()
        if v["on"] > 1:
            raise CommandError(ErrorCode.RANGE, v["on"])
        self.learn = bool(v["on"])
        return self._ack(Cmd.LEARN)

    def _cmd_outputs(self, v, tail):
        self._need_config()
        if v["mask"] & ~int(OutputMask.ALL):
            raise CommandError(ErrorCode.RANGE, v["mask"])
        self.outputs = OutputMask(v["mask"])
        return self._ack(Cmd.OUTPUTS)

    def _cmd_run(self, v, tail):
        self._need_config()
        n, c, cfg = v["n"], self.core, self.cfg
        if n == 0 or c.t + n > cfg.T:
            raise CommandError(ErrorCode.RANGE, n)
        if self.learn and self.label is None:
            raise CommandError(ErrorCode.NO_LABEL)
        out = []
        n_spikes = n_flips = 0
        for _ in range(n):
            ns, nf = self._step(out, self.learn, self.outputs & OutputMask.SPIKES,
                                self.outputs & OutputMask.FLIPS)
            n_spikes += ns
            n_flips += nf
        if c.t == cfg.T:
            out += self._prediction_frames()
        return out + self._ack(Cmd.RUN, t=c.t, step=c.step & 0xFFFFFFFF, spikes=n_spikes,
                               flips=n_flips)

    def _step(self, out, learn, spikes_on, flips_on):
        """Run step ``core.t`` on its slot, append the reports to ``out``; return the numbers
        of spikes and flips it produced (reported or not)."""
        c = self.core
        t = c.t
        spikes, flips = c.step_once(self.slots[t], self.label, learn)
        n_spikes = 0
        for l, s in enumerate(spikes):
            if not spikes_on:
                n_spikes += int(np.count_nonzero(s))
                continue
            idx = np.flatnonzero(s)
            n_spikes += idx.size
            out += self._spike_frames(t, l, s, idx,
                                      self.max_payload - P.RSP_LAYOUTS[Rsp.SPIKES].fixed_size)
        if not flips_on:
            return n_spikes, sum(int(post.size) for _, post, _ in flips)
        items = [(t, l, po, pr) for l, post, pre in flips
                 for po, pr in zip(post.tolist(), pre.tolist())]
        room = P.max_items(P.RSP_LAYOUTS[Rsp.FLIPS], self.max_payload)
        for k in range(0, len(items), room):
            out.append((Rsp.FLIPS, P.pack(Rsp.FLIPS, items=items[k:k + room])))
        return n_spikes, len(items)

    def _prediction_frames(self):
        cfg, c = self.cfg, self.core
        sb = P.score_bytes(cfg)
        per = (self.max_payload - P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size) // sb
        pred = int(np.argmax(c.score))
        scores = np.asarray(c.score, np.int64)
        return [(Rsp.PREDICTION, P.pack(Rsp.PREDICTION, {"prediction": pred, "offset": k},
                                        tail=scores[k:k + per].astype(f">i{sb}").tobytes()))
                for k in range(0, scores.size, per)]

    def _cmd_sample(self, v, tail):
        """docs/protocol.md §9.4: checks in the documented order, then the v1 composition."""
        self._need_config()
        cfg, c = self.cfg, self.core
        flags, label, t0 = v["flags"], v["label"], v["t0"]
        if flags & ~int(SampleFlags.ALL):
            raise CommandError(ErrorCode.RANGE, flags)
        if label != P.NO_LABEL and label >= cfg.layers[-1]:
            raise CommandError(ErrorCode.ADDRESS, label)
        if flags & SampleFlags.LEARN and label == P.NO_LABEL:
            raise CommandError(ErrorCode.NO_LABEL)
        flags = int(flags)                     # plain ints: IntFlag arithmetic is slow
        cont = bool(flags & _CONTINUE)
        if t0 != (c.t if cont else 0):
            raise CommandError(ErrorCode.RANGE, t0)
        try:
            records = P.decode_steps(tail, cfg.layers[0], cfg.T, t0,
                                     payload_len=len(tail) + 4)
        except P.StepError as e:
            raise CommandError(e.code, e.arg) from None
        if not cont:
            if flags & _KEEP_STATE:                 # golden.stream.run_window
                c.t = 0
                c.score = c.ar.zeros(cfg.layers[-1])
            else:
                c.reset_sample()
            self.slots[...] = False
            self._clear_sample()
        self.label = None if label == P.NO_LABEL else label
        acc = self._sample
        out = []
        learn, spikes_on, flips_on = (bool(flags & _LEARN), bool(flags & _SPIKES),
                                      bool(flags & _FLIPS))
        slots = self.slots
        for t, idx, more in records:
            if not self._open_step:
                slots[t] = False
            slots[t, idx] = True
            self._open_step = more
            if not more:
                ns, nf = self._step(out, learn, spikes_on, flips_on)
                acc["spikes"] += ns
                acc["flips"] += nf
                acc["step_flips"][t] += nf
        if c.t < cfg.T:
            return out + self._ack(Cmd.SAMPLE, t=c.t)
        if flags & _SCORES:
            out += self._prediction_frames()
        m32 = 0xFFFFFFFF
        out.append((Rsp.RESULT, P.pack(Rsp.RESULT, {
            "prediction": int(np.argmax(c.score)), "t": c.t, "step": c.step & m32,
            "spikes": acc["spikes"] & m32, "flips": acc["flips"] & m32},
            items=[(n & m32,) for n in acc["step_flips"]])))
        return out

    @staticmethod
    def _spike_frames(t, layer, s, idx, room):
        """SPIKES frames: the smaller of bitmap and index list (a tie goes to the bitmap)."""
        nb = (s.size + 7) // 8
        if nb <= 2 * idx.size and nb <= room:
            data = np.packbits(s, bitorder="little").tobytes()
            return [(Rsp.SPIKES, P.pack(Rsp.SPIKES, {"t": t, "layer": layer,
                                                     "format": P.SpikeFormat.BITMAP}, tail=data))]
        per = room // 2
        chunks = [idx[k:k + per] for k in range(0, idx.size, per)] or [idx]
        return [(Rsp.SPIKES, P.pack(Rsp.SPIKES, {"t": t, "layer": layer,
                                                 "format": P.SpikeFormat.INDICES},
                                    tail=ch.astype(">u2").tobytes())) for ch in chunks]
