"""Tests of the event-file readers beyond N-MNIST: Prophesee EVT 2.0 / EVT 3.0 / DAT through faery
(files written by faery's own writers, decoded equal to faery's own reader), a truncated AEDAT4
(the real recording, cut), dv-processing field names, and one-pass binning of many windows."""
from __future__ import annotations

import functools
import warnings

import faery
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.events import (
    EVENT_DTYPE,
    TruncatedFileWarning,
    bin_events,
    bin_windows,
    from_structured,
    iter_windows,
    read_aedat4,
    read_events,
    read_prophesee,
    window_coords,
    write_nmnist,
)
from golden.tests.test_events import AEDAT4_N_EVENTS, AEDAT4_SENSOR, _davis

FORMATS = [("evt2", ".raw"), ("evt3", ".raw"), ("dat1", ".dat"), ("dat2", ".dat")]
SIZE = (300, 200)          # DAT 1 allows width < 512, height < 256


def _faery_events(n=3000, size=SIZE, seed=0):
    """Seeded events in faery's layout, with gaps that cross EVT 3.0's 4,096 us time-high step
    and its 24-bit (16.78 s) time-high wrap twice: times span ~40 s. Around each wrap the events
    are at most 4,096 us apart, as in a camera's stream (see test_evt3_wrap_across_a_gap)."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([0, 1, 37, 4095, 4096, 4097, 90_000], size=n,
                      p=[.2, .2, .2, .1, .1, .1, .1])
    gaps[0] = 0
    t = 1_000_000 + np.cumsum(gaps)
    # the wraps of the absolute times and of the times minus t[0] (what zero_t0 writes)
    wraps = np.concatenate([np.arange(1, 3) << 24, 1_000_000 + (np.arange(1, 3) << 24)])
    near = np.abs(t[:, None] - wraps[None, :]).min(axis=1) < 200_000
    t = np.sort(np.concatenate([t[~near], (wraps[:, None] + np.arange(-200_000, 200_000, 3001)
                                          ).ravel()]))
    n = len(t)
    ev = np.zeros(n, faery.EVENTS_DTYPE)
    ev["t"] = t
    ev["x"] = rng.integers(0, size[0], n)
    ev["y"] = rng.integers(0, size[1], n)
    ev["on"] = rng.random(n) < 0.5
    assert ev["t"][-1] > (2 << 24) + 100_000
    return ev


def _write(path, version, ev=None, zero_t0=True):
    ev = _faery_events() if ev is None else ev
    faery.events_stream_from_array(ev, dimensions=SIZE).to_file(path, version=version,
                                                               zero_t0=zero_t0)
    return ev


def _faery_output(path, **kw):
    return faery.events_stream_from_file(path, **kw).to_array()


def _same(ours, theirs):
    assert ours.dtype == EVENT_DTYPE
    assert len(ours) == len(theirs)
    for a, b in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
        np.testing.assert_array_equal(ours[a].astype(np.int64), theirs[b].astype(np.int64), a)


@pytest.mark.parametrize("version,ext", FORMATS)
@pytest.mark.parametrize("zero_t0", [False, True])
def test_prophesee_decodes_equal_to_faery_and_to_what_was_written(tmp_path, version, ext,
                                                                  zero_t0):
    path = tmp_path / f"rec{ext}"
    written = _write(path, version, zero_t0=zero_t0)
    rec = read_events(path)
    assert rec.sensor_size == SIZE
    _same(rec.events, _faery_output(path))
    _same(rec.events, written)
    # an explicit format and an agreeing sensor size change nothing
    rec2 = read_events(path, format=version, sensor_size=SIZE)
    np.testing.assert_array_equal(rec2.events, rec.events)


def _strip_header(path, drop):
    """Rewrite ``path`` without the header lines that start with any of ``drop``."""
    data = path.read_bytes()
    lines, body = [], data
    while body.startswith(b"%"):
        line, body = body.split(b"\n", 1)
        lines.append(line)
    kept = [l for l in lines if not any(l.startswith(d) for d in drop)]
    path.write_bytes(b"".join(l + b"\n" for l in kept) + body)
    return [l for l in lines if l not in kept]


@pytest.mark.parametrize("version,ext,drop", [
    ("evt2", ".raw", (b"% geometry", b"% format")),
    ("evt3", ".raw", (b"% geometry", b"% format")),
    ("dat2", ".dat", (b"% Width", b"% Height")),
])
def test_sensor_size_the_header_does_not_state_comes_from_the_user(tmp_path, version, ext,
                                                                   drop):
    path = tmp_path / f"nogeo{ext}"
    written = _write(path, version)
    assert len(_strip_header(path, drop)) == 2
    with pytest.raises(ValueError, match=r"does not state the sensor size.*--sensor W H"):
        read_events(path)                    # never a silent fallback (faery's is 1280 x 720)
    rec = read_events(path, sensor_size=SIZE)
    assert rec.sensor_size == SIZE
    _same(rec.events, written)
    _same(rec.events, _faery_output(path, dimensions_fallback=SIZE))
    # a sensor smaller than the events is an error, not clipping
    with pytest.raises(ValueError, match="x overflow"):
        read_events(path, sensor_size=(10, SIZE[1]))


def test_prophesee_header_disagreements_and_missing_version(tmp_path):
    path = tmp_path / "rec.raw"
    written = _write(path, "evt2")
    with pytest.raises(ValueError, match=r"sensor_size \(640, 480\) differs from the header"):
        read_events(path, sensor_size=(640, 480))
    with pytest.raises(ValueError, match="version 'evt3' differs from the header's 'evt2'"):
        read_events(path, format="evt3")
    _strip_header(path, (b"% evt", b"% format"))
    with pytest.raises(ValueError, match="does not state the format version"):
        read_events(path)
    _same(read_events(path, format="evt2").events, written)
    with pytest.raises(ValueError, match="version must be one of"):
        read_prophesee(path, version="dat2")


def test_evt3_wrap_across_a_gap_is_refused_not_misread(tmp_path):
    # faery 0.7.1 writes this correctly (time-high 4095 -> 1 across the wrap) but decodes the
    # later events with stuck timestamps; the reader refuses such a file
    ev = np.zeros(3, faery.EVENTS_DTYPE)
    ev["t"] = [(1 << 24) - 5000, (1 << 24) + 5000, (1 << 24) + 9000]
    ev["x"], ev["y"], ev["on"] = 1, 2, True
    path = tmp_path / "gap.raw"
    _write(path, "evt3", ev, zero_t0=False)
    assert not np.array_equal(_faery_output(path)["t"], ev["t"])     # the library's bug
    with pytest.raises(ValueError, match="time-high jumps across its 2\\*\\*24 us wrap"):
        read_events(path)
    # EVT 2.0 (28-bit time-high of 64 us) has no such wrap within 4.7 hours
    path2 = tmp_path / "gap2.raw"
    _write(path2, "evt2", ev, zero_t0=False)
    _same(read_events(path2).events, ev)


@pytest.mark.parametrize("version,ext,word", [("evt2", ".raw", 4), ("evt3", ".raw", 2),
                                              ("dat2", ".dat", 8)])
def test_prophesee_cut_inside_a_word_warns(tmp_path, version, ext, word):
    path = tmp_path / f"cut{ext}"
    written = _write(path, version)
    data = path.read_bytes()
    for left in range(1, word):
        path.write_bytes(data[:len(data) - word + left])
        with pytest.warns(TruncatedFileWarning,
                          match=f"ends inside a word, the last {left} byte"):
            rec = read_events(path)
        _same(rec.events, written[:len(rec.events)])
        assert len(rec.events) >= len(written) - 2
        with pytest.raises(ValueError, match="strict reading"):
            read_events(path, strict=True)
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a whole file: no warning
        _same(read_events(path).events, written)


def test_prophesee_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "nope.raw")
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01" * 7)
    with pytest.raises(ValueError, match="junk.dat"):
        read_events(junk)
    with pytest.raises(ValueError, match="unknown event file type '.txt'"):
        read_events(tmp_path / "a.txt")
    with pytest.raises(ValueError, match="format must be one of"):
        read_events(junk, format="evt4")


def test_read_events_dispatches_aedat4_and_nmnist(tmp_path):
    ev, size = _davis()
    rec = read_events(_davis_path())
    assert rec.sensor_size == AEDAT4_SENSOR
    np.testing.assert_array_equal(rec.events, ev)
    nm = tmp_path / "s.bin"
    small = from_structured(np.array([(1, 2, 10, 1), (33, 33, 20, 0)], EVENT_DTYPE))
    write_nmnist(nm, small)
    r = read_events(nm)
    assert r.sensor_size == (34, 34)
    np.testing.assert_array_equal(r.events, small)
    not_aedat = tmp_path / "x.aedat4"
    not_aedat.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an AEDAT4 file"):
        read_events(not_aedat)


def _davis_path():
    from golden.tests.test_events import AEDAT4_PATH
    return AEDAT4_PATH


# ---------------------------------------------------------------------------------------------
# truncated AEDAT4 (the real recording, cut as if the camera had been unplugged)
# ---------------------------------------------------------------------------------------------

@functools.cache
def _davis_bytes():
    _davis()                      # fails (not skips) when the recording is missing
    return _davis_path().read_bytes()


@pytest.mark.parametrize("cut", [3_000_000, 4_500_123])
def test_truncated_aedat4_returns_complete_packets_with_warning(tmp_path, cut):
    full, size = _davis()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(_davis_bytes()[:cut])
    with pytest.warns(TruncatedFileWarning, match=r"truncated AEDAT4 file: the last \d+ bytes") \
            as rec_w:
        rec = read_aedat4(path)
    msg = str(rec_w[0].message)
    n = len(rec.events)
    assert 10_000 < n < AEDAT4_N_EVENTS
    assert f"{n} events of" in msg and "into the recording" in msg
    lost = int(msg.split("the last ")[1].split(" bytes")[0])
    start = int(msg.split("from byte ")[1].split(":")[0])
    assert start + lost == cut
    np.testing.assert_array_equal(rec.events, full[:n])       # a prefix, event for event
    assert rec.sensor_size == size
    with pytest.raises(ValueError, match=r"truncated AEDAT4 file.*\(strict reading\)"):
        read_aedat4(path, strict=True)
    with pytest.raises(ValueError, match="strict reading"):
        read_events(path, strict=True)


def test_aedat4_cut_inside_the_header_and_corrupt_packet_are_errors(tmp_path):
    data = _davis_bytes()
    path = tmp_path / "head.aedat4"
    path.write_bytes(data[:1000])
    with pytest.raises(ValueError, match="AEDAT4"):
        read_aedat4(path)
    bad = bytearray(data)
    bad[4134:4334] = bytes(200)                 # inside the first (complete) packet
    path.write_bytes(bytes(bad))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # not a truncation warning: an error
        with pytest.raises(ValueError, match="corrupt AEDAT4 data in packet 0"):
            read_aedat4(path)


# ---------------------------------------------------------------------------------------------
# dv-processing field names
# ---------------------------------------------------------------------------------------------

def test_dv_processing_field_names():
    dt = np.dtype([("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "?")])
    a = np.array([(5, 1, 2, True), (7, 3, 4, False)], dt)
    out = from_structured(a)
    assert out.tolist() == [(1, 2, 5, 1), (3, 4, 7, 0)]
    both = np.zeros(1, [("t", "<i8"), ("timestamp", "<i8"), ("x", "<u2"), ("y", "<u2"),
                        ("p", "u1")])
    with pytest.raises(ValueError, match="'t' and 'timestamp' are both present"):
        from_structured(both)
    with pytest.raises(ValueError, match=r"missing field 'p' \(or 'polarity'\)"):
        from_structured(np.zeros(1, [("t", "<i8"), ("x", "<u2"), ("y", "<u2")]))


# ---------------------------------------------------------------------------------------------
# many windows in one pass
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,bin_us,d,pol", [(8, 1000, 4, True), (5, 3333, 1, False),
                                            (16, 250, 8, True)])
def test_bin_windows_equals_bin_events_per_window(T, bin_us, d, pol):
    ev, size = _davis()
    b = bin_windows(ev, size, T, bin_us, downsample=d, polarity_channels=pol)
    wc = window_coords(ev, size, T, bin_us, downsample=d, polarity_channels=pol)
    assert b.shape[0] == wc.n_windows == -(-(int(ev["t"][-1]) + 1 - int(ev["t"][0]))
                                           // (T * bin_us))
    assert wc.n_outside == 0 and wc.bounds[-1] == len(ev)
    rng = np.random.default_rng(T)
    for w in sorted({0, wc.n_windows - 1, *rng.integers(0, wc.n_windows, 6).tolist()}):
        ref = bin_events(ev, size, T, t_start=wc.window_start(w), t_end=wc.window_start(w + 1),
                         downsample=d, polarity_channels=pol)
        np.testing.assert_array_equal(b[w], ref, err_msg=f"window {w}")
    for w, t0, x in iter_windows(wc):
        assert t0 == wc.window_start(w)
        np.testing.assert_array_equal(x, b[w])


def test_bin_windows_explicit_range_counts_what_it_selects_out():
    ev, size = _davis()
    t0 = int(ev["t"][0]) + 500_000
    wc = window_coords(ev, size, 4, 10_000, t_start=t0, n_windows=3, downsample=8)
    inside = int(((ev["t"] >= t0) & (ev["t"] < t0 + 120_000)).sum())
    assert wc.n_outside == len(ev) - inside
    assert int(wc.bounds[-1]) == inside
    with pytest.raises(ValueError, match="bin_us must be an integer >= 1"):
        window_coords(ev, size, 4, 0)
    with pytest.raises(ValueError, match="out-of-range event coordinates"):
        window_coords(ev, (100, 100), 4, 1000)


def test_events_bench_runs_and_checks_its_results():
    from golden.events_bench import bench

    ev, size = _davis()
    r = bench(ev, size, T=4, bin_us=20_000, downsample=8, calls=3, repeat=1)
    assert r["windows"] == -(-(int(ev["t"][-1]) + 1 - int(ev["t"][0])) // 80_000)
    assert r["per_window_calls_measured"] == 3 and r["one_pass_ms"] > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 6), bin_us=st.integers(1, 50),
       d=st.integers(1, 4), shift=st.integers(-100, 100), n_windows=st.integers(1, 5))
def test_window_coords_equals_bin_events_property(seed, T, bin_us, d, shift, n_windows):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    size = (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 400, n))
    ev["x"], ev["y"] = rng.integers(0, size[0], n), rng.integers(0, size[1], n)
    ev["p"] = rng.integers(0, 2, n)
    t0 = 100 + shift
    wc = window_coords(ev, size, T, bin_us, t_start=t0, n_windows=n_windows, downsample=d)
    b = bin_windows(ev, size, T, bin_us, t_start=t0, n_windows=n_windows, downsample=d)
    inside = 0
    for w in range(n_windows):
        lo, hi = t0 + w * T * bin_us, t0 + (w + 1) * T * bin_us
        np.testing.assert_array_equal(
            b[w], bin_events(ev, size, T, t_start=lo, t_end=hi, downsample=d))
        inside += int(((ev["t"] >= lo) & (ev["t"] < hi)).sum())
    assert wc.n_outside == n - inside
