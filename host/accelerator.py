"""Host driver: the accelerator as a Python object over any :class:`~host.link.Link`.

The same code drives the emulator, the RTL simulation and a board. The protocol engine is
:class:`host.transport.Transport`: it negotiates the version (v2 if the device speaks it, else
v1), keeps a window of commands in flight under the device's credit (v2), and recovers from
every transport fault by resynchronising and resending (the device replays what it already
executed). Command errors raise :class:`DeviceError`. Samples: :mod:`host.samples`.

:class:`Accelerator` quacks like :class:`golden.core.Core` where training needs it
(``cfg``, ``run_sample``, ``predict``, ``end_epoch``, ``state_dict``, ``load_state_dict``,
``counters``), so ``golden.train.evaluate`` runs on it unchanged; ``run_samples`` is the
pipelined form.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.config import NetConfig
from golden.core import Core

from . import checkpoint as _ckpt
from . import protocol as P
from .checkpoint import CHECKPOINT_FORMAT
from .link.base import Link, LinkError
from .protocol import Cmd, Mem, OutputMask, Reg, Rsp, StatusFlags
from .samples import RunResult, SampleRunner
from .transport import DeviceError, Transport, TransportFault

__all__ = ["Accelerator", "DeviceError", "RunResult", "Status", "CHECKPOINT_FORMAT"]


@dataclass
class Status:
    """Decoded ``STATUS`` block (field names as in ``protocol.STATUS_LAYOUT``, and in v2
    ``STATUS2_LAYOUT``)."""

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
        return {k: self.fields[f"sat_{k}"]
                for k in ("membrane", "trace", "delta", "momentum", "v")}


class Accelerator(SampleRunner):
    """The accelerator behind ``link``.

    ``retries``: resends of one command before :class:`~host.link.LinkError`;
    ``timeout``: seconds to wait for each chunk of an answer (default: the link's);
    ``version``: None (the highest the device speaks), 1 or 2 (refuse a device without it);
    ``window``: at most this many commands in flight (default: the device's).
    Construction synchronises (``SYNC`` with ``NEW_SESSION``); a device that does not answer
    raises :class:`~host.link.LinkTimeout` (a ``TimeoutError``) naming the link.
    """

    def __init__(self, link: Link, *, retries: int = 8, timeout: float | None = None,
                 sync_attempts: int = 3, version: int | None = None,
                 window: int | None = None):
        self.link = link
        self.cfg: NetConfig | None = None
        self._learn = None
        self._outputs = None
        self.tx = Transport(link, retries=retries, timeout=timeout, sync_attempts=sync_attempts,
                            version=version, window=window)
        self.stats = self.tx.stats

    @property
    def version(self) -> int:
        """The protocol version of the session (1 or 2)."""
        return self.tx.version

    @property
    def retries(self) -> int:
        return self.tx.retries

    @property
    def timeout(self) -> float:
        return self.tx.timeout

    def sync(self, new_session: bool = False) -> None:
        """Drain the link up to a fresh barrier (``SYNC``)."""
        self.tx.sync(new_session)

    # --- context manager ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the link."""
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- transport ---------------------------------------------------------------------------
    def _ack(self, op: Cmd, values: dict | None = None, tail: bytes = b"") -> dict:
        term, _ = self.tx.transact(op, P.pack(op, values or {}, tail=tail))
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
        term, _ = self.tx.transact(Cmd.STATUS, expect=Rsp.STATUS, bound=100)
        v, _, _ = P.unpack(Rsp.STATUS, term.payload, version=self.tx.version)
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
                    raise TransportFault("DATA does not match READ_MEM")

            term, _ = self.tx.transact(Cmd.READ_MEM, P.pack(Cmd.READ_MEM, hdr), Rsp.DATA, check,
                                       bound=P.OVERHEAD + P.MAX_PAYLOAD)
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
        (:func:`host.checkpoint.load`; a bad file raises
        :class:`host.checkpoint.CheckpointError`)."""
        return _ckpt.load(path)

    def restore(self, path: str | Path) -> NetConfig:
        """Configure the device from a checkpoint and load its state; return the config."""
        cfg, d = self.read_checkpoint(path)
        if self.cfg != cfg:
            self.configure(cfg, init_weights=False)
        self.load_state_dict(d)
        return cfg

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
