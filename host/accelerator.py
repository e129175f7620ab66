"""Host driver: the accelerator as a Python object over any :class:`~host.link.Link`.

The same code drives the emulator, the RTL simulation and a board. Every command is one
stop-and-wait transaction: send a frame, collect the responses up to the terminal one. A bad
frame in either direction, a transport ``ERROR`` or a silent link makes the host resynchronise
(``SYNC`` with a fresh nonce, discard everything up to its ``ACK``) and resend the *same* frame;
the device recognises a retransmission (same SEQ, OP and CRC as the last command it executed)
and replays its response instead of executing twice. Command errors raise :class:`DeviceError`.

:class:`Accelerator` quacks like :class:`golden.core.Core` where training needs it
(``cfg``, ``run_sample``, ``predict``, ``end_epoch``, ``state_dict``, ``load_state_dict``,
``counters``), so ``golden.train.evaluate`` runs on it unchanged.
"""
from __future__ import annotations

import os
import random
import types
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.config import NetConfig
from golden.core import Core, FlipEvents, SampleResult

from . import checkpoint as _ckpt
from . import protocol as P
from .checkpoint import CHECKPOINT_FORMAT
from .link.base import Link, LinkError, LinkTimeout
from .protocol import Cmd, ErrorCode, EventFlags, Mem, OutputMask, Reg, Rsp, StatusFlags

__all__ = ["Accelerator", "DeviceError", "RunResult", "Status", "CHECKPOINT_FORMAT"]

_GARBAGE_LIMIT = 1 << 16        # bytes of noise tolerated while waiting for one answer
_TRANSPORT_CODES = frozenset(int(c) for c in P.TRANSPORT_ERRORS)


class DeviceError(RuntimeError):
    """The device rejected a command (``ERROR`` with a command code); nothing changed on it."""

    def __init__(self, code: int, op: int, arg: int, link: str):
        try:
            code = ErrorCode(code)
            cname = code.name
        except ValueError:
            cname = f"0x{code:02x}"
        try:
            oname = Cmd(op).name
        except ValueError:
            oname = f"0x{op:02x}"
        super().__init__(f"{link}: {oname} rejected with {cname} (arg={arg})")
        self.code, self.op, self.arg = code, op, arg


class _Transport(Exception):
    """A transport failure inside one attempt (retry)."""


@dataclass
class Status:
    """Decoded ``STATUS`` block (field names as in ``protocol.STATUS_LAYOUT``)."""

    fields: dict

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def flags(self) -> StatusFlags:
        return StatusFlags(self.fields["flags"])

    @property
    def configured(self) -> bool:
        return bool(self.flags & StatusFlags.CONFIGURED)

    @property
    def counters(self) -> dict:
        """Saturation counters, named like ``golden.core.Core.counters``."""
        return {k: self.fields[f"sat_{k}"] for k in ("membrane", "trace", "delta", "momentum", "v")}


@dataclass
class RunResult:
    """What one ``RUN`` reported: events by (t, layer), flips, prediction, the ACK summary."""

    spikes: dict            # (t, layer) -> index array (only when spike reporting is on)
    flips: list             # (t, layer, post, pre) in emission order (when flip reporting is on)
    prediction: int | None  # when the run ended the sample
    scores: np.ndarray | None
    t: int
    step: int
    n_spikes: int
    n_flips: int


class Accelerator:
    """The accelerator behind ``link``.

    ``retries``: resends of one command before :class:`~host.link.LinkError`;
    ``timeout``: seconds to wait for each chunk of an answer (default: the link's).
    Construction synchronises (``SYNC`` with ``NEW_SESSION``); a device that does not answer
    raises :class:`~host.link.LinkTimeout` (a ``TimeoutError``) naming the link.
    """

    def __init__(self, link: Link, *, retries: int = 8, timeout: float | None = None,
                 sync_attempts: int = 3):
        self.link = link
        self.retries = retries
        self.timeout = link.timeout if timeout is None else float(timeout)
        self.sync_attempts = sync_attempts
        self._deframer = P.Deframer(rescan=True)
        self._pending: deque = deque()
        self._seq = 0
        self._nonce = random.Random(os.urandom(8)).getrandbits(32)
        self.stats = {"commands": 0, "retries": 0, "resyncs": 0, "bad_frames": 0,
                      "transport_errors": 0, "timeouts": 0, "stray_frames": 0}
        self.cfg: NetConfig | None = None
        self._learn = None
        self._outputs = None
        self.sync(new_session=True)

    # --- context manager ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the link."""
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- transport ---------------------------------------------------------------------------
    def _next_item(self):
        while not self._pending:
            try:
                data = self.link.recv(self.timeout)
            except LinkTimeout:
                items = self._deframer.idle()
                if not items:
                    raise
                self._pending.extend(items)
                break
            self._pending.extend(self._deframer.feed(data))
        return self._pending.popleft()

    def sync(self, new_session: bool = False) -> None:
        """Drain the link up to a fresh barrier (``SYNC``): afterwards nothing stale is in flight.

        ``new_session`` also makes the device forget its replay state.
        """
        flags = P.SyncFlags.NEW_SESSION if new_session else 0
        for _ in range(self.sync_attempts):
            self.stats["resyncs"] += 1
            self._deframer.reset()
            self._pending.clear()
            self._nonce = (self._nonce + 0x9E3779B9) & 0xFFFFFFFF
            nonce = self._nonce
            self.link.send(P.encode_frame(Cmd.SYNC, 0, P.pack(
                Cmd.SYNC, {"flags": flags, "nonce": nonce})))
            noise = 0
            try:
                while noise < _GARBAGE_LIMIT:
                    g0 = self._deframer.garbage
                    item = self._next_item()
                    noise += self._deframer.garbage - g0
                    if isinstance(item, P.Frame) and item.op == Rsp.ACK:
                        try:
                            v, _, _ = P.unpack(Rsp.ACK, item.payload, ack_of=Cmd.SYNC)
                        except P.ProtocolError:
                            continue
                        if v["nonce"] == nonce:
                            if v["version"] != P.PROTOCOL_VERSION:
                                raise LinkError(f"{self.link.name}: device speaks protocol "
                                                f"version {v['version']}, host "
                                                f"{P.PROTOCOL_VERSION}")
                            return
                    noise += P.OVERHEAD + (len(item.payload) if isinstance(item, P.Frame) else 0)
            except LinkTimeout:
                self.stats["timeouts"] += 1
                continue
        raise LinkTimeout(f"{self.link.name} did not answer: no ACK to SYNC in "
                          f"{self.sync_attempts} attempts of {self.timeout:g} s")

    def _collect(self, seq: int):
        nonterminal = []
        noise = 0
        while True:
            g0 = self._deframer.garbage
            item = self._next_item()
            noise += self._deframer.garbage - g0
            if noise > _GARBAGE_LIMIT:
                raise _Transport("too much noise on the link")
            if isinstance(item, P.FrameError):
                self.stats["bad_frames"] += 1
                raise _Transport(f"bad frame from the device ({item.code.name})")
            if not item.is_response or item.op not in Rsp._value2member_map_:
                self.stats["stray_frames"] += 1        # e.g. our own frames echoed back
                noise += P.OVERHEAD + len(item.payload)
                continue
            rsp = Rsp(item.op)
            if rsp == Rsp.ERROR:
                v, _, _ = P.unpack(Rsp.ERROR, item.payload)
                if v["code"] in _TRANSPORT_CODES:
                    self.stats["transport_errors"] += 1
                    raise _Transport(f"device saw a bad frame ({ErrorCode(v['code']).name})")
                if item.seq == seq:
                    raise DeviceError(v["code"], v["op"], v["arg"], self.link.name)
            if item.seq != seq:
                self.stats["stray_frames"] += 1
                noise += P.OVERHEAD + len(item.payload)
                continue
            if rsp in P.TERMINAL:
                return item, nonterminal
            nonterminal.append(item)

    def _transact(self, op: Cmd, payload: bytes = b"", expect: Rsp = Rsp.ACK, check=None):
        """Run one command to completion; return ``(terminal frame, non-terminal frames)``.

        ``check(terminal, nonterminal)`` may raise ``_Transport`` when the answer is inconsistent
        (the command is then resent and the device replays).
        """
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = P.encode_frame(op, seq, payload)
        self.stats["commands"] += 1
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                self.sync()
            self.link.send(frame)
            try:
                term, rest = self._collect(seq)
                if term.op != expect:
                    raise _Transport(f"{Rsp(term.op).name} answered {op.name}")
                if check is not None:
                    check(term, rest)
                return term, rest
            except LinkTimeout as e:
                self.stats["timeouts"] += 1
                last = e
            except (_Transport, P.ProtocolError) as e:
                last = e
        raise LinkError(f"{self.link.name}: {op.name} failed {self.retries + 1} times; "
                        f"last: {last}")

    def _ack(self, op: Cmd, values: dict | None = None, tail: bytes = b"") -> dict:
        term, _ = self._transact(op, P.pack(op, values or {}, tail=tail))
        v, _, _ = P.unpack(Rsp.ACK, term.payload, ack_of=op)
        return v

    # --- configuration and status --------------------------------------------------------------
    def _need_cfg(self) -> NetConfig:
        if self.cfg is None:
            raise RuntimeError("Accelerator is not configured: call configure(cfg) or restore()")
        return self.cfg

    def configure(self, cfg: NetConfig, init_weights: bool = True) -> None:
        """Send ``cfg`` (resets all device state); with ``init_weights`` load the seeded initial
        weights of ``golden.core.Core(cfg)`` so the device starts where the golden model does."""
        data = P.config_bytes(cfg)
        if len(data) > P.MAX_PAYLOAD:
            raise ValueError(f"config text is {len(data)} bytes > MAX_PAYLOAD={P.MAX_PAYLOAD}")
        v = self._ack(Cmd.WRITE_CONFIG, tail=data)
        if v["config_crc"] != P.config_crc(cfg):
            raise LinkError(f"{self.link.name}: device holds config CRC {v['config_crc']:08x}, "
                            f"sent {P.config_crc(cfg):08x}")
        self.cfg = cfg
        self._learn = False
        self._outputs = OutputMask.ALL
        if init_weights:
            self.load_weights(Core(cfg, "int").w_sign)

    def status(self) -> Status:
        """Read the status block."""
        term, _ = self._transact(Cmd.STATUS, expect=Rsp.STATUS)
        v, _, _ = P.unpack(Rsp.STATUS, term.payload)
        return Status(v)

    @property
    def counters(self) -> dict:
        """Saturation counters (like ``golden.core.Core.counters``; 32-bit on the device)."""
        return self.status().counters

    def set_learn(self, on: bool) -> None:
        """Switch learning on or off (kept across samples)."""
        if self._learn is not bool(on):
            self._ack(Cmd.LEARN, {"on": int(bool(on))})
            self._learn = bool(on)

    def set_outputs(self, spikes: bool = True, flips: bool = True) -> None:
        """Choose which events ``RUN`` reports (the counts in its ACK are always there)."""
        mask = (OutputMask.SPIKES if spikes else 0) | (OutputMask.FLIPS if flips else 0)
        if self._outputs != mask:
            self._ack(Cmd.OUTPUTS, {"mask": int(mask)})
            self._outputs = OutputMask(mask)

    # --- memories ------------------------------------------------------------------------------
    def _write_words(self, mem: Mem, layer: int, words, offset: int = 0) -> None:
        cfg = self._need_cfg()
        words = np.asarray(words, np.int64).ravel()
        fmt = P.mem_format(cfg, mem, offset)
        per = fmt.max_count(P.MAX_PAYLOAD - P.CMD_LAYOUTS[Cmd.WRITE_MEM].fixed_size)
        for k in range(0, words.size, per):
            chunk = words[k:k + per]
            self._ack(Cmd.WRITE_MEM, {"mem": mem, "layer": layer, "offset": offset + k,
                                      "count": chunk.size}, tail=P.encode_elements(fmt, chunk))

    def _read_words(self, mem: Mem, layer: int, offset: int = 0, count: int | None = None):
        cfg = self._need_cfg()
        size = P.mem_size(cfg, mem, layer)
        count = size - offset if count is None else count
        fmt = P.mem_format(cfg, mem, offset)
        per = fmt.max_count(P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.DATA].fixed_size)
        out = []
        for k in range(0, count, per):
            n = min(per, count - k)
            hdr = {"mem": mem, "layer": layer, "offset": offset + k, "count": n}

            def check(term, rest, hdr=hdr, n=n):
                v, _, data = P.unpack(Rsp.DATA, term.payload)
                if v != hdr or len(data) != fmt.data_size(n):
                    raise _Transport("DATA does not match READ_MEM")

            term, _ = self._transact(Cmd.READ_MEM, P.pack(Cmd.READ_MEM, hdr), Rsp.DATA, check)
            _, _, data = P.unpack(Rsp.DATA, term.payload)
            out.append(P.decode_elements(fmt, data, n))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _synapse_words(self, arrays, name):
        cfg = self._need_cfg()
        if len(arrays) != cfg.n_layers:
            raise ValueError(f"{name}: need {cfg.n_layers} layers, got {len(arrays)}")
        for l, a in enumerate(arrays):
            shape = (cfg.layers[l + 1], cfg.layers[l])
            if np.shape(a) != shape:
                raise ValueError(f"{name}[{l}] has shape {np.shape(a)}: expected {shape}")
            yield l, np.asarray(a).T.ravel()       # wire order: pre * n_post + post

    def _synapse_array(self, l, words):
        cfg = self.cfg
        return words.reshape(cfg.layers[l], cfg.layers[l + 1]).T.copy()

    def load_weights(self, w_sign) -> None:
        """Load +-1 weights, one ``(n_post, n_pre)`` array per layer."""
        for l, w in self._synapse_words(w_sign, "weights"):
            if not np.isin(w, (-1, 1)).all():
                raise ValueError(f"weights[{l}] must be +-1")
            self._write_words(Mem.WEIGHT, l, (w > 0).astype(np.int64))

    def read_weights(self) -> list[np.ndarray]:
        """Read the +-1 weights back (int8, ``(n_post, n_pre)`` per layer)."""
        return [(self._synapse_array(l, self._read_words(Mem.WEIGHT, l)) * 2 - 1).astype(np.int8)
                for l in range(self._need_cfg().n_layers)]

    def write_momentum(self, M) -> None:
        """Load momentum, one ``(n_post, n_pre)`` integer array per layer."""
        for l, m in self._synapse_words(M, "momentum"):
            self._write_words(Mem.MOMENTUM, l, m)

    def read_momentum(self) -> list[np.ndarray]:
        """Read momentum back (int64, ``(n_post, n_pre)`` per layer)."""
        return [self._synapse_array(l, self._read_words(Mem.MOMENTUM, l))
                for l in range(self._need_cfg().n_layers)]

    def _per_layer(self, mem, arrays=None):
        cfg = self._need_cfg()
        n = P.mem_layers(cfg, mem)
        if arrays is None:
            return [self._read_words(mem, l) for l in range(n)]
        if len(arrays) != n:
            raise ValueError(f"{mem.name}: need {n} layers, got {len(arrays)}")
        for l, a in enumerate(arrays):
            if np.size(a) != P.mem_size(cfg, mem, l):
                raise ValueError(f"{mem.name}[{l}] has {np.size(a)} words: expected "
                                 f"{P.mem_size(cfg, mem, l)}")
            self._write_words(mem, l, a)

    def read_v(self) -> list[np.ndarray]:
        """Read T-BSO ``V`` (``(T,)`` per layer)."""
        return self._per_layer(Mem.V)

    def write_v(self, V) -> None:
        """Load T-BSO ``V``."""
        self._per_layer(Mem.V, V)

    def read_theta(self) -> list[np.ndarray]:
        """Read thresholds (per hidden layer, membrane LSB)."""
        return self._per_layer(Mem.THETA)

    def write_theta(self, theta) -> None:
        """Load thresholds."""
        self._per_layer(Mem.THETA, theta)

    def read_bias(self) -> list[np.ndarray]:
        """Read biases (per layer, membrane LSB)."""
        return self._per_layer(Mem.BIAS)

    def write_bias(self, bias) -> None:
        """Load biases."""
        self._per_layer(Mem.BIAS, bias)

    def read_regs(self) -> dict:
        """Read the registers: ``step``, ``rate_shift``, ``tbso_gamma_q``, ``gamma`` (list)."""
        w = self._read_words(Mem.REG, 0).tolist()
        g = int(Reg.GAMMA)
        return {"step": w[Reg.STEP], "rate_shift": w[Reg.RATE_SHIFT],
                "tbso_gamma_q": w[Reg.TBSO_GAMMA_Q], "gamma": w[g:]}

    def write_regs(self, regs: dict) -> None:
        """Write the registers (same keys as :meth:`read_regs`)."""
        self._write_words(Mem.REG, 0, [regs["step"], regs["rate_shift"], regs["tbso_gamma_q"],
                                       *regs["gamma"]])

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Learned state read from the device, in ``golden.core.Core.state_dict`` format."""
        cfg = self._need_cfg()
        regs = self.read_regs()
        d = {"step": np.int64(regs["step"]), "rate_shift": np.int64(regs["rate_shift"]),
             "gamma": np.array(regs["gamma"], np.int64),
             "tbso_gamma_q": np.int64(regs["tbso_gamma_q"])}
        ws, ms, vs, bs = self.read_weights(), self.read_momentum(), self.read_v(), self.read_bias()
        for l in range(cfg.n_layers):
            d[f"w{l}"] = np.packbits(ws[l] > 0, axis=1, bitorder="little")
            d[f"M{l}"] = ms[l]
            d[f"V{l}"] = vs[l]
            d[f"bias{l}"] = bs[l]
        for l, th in enumerate(self.read_theta()):
            d[f"theta{l}"] = th
        return d

    def load_state_dict(self, d: dict) -> None:
        """Load what :meth:`state_dict` (or ``golden.core.Core.state_dict``) produced."""
        cfg = self._need_cfg()
        L = cfg.layers
        ws = [(np.unpackbits(np.asarray(d[f"w{l}"]), axis=1, count=L[l], bitorder="little")
               .astype(np.int8) * 2 - 1) for l in range(cfg.n_layers)]
        self.load_weights(ws)
        self.write_momentum([d[f"M{l}"] for l in range(cfg.n_layers)])
        self.write_v([d[f"V{l}"] for l in range(cfg.n_layers)])
        self.write_bias([d[f"bias{l}"] for l in range(cfg.n_layers)])
        self.write_theta([d[f"theta{l}"] for l in range(cfg.n_layers - 1)])
        self.write_regs({"step": int(d["step"]), "rate_shift": int(d["rate_shift"]),
                         "tbso_gamma_q": int(d["tbso_gamma_q"]),
                         "gamma": [int(g) for g in d["gamma"]]})

    def checkpoint(self, path: str | Path, progress: dict | None = None) -> Path:
        """Save the config and the learned state to ``path`` (.npz, bit-exact, atomic; format:
        :mod:`host.checkpoint`). The file loads into ``golden.core.Core.load_state_dict`` too."""
        return _ckpt.save(path, self._need_cfg(), self.state_dict(), progress)

    @staticmethod
    def read_checkpoint(path: str | Path) -> tuple[NetConfig, dict]:
        """Return ``(config, state dict)`` of a checkpoint file, validated
        (:func:`host.checkpoint.load`; a bad file raises :class:`host.checkpoint.CheckpointError`)."""
        return _ckpt.load(path)

    def restore(self, path: str | Path) -> NetConfig:
        """Configure the device from a checkpoint and load its state; return the config."""
        cfg, d = self.read_checkpoint(path)
        if self.cfg != cfg:
            self.configure(cfg, init_weights=False)
        self.load_state_dict(d)
        return cfg

    # --- samples ---------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Start a new sample (clears membranes, traces, scores, t, input slots, label)."""
        self._ack(Cmd.RESET_STATE)

    def set_label(self, label: int) -> None:
        """Set the current sample's label."""
        self._ack(Cmd.LABEL, {"label": int(label)})

    def send_events(self, t: int, spikes) -> None:
        """Load the input spikes of time step ``t`` (a boolean ``(n_in,)`` vector), in the smaller
        of the two encodings (a bitmap, or index lists of at most MAX_BATCH_EVENTS)."""
        cfg = self._need_cfg()
        s = np.asarray(spikes, bool).ravel()
        if s.size != cfg.layers[0]:
            raise ValueError(f"step {t}: {s.size} inputs, expected {cfg.layers[0]}")
        idx = np.flatnonzero(s)
        nb = (s.size + 7) // 8
        room = P.MAX_PAYLOAD - P.CMD_LAYOUTS[Cmd.EVENTS].fixed_size
        if nb <= 2 * idx.size and nb <= room:
            self._ack(Cmd.EVENTS, {"t": t, "flags": EventFlags.BITMAP},
                      tail=np.packbits(s, bitorder="little").tobytes())
            return
        per = min(P.MAX_BATCH_EVENTS, room // 2)
        for k in range(0, max(idx.size, 1), per):
            flags = EventFlags.APPEND if k else 0
            self._ack(Cmd.EVENTS, {"t": t, "flags": flags},
                      tail=idx[k:k + per].astype(">u2").tobytes())

    def run(self, n: int) -> RunResult:
        """Run ``n`` time steps from the current one; return what the device reported."""
        cfg = self._need_cfg()
        outputs = self._outputs

        def check(term, rest):
            v, _, _ = P.unpack(Rsp.ACK, term.payload, ack_of=Cmd.RUN)
            ns = nf = 0
            for f in rest:
                if f.op == Rsp.FLIPS:
                    nf += len(f.payload) // P.RSP_LAYOUTS[Rsp.FLIPS].item_size
                elif f.op == Rsp.SPIKES:
                    sv, _, data = P.unpack(Rsp.SPIKES, f.payload)
                    ns += (int(np.unpackbits(np.frombuffer(data, np.uint8)).sum())
                           if sv["format"] == P.SpikeFormat.BITMAP else len(data) // 2)
            if (outputs & OutputMask.FLIPS and nf != v["flips"]) or \
                    (outputs & OutputMask.SPIKES and ns != v["spikes"]):
                raise _Transport("RUN events do not add up to the ACK's counts")

        term, rest = self._transact(Cmd.RUN, P.pack(Cmd.RUN, {"n": n}), Rsp.ACK, check)
        v, _, _ = P.unpack(Rsp.ACK, term.payload, ack_of=Cmd.RUN)
        spikes, flips, pred, scores = {}, [], None, None
        sb = P.score_bytes(cfg)
        for f in rest:
            if f.op == Rsp.SPIKES:
                sv, _, data = P.unpack(Rsp.SPIKES, f.payload)
                n_post = cfg.layers[sv["layer"] + 1]
                if sv["format"] == P.SpikeFormat.BITMAP:
                    idx = np.flatnonzero(np.unpackbits(np.frombuffer(data, np.uint8),
                                                       count=n_post, bitorder="little"))
                else:
                    idx = np.frombuffer(data, ">u2").astype(np.int64)
                key = (sv["t"], sv["layer"])
                spikes[key] = np.concatenate([spikes[key], idx]) if key in spikes else idx
            elif f.op == Rsp.FLIPS:
                _, items, _ = P.unpack(Rsp.FLIPS, f.payload)
                flips.extend(items)
            elif f.op == Rsp.PREDICTION:
                pv, _, data = P.unpack(Rsp.PREDICTION, f.payload)
                if scores is None:
                    scores = np.zeros(cfg.layers[-1], np.int64)
                part = np.frombuffer(data, f">i{sb}").astype(np.int64)
                scores[pv["offset"]:pv["offset"] + part.size] = part
                pred = pv["prediction"]
        return RunResult(spikes, flips, pred, scores, v["t"], v["step"], v["spikes"], v["flips"])

    def run_sample(self, events, label: int | None = None, learn: bool = False) -> SampleResult:
        """Run one sample (``events`` (T, n_in) binary) like ``golden.core.Core.run_sample``.

        ``spikes`` is ``None`` when spike reporting is off (:meth:`set_outputs`); with flip
        reporting off, ``flips`` is empty.
        """
        cfg = self._need_cfg()
        events = np.asarray(events)
        if events.shape != (cfg.T, cfg.layers[0]):
            raise ValueError(f"events have shape {events.shape}: expected (T={cfg.T}, "
                             f"n_in={cfg.layers[0]})")
        if learn and label is None:
            raise ValueError("learn=True needs a label")
        self.reset_state()
        self.set_learn(learn)
        if label is not None:
            self.set_label(label)
        for t in range(cfg.T):
            if events[t].any():
                self.send_events(t, events[t])
        r = self.run(cfg.T)
        rasters = None
        if self._outputs & OutputMask.SPIKES:
            rasters = [np.zeros((cfg.T, n), bool) for n in cfg.layers[1:-1]]
            for (t, l), idx in r.spikes.items():
                rasters[l][t, idx] = True
        if r.flips:
            a = np.array(r.flips, np.int64)
            fe = FlipEvents(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
        else:
            z = np.zeros(0, np.int64)
            fe = FlipEvents(z, z.copy(), z.copy(), z.copy())
        per_step = np.bincount(fe.t, minlength=cfg.T).astype(np.int64)
        return SampleResult(int(r.prediction), rasters, r.scores, fe, per_step)

    def predict(self, events) -> int:
        """Inference only: the predicted class of one sample."""
        return self.run_sample(events, learn=False).prediction

    def end_epoch(self, epoch: int) -> None:
        """Apply the config's gamma / rate schedule after 0-based ``epoch`` (golden's rule,
        ``golden.core.Core.end_epoch``, run on the device's registers)."""
        cfg = self._need_cfg()
        regs = self.read_regs()
        shim = types.SimpleNamespace(cfg=cfg, rate_shift=regs["rate_shift"],
                                     gamma=list(regs["gamma"]),
                                     tbso_gamma_q=regs["tbso_gamma_q"])
        Core.end_epoch(shim, epoch)
        new = dict(regs, rate_shift=shim.rate_shift, gamma=shim.gamma,
                   tbso_gamma_q=shim.tbso_gamma_q)
        if new != regs:
            self.write_regs(new)
