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
  microseconds, as in the file). A truncated file (cut inside a packet) gives the events of the
  complete packets and a :class:`TruncatedFileWarning` naming the bytes lost (``strict=True``:
  ``ValueError``).
* :func:`read_prophesee` -- Prophesee EVT 2.0 / EVT 3.0 (``.raw``) and DAT (``.dat``) through
  ``faery`` (pinned in pyproject). A sensor size the header does not state must be passed
  (``sensor_size``), never guessed; an EVT 3.0 file that faery 0.7.1 would misdecode (a
  time-high jump across the 2**24 us wrap) is refused.
* :func:`read_events` -- any of these (and N-MNIST ``.bin``) by extension or ``format=``.

**Long recordings.** :func:`window_coords` validates a recording once and places every event
in (window, step, channel) for windows of ``T`` steps of ``bin_us`` each; :func:`bin_windows`
returns all windows as one array, :func:`iter_windows` one window at a time. Window ``w`` equals
:func:`bin_events` over ``[t0 + w*T*bin_us, t0 + (w+1)*T*bin_us)``.

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
import warnings
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
    "read_prophesee",
    "read_events",
    "event_file_kind",
    "EVENT_FILE_KINDS",
    "EVENT_FORMATS",
    "TruncatedFileWarning",
    "binned_size",
    "bin_events",
    "bin_counts",
    "Windows",
    "window_coords",
    "bin_windows",
    "iter_windows",
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


# dv-processing (iniVation's library) names two of the four fields differently
_ALIASES = {"t": "timestamp", "p": "polarity"}


def _field(arr: np.ndarray, name: str) -> np.ndarray:
    # dtype.fields also holds titles: the aedat package names polarity "on" with title "p".
    fields = arr.dtype.fields
    alias = _ALIASES.get(name)
    if name in fields and alias in fields:
        raise ValueError(f"events: fields '{name}' and '{alias}' are both present; keep one "
                         f"(got {arr.dtype.names})")
    if name in fields:
        return arr[name]
    if alias in fields:
        return arr[alias]
    raise ValueError(f"events: missing field '{name}'"
                     + (f" (or '{alias}')" if alias else "")
                     + f" (need fields x, y, t, p; got {arr.dtype.names})")


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

    Fields ``x``, ``y``, ``t``, ``p`` may appear in any order (or be reachable by title);
    dv-processing's names ``timestamp`` (for ``t``) and ``polarity`` (for ``p``) are accepted
    too (both a name and its alias present is an error); other fields are ignored. ``x``, ``y`` must be integers in [0, 65535], ``t`` an integer in the
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

class TruncatedFileWarning(UserWarning):
    """A recording ends inside a packet (e.g. the camera was unplugged): the complete packets were
    returned, the incomplete tail was not. The message names the bytes lost and the last
    timestamp read. Pass ``strict=True`` to the reader to get a ``ValueError`` instead."""


_AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def _aedat4_tail(data: bytes, n_packets: int) -> tuple[int, int, int, int] | None:
    """Where packet ``n_packets`` (0-based) starts, its stream id, declared and present size.

    AEDAT4 framing: the magic, an int32 size and the IOHeader, then packets of an 8-byte header
    (int32 stream id, int32 size) and that many bytes. ``None`` if the framing itself is broken.
    """
    if len(data) < len(_AEDAT4_MAGIC) + 4:
        return None
    off = len(_AEDAT4_MAGIC)
    off += 4 + int.from_bytes(data[off:off + 4], "little")
    for _ in range(n_packets):
        if off + 8 > len(data):
            return None
        off += 8 + int.from_bytes(data[off + 4:off + 8], "little")
    if off > len(data):
        return None
    sid = int.from_bytes(data[off:off + 4], "little", signed=True) if off + 4 <= len(data) \
        else -1
    size = int.from_bytes(data[off + 4:off + 8], "little") if off + 8 <= len(data) else -1
    return off, sid, size, len(data) - off - 8


def read_aedat4(path: PathLike, *, stream_id: int | None = None,
                strict: bool = False) -> Recording:
    """Read the polarity events of an AEDAT4 file with the ``aedat`` package.

    Returns ``Recording(events, sensor_size)``: an :data:`EVENT_DTYPE` array (file order,
    absolute microsecond timestamps) and ``(width, height)`` from the stream description, or
    ``None`` if the file does not state it. With ``stream_id=None`` the file must have exactly one
    event stream; otherwise pass its id. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not AEDAT4 or has no (or several) event streams.

    **Truncated files** (the recording ends inside a packet, as when a camera is unplugged): the
    events of every complete packet are returned and a :class:`TruncatedFileWarning` names the
    bytes that could not be decoded and the last timestamp read; with ``strict=True`` that is a
    ``ValueError`` instead. A complete packet that does not decode is always a ``ValueError``
    (corrupt data is not truncation).
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
    n_packets = 0
    failure = None
    try:
        for packet in decoder:
            n_packets += 1
            if "events" in packet and packet["stream_id"] == stream_id:
                chunks.append(packet["events"])
    except RuntimeError as exc:
        failure = exc
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
    if failure is not None:
        tail = _aedat4_tail(p.read_bytes(), n_packets)
        if tail is None or tail[2] >= 0 and tail[3] >= tail[2]:
            # the failing packet is complete on disk: corrupt, not truncated
            raise ValueError(f"{p}: corrupt AEDAT4 data in packet {n_packets}: {failure}") \
                from failure
        off, sid, declared, present = tail
        kind = streams.get(sid, {}).get("type", "unknown") if sid >= 0 else "unknown"
        lost = p.stat().st_size - off
        last = (f"the last event read is at t = {int(events['t'][-1])} us, "
                f"{(int(events['t'][-1]) - int(events['t'][0])) / 1e6:.3f} s into the recording"
                if events.size else "no event was read")
        msg = (f"{p}: truncated AEDAT4 file: the last {lost} bytes (from byte {off}: an "
               f"incomplete packet of stream {sid} ({kind})"
               + (f", {max(present, 0)} of its {declared} bytes present" if declared >= 0 else "")
               + f") could not be decoded; {len(events)} events of {n_packets} complete packets "
               f"were read, {last}")
        if strict:
            raise ValueError(msg + " (strict reading)") from failure
        warnings.warn(msg, TruncatedFileWarning, stacklevel=2)
    desc = streams[stream_id]
    size = (int(desc["width"]), int(desc["height"])) if "width" in desc and "height" in desc \
        else None
    return Recording(events, size)


# --------------------------------------------------------------------------------------------
# Prophesee EVT 2.0 / EVT 3.0 (.raw) and DAT (.dat), through faery
# --------------------------------------------------------------------------------------------

PROPHESEE_VERSIONS = {"evt": ("evt2", "evt3"), "dat": ("dat1", "dat2")}


def _faery_open(kind: str, p: Path, size, version):
    from faery.extension import dat, evt      # lazily: the compiled decoders

    cls = evt.Decoder if kind == "evt" else dat.Decoder
    return cls(str(p), size, version)


def _dims(d):
    return None if d is None else (int(d[0]), int(d[1]))


def _prophesee_header_len(p: Path) -> int:
    """Bytes of the text header: lines ``% ...``, up to and including ``% end`` if present."""
    off = 0
    with open(p, "rb") as f:
        while f.read(2) == b"% ":
            line = f.readline()
            off = f.tell()
            if line.rstrip(b"\r\n") == b"end":
                break
            f.seek(off)
    return off


# bytes per word after the text header (DAT: 2 more header bytes, event type and size)
_WORD_BYTES = {"evt2": 4, "evt2.1": 8, "evt3": 2, "dat1": 8, "dat2": 8}


def _check_evt3_wraps(p: Path) -> None:
    """Refuse an EVT 3.0 file that faery 0.7.1 would decode with wrong times.

    EVT 3.0's EVT_TIME_HIGH word (type 0x8, bits 11..0 = t[23:12]) wraps every 2**24 us
    (16.78 s). faery 0.7.1 follows the wrap only when the time-high steps by one (as a camera's
    stream does, which sends every time-high); a file whose time-high jumps across the wrap
    (an idle gap of more than 4,096 us there) decodes with the later timestamps stuck (measured:
    golden/tests/test_event_files.py). This scans the 16-bit words' types only; it decodes
    nothing.
    """
    off = _prophesee_header_len(p)
    n_words = (p.stat().st_size - off) // 2
    if n_words == 0:
        return
    words = np.memmap(p, dtype="<u2", mode="r", offset=off, shape=(n_words,))
    hi = (words[(words >> 12) == 0x8] & 0xFFF).astype(np.int64)
    step = np.diff(hi)
    bad = np.flatnonzero((step < 0) & (step + 4096 != 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{p}: EVT 3.0 time-high jumps across its 2**24 us wrap (from "
                         f"{int(hi[i])} to {int(hi[i + 1])}, time-high word {i + 1}): the "
                         f"decoder (faery 0.7.1) would return wrong timestamps after it, so the "
                         f"file is refused rather than misread")


def read_prophesee(path: PathLike, *, sensor_size=None, version: str | None = None,
                   strict: bool = False) -> Recording:
    """Read a Prophesee EVT 2.0 / EVT 3.0 (``.raw``) or DAT (``.dat``) file with ``faery``.

    The kind is the extension (``.raw`` -> EVT, ``.dat`` -> DAT). Returns ``Recording(events,
    sensor_size)`` with absolute microsecond timestamps in file order and the CD (contrast
    detector) events only (EVT trigger events are not polarity events).

    * ``sensor_size``: ``(W, H)``. Needed when the header does not state the geometry (EVT 2.0
      files from some tools have none): then it is used, and without it the reader raises
      ``ValueError`` -- it never guesses. When the header states it, a different ``sensor_size``
      is an error too.
    * ``version``: ``"evt2"``/``"evt3"`` or ``"dat1"``/``"dat2"``, needed only when the header has
      no version line; a header that states one wins (a different ``version`` is an error).

    * A file that ends inside a word (cut off): the complete words are decoded and a
      :class:`TruncatedFileWarning` names the bytes left over (``strict=True``: ``ValueError``).
      (The decoder would drop them silently.)

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem (decoder errors
    included).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Prophesee file not found: {p}")
    kind = {".raw": "evt", ".dat": "dat"}.get(p.suffix.lower())
    if kind is None:
        raise ValueError(f"{p}: a Prophesee file must end in .raw (EVT 2.0/3.0) or .dat (DAT), "
                         f"got '{p.suffix}'")
    allowed = PROPHESEE_VERSIONS[kind]
    if version is not None and version not in allowed:
        raise ValueError(f"{p}: version must be one of {allowed} for a {p.suffix} file, "
                         f"got {version!r}")
    user_size = None if sensor_size is None else _sensor(sensor_size)
    # 1. what the header states: open without any fallback
    stated_size = stated_version = None
    try:
        with _faery_open(kind, p, None, None) as d:
            stated_size, stated_version = _dims(d.dimensions), d.version
    except RuntimeError:
        pass
    if stated_version is None:
        # 2. which of the two is missing: probe (the probe values are never returned)
        for probe_size, probe_version in ((None, allowed[-1]), ((1, 1), None),
                                          ((1, 1), allowed[-1])):
            try:
                with _faery_open(kind, p, probe_size, probe_version) as d:
                    if probe_size is None:
                        stated_size = _dims(d.dimensions)
                    if probe_version is None:
                        stated_version = d.version
                break
            except RuntimeError as exc:
                last_exc = exc
        else:
            raise ValueError(f"{p}: cannot decode as {kind.upper()}: {last_exc}") from last_exc
    if stated_size is not None and user_size is not None and stated_size != user_size:
        raise ValueError(f"{p}: sensor_size {user_size} differs from the header's "
                         f"{stated_size}")
    if stated_version is not None and version is not None and stated_version != version:
        raise ValueError(f"{p}: version {version!r} differs from the header's "
                         f"{stated_version!r}")
    size = stated_size or user_size
    if size is None:
        raise ValueError(f"{p}: the header does not state the sensor size (no geometry); "
                         f"give it (sensor_size=(W, H), on the command line --sensor W H)")
    ver = stated_version or version
    if ver is None:
        raise ValueError(f"{p}: the header does not state the format version; give it "
                         f"(version= one of {allowed}, on the command line --format)")
    if ver == "evt3":
        _check_evt3_wraps(p)
    chunks = []
    try:
        with _faery_open(kind, p, size, ver) as d:
            for packet in d:
                ev = packet.get("events") if kind == "evt" else packet
                if ev is not None and len(ev):
                    chunks.append(ev)
    except RuntimeError as exc:
        raise ValueError(f"{p}: cannot decode the {ver.upper()} data: {exc}") from exc
    out = np.empty(sum(len(c) for c in chunks), dtype=EVENT_DTYPE)
    if chunks:
        raw = np.concatenate(chunks)
        t = raw["t"]
        if t.size and int(t.max()) > (1 << 63) - 1:
            raise ValueError(f"{p}: field 't' exceeds the int64 range")
        if kind == "dat":
            pol = raw["payload"]
            if pol.size and int(pol.max()) > 1:
                bad = int(np.argmax(pol > 1))
                raise ValueError(f"{p}: polarity (DAT payload) must be 0 or 1, got "
                                 f"{int(pol[bad])} at event {bad}")
        else:
            pol = raw["on"]
        out["x"], out["y"], out["t"], out["p"] = raw["x"], raw["y"], t, pol
        for name, lim in (("x", size[0]), ("y", size[1])):
            if int(out[name].max()) >= lim:
                i = int(np.argmax(out[name] >= lim))
                raise ValueError(f"{p}: out-of-range event coordinates: field '{name}' must be "
                                 f"in [0, {lim - 1}] (sensor {size}), got {int(out[name][i])} "
                                 f"at event {i}")
    body = p.stat().st_size - _prophesee_header_len(p) - (2 if kind == "dat" else 0)
    left = body % _WORD_BYTES.get(ver, 1) if body > 0 else 0
    if left:
        msg = (f"{p}: truncated {ver.upper()} file: it ends inside a word, the last {left} "
               f"byte(s) (of a {_WORD_BYTES[ver]}-byte word) could not be decoded; "
               f"{len(out)} events were read"
               + (f", the last at t = {int(out['t'][-1])} us" if len(out) else ""))
        if strict:
            raise ValueError(msg + " (strict reading)")
        warnings.warn(msg, TruncatedFileWarning, stacklevel=2)
    return Recording(out, size)


# --------------------------------------------------------------------------------------------
# any event file
# --------------------------------------------------------------------------------------------

#: file kinds :func:`read_events` knows, by extension
EVENT_FILE_KINDS = {".aedat4": "aedat4", ".raw": "evt", ".dat": "dat", ".bin": "nmnist"}
#: what ``format=`` may say
EVENT_FORMATS = ("aedat4", "evt2", "evt3", "dat1", "dat2", "nmnist")


def event_file_kind(path: PathLike, format: str | None = None) -> str:
    """``"aedat4" | "evt" | "dat" | "nmnist"`` of a file, from ``format`` or the extension;
    ``ValueError`` naming the allowed ones if neither tells, or if the AEDAT4 magic is missing."""
    p = Path(path)
    if format is not None:
        if format not in EVENT_FORMATS:
            raise ValueError(f"format must be one of {EVENT_FORMATS}, got {format!r}")
        kind = format.rstrip("123") if format[:3] in ("evt", "dat") else format
    else:
        kind = EVENT_FILE_KINDS.get(p.suffix.lower())
        if kind is None:
            raise ValueError(f"{p}: unknown event file type '{p.suffix}': known are "
                             f"{', '.join(f'{k} ({v})' for k, v in EVENT_FILE_KINDS.items())}")
    if kind in ("evt", "dat") and p.suffix.lower() != f".{'raw' if kind == 'evt' else 'dat'}":
        raise ValueError(f"{p}: a {kind.upper()} file must end in "
                         f"{'.raw' if kind == 'evt' else '.dat'}")
    if p.is_file() and kind == "aedat4":
        with open(p, "rb") as f:
            if f.read(len(_AEDAT4_MAGIC)) != _AEDAT4_MAGIC:
                raise ValueError(f"{p}: not an AEDAT4 file (it does not start with "
                                 f"{_AEDAT4_MAGIC!r})")
    return kind


def read_events(path: PathLike, *, format: str | None = None, sensor_size=None,
                strict: bool = False) -> Recording:
    """Read any supported event file into ``Recording(events, sensor_size)``.

    The kind comes from ``format`` (one of :data:`EVENT_FORMATS`) or the extension
    (:data:`EVENT_FILE_KINDS`). ``sensor_size``: for formats whose file may not state it (EVT,
    DAT; N-MNIST is always 34 x 34 unless given); a file that states it must agree. ``strict``:
    a truncated AEDAT4, EVT or DAT file is an error instead of a warning.
    """
    p = Path(path)
    kind = event_file_kind(p, format)
    if not p.is_file():
        raise FileNotFoundError(f"event file not found: {p}")
    if kind == "aedat4":
        rec = read_aedat4(p, strict=strict)
        if sensor_size is not None:
            user = _sensor(sensor_size)
            if rec.sensor_size is not None and rec.sensor_size != user:
                raise ValueError(f"{p}: sensor_size {user} differs from the file's "
                                 f"{rec.sensor_size}")
            rec = Recording(rec.events, user)
        if rec.sensor_size is None:
            raise ValueError(f"{p}: the file does not state the sensor size; give it "
                             f"(sensor_size=(W, H), on the command line --sensor W H)")
        return rec
    if kind in ("evt", "dat"):
        version = format if format and format[:3] in ("evt", "dat") else None
        return read_prophesee(p, sensor_size=sensor_size, version=version, strict=strict)
    size = NMNIST_SENSOR_SIZE if sensor_size is None else _sensor(sensor_size)
    ev = read_nmnist(p)
    for name, lim in (("x", size[0]), ("y", size[1])):
        if ev.size and int(ev[name].max()) >= lim:
            raise ValueError(f"{p}: out-of-range event coordinates: field '{name}' must be in "
                             f"[0, {lim - 1}] (sensor {size}), got max {int(ev[name].max())}")
    return Recording(ev, size)


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


def _checked(events, sensor_size):
    """Validate once: (x, y, t, p as int64 columns, W, H); coordinates and order checked."""
    ev = from_structured(events)
    w, h = _sensor(sensor_size)
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
    return x, y, t, p, w, h


def _channels(x, y, p, w, h, d, polarity_channels):
    """Channel index of each event (module docstring) and ``n_in``."""
    wd, hd = -(-w // d), -(-h // d)
    plane = wd * hd
    c = (y // d) * wd + (x // d)
    if polarity_channels:
        return c + (1 - p) * plane, 2 * plane          # ON (p = 1) block first, then OFF
    return c, plane


def _bin_coords(events, sensor_size, T, t_start, t_end, downsample, polarity_channels):
    """Validated (bin index, channel index, n_in) of every event inside the window."""
    x, y, t, p, w, h = _checked(events, sensor_size)
    T = _pos_int(T, "T")
    d = _pos_int(downsample, "downsample")
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
    c, n_in = _channels(x[lo:hi], y[lo:hi], p[lo:hi], w, h, d, polarity_channels)
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


# --------------------------------------------------------------------------------------------
# long recordings: many windows in one pass
# --------------------------------------------------------------------------------------------

class Windows(NamedTuple):
    """What :func:`window_coords` returns (validated once, for any number of windows)."""

    step: np.ndarray          # global step index of each selected event, int64, non-decreasing
    channel: np.ndarray       # its channel, int64
    n_in: int
    T: int
    n_windows: int
    t_start: int              # start of window 0, us
    bin_us: int
    bounds: np.ndarray        # (n_windows + 1,) event index where each window starts (and end)
    n_outside: int            # events before t_start or after the last window (selected out)

    def window_start(self, w: int) -> int:
        """Start time of window ``w`` (us)."""
        return self.t_start + w * self.T * self.bin_us


def window_coords(events, sensor_size, T, bin_us, *, t_start=None, n_windows=None,
                  downsample: int = 1, polarity_channels: bool = True) -> Windows:
    """Validate a long recording once and place each event in (window, step, channel).

    Window ``w`` covers ``[t_start + w*T*bin_us, t_start + (w+1)*T*bin_us)``, its step ``k``
    covers ``bin_us`` microseconds: window ``w`` is exactly ``bin_events(events, sensor_size, T,
    t_start=t_start + w*T*bin_us, t_end=t_start + (w+1)*T*bin_us)`` (same half-open bins, same
    channels). Defaults: ``t_start = t[0]``; ``n_windows`` = as many as needed to hold every event
    (the last one may extend past the recording). With ``t_start`` or ``n_windows`` given, the
    events outside the windows are selected out and counted in ``n_outside``. Same errors as
    :func:`bin_events`, plus ``bin_us < 1`` and ``n_windows < 1``.
    """
    x, y, t, p, w, h = _checked(events, sensor_size)
    T = _pos_int(T, "T")
    bin_us = _pos_int(bin_us, "bin_us")
    d = _pos_int(downsample, "downsample")
    if t_start is None and t.size == 0:
        raise ValueError("t_start: cannot infer the windows from an empty event array; pass "
                         "t_start and n_windows explicitly")
    t0 = int(t[0]) if t_start is None else operator.index(t_start)
    win_us = T * bin_us
    if n_windows is None:
        if t.size == 0:
            raise ValueError("n_windows: cannot infer from an empty event array")
        n_windows = max(1, -(-(int(t[-1]) + 1 - t0) // win_us))
    n_windows = _pos_int(n_windows, "n_windows")
    t1 = t0 + n_windows * win_us
    lo = int(np.searchsorted(t, t0, side="left"))
    hi = int(np.searchsorted(t, t1, side="left"))
    step = (t[lo:hi] - np.int64(t0)) // np.int64(bin_us)
    c, n_in = _channels(x[lo:hi], y[lo:hi], p[lo:hi], w, h, d, polarity_channels)
    bounds = np.searchsorted(step, np.arange(n_windows + 1, dtype=np.int64) * T, side="left")
    return Windows(step, c, n_in, T, n_windows, t0, bin_us, bounds, t.size - (hi - lo))


def bin_windows(events, sensor_size, T, bin_us, *, t_start=None, n_windows=None,
                downsample: int = 1, polarity_channels: bool = True) -> np.ndarray:
    """All windows of :func:`window_coords` at once: a ``(n_windows, T, n_in)`` bool array.

    One validation and one scatter for the whole recording (a 10 s, 1.2 M-event recording bins
    in tens of milliseconds, see docs/events.md); for many windows of a large ``n_in`` use
    :func:`iter_windows`, which holds one window at a time.
    """
    wc = window_coords(events, sensor_size, T, bin_us, t_start=t_start, n_windows=n_windows,
                       downsample=downsample, polarity_channels=polarity_channels)
    out = np.zeros((wc.n_windows * wc.T, wc.n_in), dtype=bool)
    out[wc.step, wc.channel] = True
    return out.reshape(wc.n_windows, wc.T, wc.n_in)


def iter_windows(events_or_coords, sensor_size=None, T=None, bin_us=None, **kw):
    """Yield ``(w, window_start_us, (T, n_in) bool)`` for each window of :func:`window_coords`.

    Validation happens once, before the first window; each window then costs only its own
    events. Pass either the events and :func:`window_coords`' arguments or a :class:`Windows`.
    """
    wc = events_or_coords if isinstance(events_or_coords, Windows) else \
        window_coords(events_or_coords, sensor_size, T, bin_us, **kw)
    for w in range(wc.n_windows):
        a, b = int(wc.bounds[w]), int(wc.bounds[w + 1])
        out = np.zeros((wc.T, wc.n_in), dtype=bool)
        out[wc.step[a:b] - w * wc.T, wc.channel[a:b]] = True
        yield w, wc.window_start(w), out
