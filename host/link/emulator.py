"""The reference device: golden int mode behind the wire protocol, in process.

:class:`EmulatorDevice` deframes, validates, executes and answers exactly as docs/protocol.md
says the RTL board top must. :class:`EmulatorLink` puts it behind the :class:`~host.link.Link`
interface; :class:`EmulatorServer` serves it on a local TCP socket (the shape the RTL
simulation bridge will have).
"""
from __future__ import annotations

import binascii
import copy
import socket
import threading

import numpy as np

from golden.config import NetConfig
from golden.core import Core

from .. import protocol as P
from ..protocol import Cmd, ErrorCode, EventFlags, Mem, OutputMask, Reg, Rsp, StatusFlags
from .base import Link

__all__ = ["EmulatorDevice", "EmulatorLink", "EmulatorServer", "CommandError"]


class CommandError(Exception):
    """Raised inside the device: the command is answered with ``ERROR code`` and changes nothing."""

    def __init__(self, code: ErrorCode, arg: int = 0):
        super().__init__(code, arg)
        self.code = ErrorCode(code)
        self.arg = int(arg) & 0xFFFFFFFF


class EmulatorDevice:
    """golden.core.Core (int mode) behind the protocol.

    ``cfg=None``: a reconfigurable device (any valid ``WRITE_CONFIG``). ``cfg`` given: a
    fixed-config device like the RTL: it powers up configured with that config and answers
    ``CONFIG_MISMATCH`` to any other. After power-up or ``WRITE_CONFIG`` all weight bits are 0
    (-1), momentum, V and biases 0, thresholds and registers from the config, learning off,
    all outputs on, no label.
    """

    def __init__(self, cfg: NetConfig | None = None, *, max_payload: int = P.MAX_PAYLOAD,
                 replay_bytes: int = P.REPLAY_BYTES):
        self.fixed_cfg = cfg
        self.max_payload = max_payload
        self.replay_bytes = replay_bytes
        self.deframer = P.Deframer(max_payload, rescan=False)
        self.stats = {"frames_ok": 0, "crc_errors": 0, "length_errors": 0, "cmd_errors": 0}
        self._replay = None             # ((seq, op, crc), response bytes or None)
        self.cfg = None
        self.core = None
        self.config_crc = 0
        self.slots = None
        self.learn = False
        self.label = None
        self.outputs = OutputMask.ALL
        if cfg is not None:
            self._configure(cfg)

    # --- byte interface ----------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Consume bytes from the line; return the response bytes they cause."""
        out = bytearray()
        for item in self.deframer.feed(data):
            out += self._on_item(item)
        return bytes(out)

    def idle(self) -> bytes:
        """The line went idle (the RTL's inter-byte timeout): answer a partial frame."""
        out = bytearray()
        for item in self.deframer.idle():
            out += self._on_item(item)
        return bytes(out)

    # --- state -------------------------------------------------------------------------------
    def _configure(self, cfg: NetConfig) -> None:
        core = Core(cfg, "int")
        for w in core.w_sign:
            w[...] = -1
        self.cfg = cfg
        self.core = core
        self.config_crc = P.config_crc(cfg)
        self.slots = np.zeros((cfg.T, cfg.layers[0]), bool)
        self.learn = False
        self.label = None
        self.outputs = OutputMask.ALL

    def snapshot(self) -> dict:
        """Deep copy of every piece of model state (not the link statistics), for comparisons."""
        if self.core is None:
            return {"configured": False}
        c = self.core
        return copy.deepcopy({
            "config": P.config_bytes(self.cfg), "state": c.state_dict(), "v": c.v, "a": c.a,
            "score": c.score, "t": c.t, "slots": self.slots, "learn": self.learn,
            "label": self.label, "outputs": int(self.outputs), "counters": c.counters})

    # --- frames ------------------------------------------------------------------------------
    def _frame(self, op, seq, payload=b"") -> bytes:
        return P.encode_frame(op, seq, payload)

    def _error(self, seq, code, op, arg=0) -> bytes:
        return self._frame(Rsp.ERROR, seq or 0,
                           P.pack(Rsp.ERROR, {"code": code, "op": op or 0, "arg": arg}))

    def _on_item(self, item) -> bytes:
        if isinstance(item, P.FrameError):
            key = "crc_errors" if item.code == ErrorCode.CRC else "length_errors"
            self.stats[key] += 1
            return self._error(item.seq, item.code, item.op)
        f = item
        self.stats["frames_ok"] += 1
        if f.op not in Cmd._value2member_map_:
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, ErrorCode.UNKNOWN_OPCODE, f.op, f.op)
        op = Cmd(f.op)
        if op == Cmd.SYNC:
            return self._sync(f)
        key = (f.seq, f.op, f.crc)
        if self._replay is not None and self._replay[0] == key:
            if self._replay[1] is None:
                self.stats["cmd_errors"] += 1
                return self._error(f.seq, ErrorCode.NO_REPLAY, f.op)
            return self._replay[1]
        try:
            try:
                values, _, tail = P.unpack(op, f.payload)
            except P.PayloadLengthError:
                raise CommandError(ErrorCode.BAD_LENGTH, len(f.payload)) from None
            responses = getattr(self, "_cmd_" + op.name.lower())(values, tail)
        except CommandError as e:
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, e.code, f.op, e.arg)
        out = b"".join(self._frame(rop, f.seq, payload) for rop, payload in responses)
        self._replay = (key, out if len(out) <= self.replay_bytes else None)
        return out

    def _sync(self, f) -> bytes:
        try:
            values, _, _ = P.unpack(Cmd.SYNC, f.payload)
        except P.PayloadLengthError:
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, ErrorCode.BAD_LENGTH, f.op, len(f.payload))
        if values["flags"] & ~int(P.SyncFlags.NEW_SESSION):
            self.stats["cmd_errors"] += 1
            return self._error(f.seq, ErrorCode.RANGE, f.op, values["flags"])
        if values["flags"] & P.SyncFlags.NEW_SESSION:
            self._replay = None
        return self._frame(Rsp.ACK, f.seq, P.pack(Rsp.ACK, {
            "nonce": values["nonce"], "version": P.PROTOCOL_VERSION}, ack_of=Cmd.SYNC))

    @staticmethod
    def _ack(cmd, **values):
        return [(Rsp.ACK, P.pack(Rsp.ACK, values, ack_of=cmd))]

    def _need_config(self):
        if self.core is None:
            raise CommandError(ErrorCode.NOT_CONFIGURED)

    # --- commands (validate everything first, then change state) -------------------------------
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
        return [(Rsp.STATUS, P.pack(Rsp.STATUS, values))]

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
        spike_room = self.max_payload - P.RSP_LAYOUTS[Rsp.SPIKES].fixed_size
        flip_room = P.max_items(P.RSP_LAYOUTS[Rsp.FLIPS], self.max_payload)
        for _ in range(n):
            t = c.t
            spikes, flips = c.step_once(self.slots[t], self.label, self.learn)
            for l, s in enumerate(spikes):
                idx = np.flatnonzero(s)
                n_spikes += idx.size
                if self.outputs & OutputMask.SPIKES:
                    out += self._spike_frames(t, l, s, idx, spike_room)
            items = [(t, l, po, pr) for l, post, pre in flips
                     for po, pr in zip(post.tolist(), pre.tolist())]
            n_flips += len(items)
            if self.outputs & OutputMask.FLIPS:
                for k in range(0, len(items), flip_room):
                    out.append((Rsp.FLIPS, P.pack(Rsp.FLIPS, items=items[k:k + flip_room])))
        if c.t == cfg.T:
            sb = P.score_bytes(cfg)
            per = (self.max_payload - P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size) // sb
            pred = int(np.argmax(c.score))
            scores = np.asarray(c.score, np.int64)
            for k in range(0, scores.size, per):
                data = scores[k:k + per].astype(f">i{sb}").tobytes()
                out.append((Rsp.PREDICTION, P.pack(Rsp.PREDICTION,
                                                   {"prediction": pred, "offset": k}, tail=data)))
        return out + self._ack(Cmd.RUN, t=c.t, step=c.step & 0xFFFFFFFF, spikes=n_spikes,
                               flips=n_flips)

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


class EmulatorLink(Link):
    """A :class:`Link` to an in-process :class:`EmulatorDevice`.

    The device answers synchronously while bytes are sent, so :meth:`recv` never waits: when
    nothing is pending it tells the device the line is idle (the RTL's inter-byte timeout) and
    returns what that produced, or times out at once.
    """

    def __init__(self, cfg: NetConfig | None = None, *, device: EmulatorDevice | None = None,
                 name: str = "emulator", **device_kw):
        super().__init__(name, timeout=0.0)
        self.device = device if device is not None else EmulatorDevice(cfg, **device_kw)
        self._rx = bytearray()

    def _send(self, data: bytes) -> None:
        self._rx += self.device.receive(data)

    def _recv(self, timeout: float) -> bytes:
        if not self._rx:
            self._rx += self.device.idle()
        data = bytes(self._rx)
        self._rx.clear()
        return data


class EmulatorServer:
    """Serve an :class:`EmulatorDevice` on ``127.0.0.1:port`` (0: any free port), one client at
    a time, in a daemon thread. A pause longer than ``idle_timeout`` inside a frame is the line
    going idle. Use as a context manager; ``port`` holds the bound port."""

    def __init__(self, cfg: NetConfig | None = None, *, port: int = 0, idle_timeout: float = 0.05,
                 device: EmulatorDevice | None = None):
        self.device = device if device is not None else EmulatorDevice(cfg)
        self.idle_timeout = idle_timeout
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="emulator-server")
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(self.idle_timeout)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        out = self.device.idle()
                    except OSError:
                        break
                    else:
                        if not data:
                            break
                        out = self.device.receive(data)
                    if out:
                        try:
                            conn.sendall(out)
                        except OSError:
                            break

    def close(self):
        """Stop serving and wait for the thread."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
