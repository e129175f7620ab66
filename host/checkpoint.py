"""Checkpoint files: the config and the learned state of a network, versioned, checksummed,
validated on load, written atomically.

A checkpoint is a NumPy ``.npz`` (an uncompressed zip of ``.npy`` arrays, no pickles) holding

* ``format``: the text ``bsnn-accel-checkpoint/2``;
* ``config``: the canonical config text (``host.protocol.config_bytes``: compact JSON, sorted
  keys) of the :class:`golden.config.NetConfig` the state belongs to;
* ``checksum``: SHA-256 (hex) of the format, the config text and every state array's name,
  dtype, shape and bytes, in name order (:func:`checksum`);
* ``progress`` (optional): JSON text of where a training run stands (epoch, samples done,
  shuffle seed, history so far), for ``train --resume``;
* the state of :meth:`golden.core.Core.state_dict` / :meth:`host.accelerator.Accelerator.
  state_dict`: ``step``, ``rate_shift``, ``tbso_gamma_q`` (int64 scalars), ``gamma`` (int64, one
  per layer), and per layer ``l`` ``w{l}`` (uint8, ``(n_post, ceil(n_pre/8))``: the weight signs
  packed little-endian along ``pre``, 1 = +1, padding bits 0), ``M{l}`` (int64 ``(n_post,
  n_pre)``), ``V{l}`` (int64 ``(T,)``), ``bias{l}`` (int64 ``(n_post,)``) and per hidden layer
  ``theta{l}`` (int64 ``(n_post,)``).

Loading checks everything before returning: the file is a zip of arrays with the expected
format, the config is a valid NetConfig, the checksum matches, every array is there with its
dtype and shape, and every value lies in the range the device's memory holds
(``host.protocol.mem_format``: momenta within +-mom_max, V within v_bits, thresholds 1..mem_max,
biases within +-mem_max, the registers within ``golden.config.SCHEDULE_LIMITS`` and the 32-bit
step counter). Any problem is one :class:`CheckpointError` naming the file and what is wrong.
Format 1 files (no checksum, written before this module) load with the same validation.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from golden.config import NetConfig

from . import protocol as P
from .protocol import Mem, Reg

__all__ = ["CHECKPOINT_FORMAT", "FORMATS", "CheckpointError", "save", "load", "checksum",
           "validate_state", "state_spec"]

CHECKPOINT_FORMAT = "bsnn-accel-checkpoint/2"
_FORMAT_1 = "bsnn-accel-checkpoint/1"
FORMATS = (_FORMAT_1, CHECKPOINT_FORMAT)
_META = ("format", "config", "checksum", "progress")
_SCALARS = ("step", "rate_shift", "tbso_gamma_q")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of the wrong kind, or holds an invalid state."""


def state_spec(cfg: NetConfig) -> dict:
    """``name -> (dtype, shape, (lo, hi) or None)`` of every state array of ``cfg``."""
    L = cfg.layers
    i8 = np.dtype(np.int64)

    def rng(mem, addr=0):
        f = P.mem_format(cfg, mem, addr)
        return f.lo, f.hi

    spec = {"step": (i8, (), rng(Mem.REG, Reg.STEP)),
            "rate_shift": (i8, (), rng(Mem.REG, Reg.RATE_SHIFT)),
            "tbso_gamma_q": (i8, (), rng(Mem.REG, Reg.TBSO_GAMMA_Q)),
            "gamma": (i8, (cfg.n_layers,), rng(Mem.REG, Reg.GAMMA))}
    for l in range(cfg.n_layers):
        spec[f"w{l}"] = (np.dtype(np.uint8), (L[l + 1], (L[l] + 7) // 8), None)
        spec[f"M{l}"] = (i8, (L[l + 1], L[l]), rng(Mem.MOMENTUM))
        spec[f"V{l}"] = (i8, (cfg.T,), rng(Mem.V))
        spec[f"bias{l}"] = (i8, (L[l + 1],), rng(Mem.BIAS))
    for l in range(cfg.n_layers - 1):
        spec[f"theta{l}"] = (i8, (L[l + 1],), rng(Mem.THETA))
    return spec


def _problems(cfg: NetConfig, state: dict, exact_dtype: bool = True) -> list[str]:
    """Everything wrong with ``state`` for ``cfg``, as phrases (empty: valid)."""
    spec = state_spec(cfg)
    out = []
    missing = [k for k in spec if k not in state]
    if missing:
        out.append(f"missing array(s) {missing}")
    extra = sorted(set(state) - set(spec))
    if extra:
        out.append(f"unexpected array(s) {extra} (not part of the state of layers "
                   f"{list(cfg.layers)})")
    for name, (dtype, shape, lim) in spec.items():
        if name not in state:
            continue
        a = np.asarray(state[name])
        if exact_dtype and a.dtype != dtype:
            out.append(f"{name} has dtype {a.dtype}, expected {dtype}")
            continue
        if not exact_dtype and a.dtype.kind not in "iu":
            out.append(f"{name} has dtype {a.dtype}, expected an integer type")
            continue
        if a.shape != shape:
            out.append(f"{name} has shape {a.shape}, expected {shape}")
            continue
        if lim is not None and a.size:
            lo, hi = lim
            bad = (a < lo) | (a > hi)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
                out.append(f"{name}{list(idx) if idx else ''} = {int(a[idx])} is out of range "
                           f"{lo}..{hi} ({int(bad.sum())} value(s) outside)")
        elif lim is None:               # packed weight signs: the padding bits must be 0
            n_pre = cfg.layers[int(name[1:])]
            pad = (-n_pre) % 8
            if pad and (a[:, -1] >> (8 - pad)).any():
                out.append(f"{name}: padding bits beyond n_pre={n_pre} are not 0")
    return out


def validate_state(cfg: NetConfig, state: dict, where: str = "state") -> None:
    """Raise :class:`CheckpointError` naming every problem of ``state`` for ``cfg``."""
    probs = _problems(cfg, state, exact_dtype=False)
    if probs:
        raise CheckpointError(f"{where}: " + "; ".join(probs))


def _canonical(cfg: NetConfig, state: dict) -> dict:
    """``state`` with each array in the file dtype of :func:`state_spec`."""
    return {k: np.asarray(state[k]).astype(dt, casting="unsafe").reshape(shape)
            for k, (dt, shape, _) in state_spec(cfg).items()}


def checksum(fmt: str, config: str, state: dict, progress: str | None = None) -> str:
    """SHA-256 hex digest of a checkpoint's content (see the module docstring)."""
    h = hashlib.sha256()
    for part in (fmt, config, progress or ""):
        b = part.encode()
        h.update(len(b).to_bytes(8, "little") + b)
    for k in sorted(state):
        a = np.ascontiguousarray(state[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str | os.PathLike, cfg: NetConfig, state: dict,
         progress: dict | None = None) -> Path:
    """Write ``cfg`` and ``state`` (and a training ``progress`` record) to ``path`` atomically:
    to a temporary file in the same folder, renamed over ``path`` once complete (a crash leaves
    the old file or none, never half of one). The state is validated first. Returns the path
    (``.npz`` appended when it has no suffix)."""
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".npz")
    validate_state(cfg, state, str(path))
    st = _canonical(cfg, state)
    config = P.config_bytes(cfg).decode()
    prog = None if progress is None else json.dumps(progress, sort_keys=True)
    meta = {"format": np.array(CHECKPOINT_FORMAT), "config": np.array(config),
            "checksum": np.array(checksum(CHECKPOINT_FORMAT, config, st, prog))}
    if prog is not None:
        meta["progress"] = np.array(prog)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **meta, **st)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _read_text(z, name, path) -> str:
    a = z[name]
    if a.dtype.kind != "U" or a.shape != ():
        raise CheckpointError(f"{path}: '{name}' is not a text entry")
    return str(a)


def load(path: str | os.PathLike, expect: NetConfig | None = None,
         with_progress: bool = False):
    """Read and validate a checkpoint; return ``(config, state)`` (with ``with_progress``:
    ``(config, state, progress or None)``). ``expect``: the config the caller needs (a
    different one is an error naming the fields that differ). Raises :class:`CheckpointError`."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise CheckpointError(f"{where}: file not found")
    if not path.is_file():
        raise CheckpointError(f"{where}: not a file")
    raw = path.read_bytes()
    if not raw:
        raise CheckpointError(f"{where}: the file is empty")
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        kind = "a .npy array" if raw.startswith(b"\x93NUMPY") else (
            "a zip cut short or damaged" if raw.startswith(b"PK") else "not a zip of arrays")
        raise CheckpointError(f"{where}: not a checkpoint ({kind}; a checkpoint is the .npz "
                              f"that train writes)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            files = set(z.files)
            if "format" not in files:
                raise CheckpointError(f"{where}: not a checkpoint (a .npz without a 'format' "
                                      f"entry; it holds {sorted(files)[:8]})")
            fmt = _read_text(z, "format", path)
            if fmt not in FORMATS:
                raise CheckpointError(f"{where}: format {fmt!r} is not supported (this version "
                                      f"reads {', '.join(FORMATS)})")
            if "config" not in files:
                raise CheckpointError(f"{where}: no 'config' entry")
            config = _read_text(z, "config", path)
            prog = _read_text(z, "progress", path) if "progress" in files else None
            state = {k: z[k] for k in files if k not in _META}
            stored = _read_text(z, "checksum", path) if "checksum" in files else None
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{where}: damaged or unreadable ({type(exc).__name__}: {exc})") from None
    if fmt != _FORMAT_1:
        if stored is None:
            raise CheckpointError(f"{where}: no 'checksum' entry (required by {fmt})")
        if checksum(fmt, config, state, prog) != stored:
            raise CheckpointError(f"{where}: checksum mismatch: the content was changed or "
                                  f"damaged after it was written")
    try:
        cfg = NetConfig.from_json(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{where}: invalid config: {exc}") from None
    if expect is not None and cfg != expect:
        a, b = cfg.to_dict(), expect.to_dict()
        diff = [f"{k}={a[k]!r} (expected {b[k]!r})" for k in sorted(a) if a[k] != b[k]]
        raise CheckpointError(f"{where}: written for another config: {', '.join(diff)}")
    probs = _problems(cfg, state, exact_dtype=fmt != _FORMAT_1)
    if probs:
        raise CheckpointError(f"{where}: " + "; ".join(probs))
    if fmt == _FORMAT_1:
        state = _canonical(cfg, state)
    progress = None
    if prog is not None:
        try:
            progress = json.loads(prog)
        except ValueError as exc:
            raise CheckpointError(f"{where}: 'progress' is not JSON ({exc})") from None
    return (cfg, state, progress) if with_progress else (cfg, state)
