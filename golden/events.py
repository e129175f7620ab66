"""Event-camera data: readers for the formats users already have, and binning into time steps.

Contract
--------
**In-memory representation.** Every reader returns, and every function here accepts, a 1-D NumPy
structured array in the Tonic layout with (at least) the fields

* ``x`` -- column, ``uint16``;
* ``y`` -- row, ``uint16``;
* ``t`` -- timestamp in microseconds, ``int64``;
* ``p`` -- polarity, ``uint8``: 1 = ON (brightness increase), 0 = OFF.

:data:`EVENT_DTYPE` is that dtype. :func:`from_structured` validates any Tonic-style structured
array (fields in any order, extra fields ignored, ``p`` may be ``bool`` or an integer 0/1, a field
may be reachable by its title, as in the arrays of the ``aedat`` package) and returns a fresh
array of :data:`EVENT_DTYPE`. Readers do not sort: ``t`` is whatever order the file holds.

**Readers / writers.**

* :func:`read_nmnist` / :func:`write_nmnist` -- the N-MNIST (and N-Caltech101) binary format:
  5 bytes per event, ``byte0 = x``, ``byte1 = y``, ``byte2 bit 7 = p``, and a 23-bit big-endian
  timestamp ``t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4`` in microseconds. As in Garrick
  Orchard's reference reader and in Tonic, a record with ``y == 240`` is not an event but a
  timestamp-overflow marker: it adds 2**13 us to every later timestamp and is dropped. The writer
  therefore refuses ``y == 240`` (as well as ``x``/``y`` > 255 and ``t`` outside [0, 2**23)).
* :func:`read_aedat4` -- AEDAT4 files (iniVation DV) through the ``aedat`` package. Returns a
  :class:`Recording` ``(events, sensor_size)``; timestamps stay absolute (Unix-epoch
  microseconds, as in the file).

**Binning.** :func:`bin_events` turns events into the accelerator's input: a ``(T, n_in)`` bool
array where channel ``c`` is active in step ``k`` iff at least one event fell into it.
:func:`bin_counts` is the same with ``uint16`` event counts.

* Grid: pixel ``(x, y)`` maps to ``(x // d, y // d)`` on a ``W' x H'`` grid with
  ``W' = ceil(W / d)``, ``H' = ceil(H / d)``, ``d = downsample``.
* Channels: with ``polarity_channels=True`` (default) ``n_in = 2 * W' * H'``, **ON channels
  first, then OFF channels** -- the same order as the digits encoder in :mod:`golden.data`::

      c = (1 - p) * W' * H' + y' * W' + x'        # p = 1 (ON) -> block 0, p = 0 (OFF) -> block 1

  (equivalently ``c = b * W'*H' + y'*W' + x'`` with block ``b = 0`` for ON, ``1`` for OFF).
  With ``polarity_channels=False``, ``n_in = W' * H'`` and ``c = y' * W' + x'``.
* Time: ``T`` equal-width, half-open bins over ``[t_start, t_end)``. Event ``t`` goes to bin
  ``k = floor((t - t_start) * T / (t_end - t_start))``, computed exactly in integers. An event
  exactly on a bin boundary therefore belongs to the *later* bin, and an event at ``t_end`` is
  outside the window (the last bin is open at ``t_end`` too).
* Window: by default ``t_start = t[0]`` and ``t_end = t[-1] + 1``, so the window holds every
  event. If the caller passes ``t_start`` and/or ``t_end`` explicitly, events outside
  ``[t_start, t_end)`` are *selected out* (dropped) -- that is how to cut a window out of a long
  recording. Nothing else is ever dropped or clipped.
* Errors (``ValueError`` naming the field and the allowed range): ``x >= W`` or ``y >= H``
  ("out-of-range event coordinates", checked on all events, also those outside the window),
  decreasing timestamps (``t`` must be non-decreasing), ``T < 1``, ``downsample < 1``,
  ``t_end <= t_start``, an empty event array without an explicit window, a bad ``sensor_size``,
  and (``bin_counts``) a count above 65535.
"""
from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import BinaryIO, NamedTuple, Union

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "NMNIST_SENSOR_SIZE",
    "NMNIST_OVERFLOW_Y",
    "Recording",
    "make_events",
    "from_structured",
    "read_nmnist",
    "write_nmnist",
    "read_aedat4",
    "binned_size",
    "bin_events",
    "bin_counts",
]

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
NMNIST_SENSOR_SIZE = (34, 34)
NMNIST_OVERFLOW_Y = 240            # y value of an N-MNIST timestamp-overflow record
_NMNIST_OVERFLOW_US = 1 << 13      # what each overflow record adds to later timestamps
_NMNIST_T_LIMIT = 1 << 23          # 23-bit timestamps

PathLike = Union[str, os.PathLike]


class Recording(NamedTuple):
    """What :func:`read_aedat4` returns: the events and the sensor's ``(width, height)``."""

    events: np.ndarray
    sensor_size: tuple[int, int] | None


# --------------------------------------------------------------------------------------------
# common representation
# --------------------------------------------------------------------------------------------

def make_events(x, y, t, p) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` array from four equal-length sequences (validated)."""
    cols = [np.asarray(v) for v in (x, y, t, p)]
    n = {c.shape for c in cols}
    if len(n) != 1 or cols[0].ndim != 1:
        raise ValueError(f"events: x, y, t, p must be 1-D and of equal length, got shapes "
                         f"{[c.shape for c in cols]}")
    dt = np.dtype([(name, c.dtype) for name, c in zip("xytp", cols)])
    arr = np.empty(cols[0].shape[0], dtype=dt)
    for name, c in zip("xytp", cols):
        arr[name] = c
    return from_structured(arr)


def _field(arr: np.ndarray, name: str) -> np.ndarray:
    # dtype.fields also holds titles: the aedat package names polarity "on" with title "p".
    if name not in arr.dtype.fields:
        raise ValueError(f"events: missing field '{name}' (need fields x, y, t, p; "
                         f"got {arr.dtype.names})")
    return arr[name]


def _check_int_range(name: str, v: np.ndarray, lo: int, hi: int) -> None:
    """Integer dtype and every value in [lo, hi] (inclusive), else ValueError naming ``name``."""
    if v.dtype.kind not in "iub":
        raise ValueError(f"events: field '{name}' must have an integer dtype, got {v.dtype}")
    if v.size == 0:
        return
    vmin, vmax = int(v.min()), int(v.max())
    if vmin < lo or vmax > hi:
        bad = int(np.flatnonzero((v < lo) | (v > hi))[0])
        raise ValueError(f"events: field '{name}' must be in [{lo}, {hi}], got values in "
                         f"[{vmin}, {vmax}] (first bad event at index {bad})")


def from_structured(arr) -> np.ndarray:
    """Validate a Tonic-style structured array and return a copy with :data:`EVENT_DTYPE`.

    Fields ``x``, ``y``, ``t``, ``p`` may appear in any order (or be reachable by title); other
    fields are ignored. ``x``, ``y`` must be integers in [0, 65535], ``t`` an integer in the
    int64 range (microseconds), ``p`` bool or an integer 0/1 (1 = ON). Raises ``ValueError``
    naming the missing or offending field.
    """
    arr = np.asarray(arr)
    if arr.dtype.names is None:
        raise ValueError("events: expected a NumPy structured array with fields x, y, t, p, "
                         f"got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"events: expected a 1-D structured array, got shape {arr.shape}")
    cols = {name: _field(arr, name) for name in "xytp"}
    _check_int_range("x", cols["x"], 0, 0xFFFF)
    _check_int_range("y", cols["y"], 0, 0xFFFF)
    _check_int_range("t", cols["t"], -(1 << 63), (1 << 63) - 1)
    _check_int_range("p", cols["p"], 0, 1)
    out = np.empty(arr.shape[0], dtype=EVENT_DTYPE)
    for name, c in cols.items():
        out[name] = c
    return out


# --------------------------------------------------------------------------------------------
# N-MNIST
# --------------------------------------------------------------------------------------------

def read_nmnist(path_or_bytes) -> np.ndarray:
    """Read an N-MNIST binary file (path, ``bytes``-like, or binary file object).

    Returns an :data:`EVENT_DTYPE` array in file order. Records with ``y == 240`` are
    timestamp-overflow markers (each adds 2**13 us to all later timestamps) and are dropped, as in
    the reference reader. The data length must be a multiple of 5 bytes.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(path_or_bytes, dtype=np.uint8)
    elif hasattr(path_or_bytes, "read"):
        raw = np.frombuffer(path_or_bytes.read(), dtype=np.uint8)
    else:
        raw = np.fromfile(os.fspath(path_or_bytes), dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"N-MNIST data: length must be a multiple of 5 bytes (40-bit events), "
                         f"got {raw.size} bytes")
    rec = raw.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == NMNIST_OVERFLOW_Y
    if overflow.any():
        t = t + np.cumsum(overflow) * _NMNIST_OVERFLOW_US
    keep = ~overflow
    out = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x[keep], y[keep], t[keep], p[keep]
    return out


def _nmnist_bytes(events) -> bytes:
    ev = from_structured(events)
    x, y, t, p = (ev[f].astype(np.int64) for f in "xytp")
    for name, v, hi in (("x", x, 255), ("y", y, 255)):
        if v.size and v.max() > hi:
            raise ValueError(f"write_nmnist: field '{name}' must be in [0, {hi}] (one byte), "
                             f"got max {name} = {int(v.max())}")
    if np.any(y == NMNIST_OVERFLOW_Y):
        raise ValueError(f"write_nmnist: field 'y' must not be {NMNIST_OVERFLOW_Y}: in N-MNIST "
                         f"files y == {NMNIST_OVERFLOW_Y} marks a timestamp-overflow record")
    if t.size and (t.min() < 0 or t.max() >= _NMNIST_T_LIMIT):
        raise ValueError(f"write_nmnist: field 't' must be in [0, 2**23 - 1] us (23-bit "
                         f"timestamp), got values in [{int(t.min())}, {int(t.max())}]")
    rec = np.empty((ev.shape[0], 5), dtype=np.uint8)
    rec[:, 0] = x
    rec[:, 1] = y
    rec[:, 2] = (p << 7) | (t >> 16)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    return rec.tobytes()


def write_nmnist(path: PathLike | BinaryIO, events) -> None:
    """Write events in the N-MNIST binary format (the inverse of :func:`read_nmnist`).

    ``path`` is a file path or a writable binary file object. Raises ``ValueError`` naming the
    field if ``x`` or ``y`` > 255, ``y == 240`` (the overflow marker), or ``t`` outside
    [0, 2**23). Events are written in the given order.
    """
    data = _nmnist_bytes(events)
    if hasattr(path, "write"):
        path.write(data)
    else:
        Path(path).write_bytes(data)


# --------------------------------------------------------------------------------------------
# AEDAT4
# --------------------------------------------------------------------------------------------

def read_aedat4(path: PathLike, *, stream_id: int | None = None) -> Recording:
    """Read the polarity events of an AEDAT4 file with the ``aedat`` package.

    Returns ``Recording(events, sensor_size)``: an :data:`EVENT_DTYPE` array (file order,
    absolute microsecond timestamps) and ``(width, height)`` from the stream description, or
    ``None`` if the file does not state it. With ``stream_id=None`` the file must have exactly one
    event stream; otherwise pass its id. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not AEDAT4 or has no (or several) event streams.
    """
    import aedat  # imported lazily: only this reader needs the compiled extension

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"AEDAT4 file not found: {p}")
    try:
        decoder = aedat.Decoder(str(p))
    except RuntimeError as exc:          # aedat reports every failure as RuntimeError
        raise ValueError(f"{p}: cannot decode as AEDAT4: {exc}") from exc
    streams = decoder.id_to_stream()
    event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if stream_id is None:
        if len(event_ids) != 1:
            raise ValueError(f"{p}: stream_id must be given when the file does not have exactly "
                             f"one event stream (event streams: {event_ids})")
        stream_id = event_ids[0]
    elif stream_id not in event_ids:
        raise ValueError(f"{p}: stream_id must be one of the event streams {event_ids}, "
                         f"got {stream_id}")
    chunks = []
    try:
        for packet in decoder:
            if "events" in packet and packet["stream_id"] == stream_id:
                chunks.append(packet["events"])
    except RuntimeError as exc:
        raise ValueError(f"{p}: corrupt AEDAT4 data: {exc}") from exc
    if chunks:
        raw = np.concatenate(chunks)
        t = raw["t"]
        if t.dtype.kind == "u" and t.size and int(t.max()) > (1 << 63) - 1:
            raise ValueError(f"{p}: field 't' exceeds the int64 range")
        events = np.empty(raw.shape[0], dtype=EVENT_DTYPE)
        events["x"], events["y"], events["t"] = raw["x"], raw["y"], t
        events["p"] = raw["on"] if "on" in raw.dtype.fields else raw["p"]
    else:
        events = np.empty(0, dtype=EVENT_DTYPE)
    desc = streams[stream_id]
    size = (int(desc["width"]), int(desc["height"])) if "width" in desc and "height" in desc \
        else None
    return Recording(events, size)


# --------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------

def _pos_int(value, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v}")
    return v


def _sensor(sensor_size) -> tuple[int, int]:
    try:
        size = tuple(sensor_size)
    except TypeError:
        raise ValueError(f"sensor_size must be (W, H) with W, H >= 1, got {sensor_size!r}") \
            from None
    if len(size) == 3 and size[2] in (1, 2):      # Tonic's (W, H, P)
        size = size[:2]
    if len(size) != 2:
        raise ValueError(f"sensor_size must be (W, H) with W, H >= 1, got {sensor_size!r}")
    return _pos_int(size[0], "sensor_size W"), _pos_int(size[1], "sensor_size H")


def binned_size(sensor_size, *, downsample: int = 1, polarity_channels: bool = True) -> int:
    """``n_in`` of :func:`bin_events`: ``(2 if polarity_channels else 1) * W' * H'``."""
    w, h = _sensor(sensor_size)
    d = _pos_int(downsample, "downsample")
    return (2 if polarity_channels else 1) * (-(-w // d)) * (-(-h // d))


def _bin_coords(events, sensor_size, T, t_start, t_end, downsample, polarity_channels):
    """Validated (bin index, channel index, n_in) of every event inside the window."""
    ev = from_structured(events)
    w, h = _sensor(sensor_size)
    T = _pos_int(T, "T")
    d = _pos_int(downsample, "downsample")
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    t = ev["t"]
    p = ev["p"].astype(np.int64)
    for name, v, lim, what in (("x", x, w, "W"), ("y", y, h, "H")):
        if v.size and v.max() >= lim:
            i = int(np.argmax(v >= lim))
            raise ValueError(f"out-of-range event coordinates: field '{name}' must be in "
                             f"[0, {lim - 1}] (sensor {what} = {lim}), got {name} = {int(v[i])} "
                             f"at event index {i}")
    if t.size > 1:
        dec = np.flatnonzero(np.diff(t) < 0)
        if dec.size:
            i = int(dec[0]) + 1
            raise ValueError(f"field 't' must be non-decreasing (sorted timestamps), but "
                             f"t[{i}] = {int(t[i])} < t[{i - 1}] = {int(t[i - 1])}")
    if (t_start is None or t_end is None) and t.size == 0:
        raise ValueError("t_start/t_end: cannot infer the window from an empty event array; "
                         "pass t_start and t_end explicitly")
    t0 = int(t[0]) if t_start is None else operator.index(t_start)
    t1 = int(t[-1]) + 1 if t_end is None else operator.index(t_end)
    if t1 <= t0:
        raise ValueError(f"t_end must be > t_start, got t_start = {t0}, t_end = {t1}")
    span = t1 - t0
    if span * T > (1 << 63) - 1:
        raise ValueError(f"T * (t_end - t_start) must fit in int64 (exact bin arithmetic), got "
                         f"T = {T}, t_end - t_start = {span}")
    # Sorted: the window [t0, t1) is a contiguous slice. With the default window it is all events.
    lo = int(np.searchsorted(t, t0, side="left"))
    hi = int(np.searchsorted(t, t1, side="left"))
    tw = t[lo:hi] - np.int64(t0)
    k = (tw * np.int64(T)) // np.int64(span)
    wd, hd = -(-w // d), -(-h // d)
    plane = wd * hd
    c = (y[lo:hi] // d) * wd + (x[lo:hi] // d)
    if polarity_channels:
        c = c + (1 - p[lo:hi]) * plane          # ON (p = 1) block first, then OFF
        n_in = 2 * plane
    else:
        n_in = plane
    return k, c, n_in, T


def bin_events(events, sensor_size, T, *, t_start=None, t_end=None, downsample: int = 1,
               polarity_channels: bool = True) -> np.ndarray:
    """Bin events into a ``(T, n_in)`` bool array (see the module docstring for the contract).

    ``sensor_size`` is ``(W, H)`` (Tonic's ``(W, H, P)`` is accepted). Bins are ``T`` equal,
    half-open intervals over ``[t_start, t_end)``; ``out[k, c]`` is True iff at least one event of
    channel ``c`` falls into bin ``k``. Channel ``c = (1 - p) * W'*H' + y'*W' + x'`` (ON block
    first) with ``x' = x // downsample``, ``y' = y // downsample``. Defaults: ``t_start = t[0]``,
    ``t_end = t[-1] + 1``; with an explicit window, events outside it are dropped.
    """
    k, c, n_in, T = _bin_coords(events, sensor_size, T, t_start, t_end, downsample,
                                polarity_channels)
    out = np.zeros((T, n_in), dtype=bool)
    out[k, c] = True
    return out


def bin_counts(events, sensor_size, T, *, t_start=None, t_end=None, downsample: int = 1,
               polarity_channels: bool = True) -> np.ndarray:
    """Like :func:`bin_events` but ``out[k, c]`` is the number of events (``uint16``).

    Raises ``ValueError`` if a count exceeds 65535 (never wraps or saturates silently).
    """
    k, c, n_in, T = _bin_coords(events, sensor_size, T, t_start, t_end, downsample,
                                polarity_channels)
    counts = np.bincount(k * n_in + c, minlength=T * n_in)
    if counts.size and counts.max() > 0xFFFF:
        raise ValueError(f"counts must fit in uint16 (<= 65535), got {int(counts.max())} events "
                         f"in one (bin, channel); use more bins or a smaller downsample")
    return counts.astype(np.uint16).reshape(T, n_in)
