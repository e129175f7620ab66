"""Tests of golden/events.py: representation, N-MNIST and AEDAT4 readers, binning."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.events import (
    EVENT_DTYPE,
    bin_counts,
    bin_events,
    binned_size,
    from_structured,
    make_events,
    read_aedat4,
    read_nmnist,
    write_nmnist,
)

def _shared_data(name: str) -> Path:
    """``shared/data/<name>`` in the nearest folder above the repository that has it (CI has
    ../shared beside the clone; a worktree /work/wt/<name> finds /work/shared)."""
    here = Path(__file__).resolve()
    for parent in here.parents[3:]:
        if (parent / "shared/data" / name).is_file():
            return parent / "shared/data" / name
    return here.parents[3] / "shared/data" / name


AEDAT4_PATH = _shared_data("davis346.aedat4")
AEDAT4_N_EVENTS = 78_830
AEDAT4_SENSOR = (346, 260)


def ev(x, y, t, p):
    return make_events(np.asarray(x), np.asarray(y), np.asarray(t), np.asarray(p))


# ---------------------------------------------------------------------------------------------
# representation
# ---------------------------------------------------------------------------------------------

def test_from_structured_any_field_order_and_extra_fields():
    dt = np.dtype([("p", "?"), ("t", "<u8"), ("junk", "f4"), ("y", "<i4"), ("x", "<u2")])
    a = np.zeros(3, dtype=dt)
    a["x"], a["y"], a["t"], a["p"] = [1, 2, 3], [4, 5, 6], [10, 20, 30], [True, False, True]
    out = from_structured(a)
    assert out.dtype == EVENT_DTYPE
    assert out["x"].tolist() == [1, 2, 3]
    assert out["y"].tolist() == [4, 5, 6]
    assert out["t"].tolist() == [10, 20, 30]
    assert out["p"].tolist() == [1, 0, 1]
    out["x"][0] = 99                     # a copy, never a view of the input
    assert a["x"][0] == 1


def test_from_structured_accepts_field_title_like_aedat():
    # the aedat package names polarity "on" with title "p"
    dt = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), (("p", "on"), "?")])
    a = np.zeros(2, dtype=dt)
    a["on"] = [True, False]
    assert from_structured(a)["p"].tolist() == [1, 0]


@pytest.mark.parametrize("missing", ["x", "y", "t", "p"])
def test_from_structured_missing_field(missing):
    dt = np.dtype([(f, "<i8") for f in "xytp" if f != missing])
    with pytest.raises(ValueError, match=f"missing field '{missing}'"):
        from_structured(np.zeros(2, dtype=dt))


@pytest.mark.parametrize("field,value", [("x", -1), ("y", 70000), ("p", 2), ("p", -1)])
def test_from_structured_bad_values(field, value):
    a = np.zeros(2, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    a[field][1] = value
    with pytest.raises(ValueError, match=f"'{field}'"):
        from_structured(a)


def test_from_structured_rejects_non_structured_and_float_t():
    with pytest.raises(ValueError, match="structured"):
        from_structured(np.zeros((3, 4)))
    a = np.zeros(1, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("p", "u1")])
    with pytest.raises(ValueError, match="'t'"):
        from_structured(a)


# ---------------------------------------------------------------------------------------------
# N-MNIST
# ---------------------------------------------------------------------------------------------

def test_nmnist_decode_known_bytes():
    raw = bytes([5, 7, 0x80 | 0x12, 0x34, 0x56,      # x=5, y=7, ON, t=0x123456
                 33, 0, 0x00, 0x00, 0x01,            # x=33, y=0, OFF, t=1
                 255, 255, 0x7F, 0xFF, 0xFF])        # max x, y, t, OFF
    e = read_nmnist(raw)
    assert e.dtype == EVENT_DTYPE
    assert e["x"].tolist() == [5, 33, 255]
    assert e["y"].tolist() == [7, 0, 255]
    assert e["p"].tolist() == [1, 0, 0]
    assert e["t"].tolist() == [0x123456, 1, 2**23 - 1]


def test_nmnist_overflow_marker_record():
    raw = bytes([1, 2, 0x00, 0x00, 0x10,             # t=16
                 0, 240, 0x00, 0x00, 0x00,           # overflow marker: +2**13 from here on
                 3, 4, 0x80, 0x00, 0x05])            # t=5 -> 5 + 8192
    e = read_nmnist(raw)
    assert len(e) == 2
    assert e["t"].tolist() == [16, 5 + 2**13]
    assert e["p"].tolist() == [0, 1]


def test_nmnist_bad_length():
    with pytest.raises(ValueError, match="multiple of 5"):
        read_nmnist(b"\x00" * 7)


def test_nmnist_file_roundtrip(tmp_path):
    e = ev([0, 33, 255], [0, 33, 17], [0, 1000, 2**23 - 1], [1, 0, 1])
    f = tmp_path / "sample.bin"
    write_nmnist(f, e)
    assert f.stat().st_size == 15
    np.testing.assert_array_equal(read_nmnist(f), e)
    np.testing.assert_array_equal(read_nmnist(str(f)), e)
    with open(f, "rb") as fh:
        np.testing.assert_array_equal(read_nmnist(fh), e)


_nmnist_event = st.tuples(st.integers(0, 255),
                          st.integers(0, 255).filter(lambda v: v != 240),
                          st.integers(0, 2**23 - 1),
                          st.integers(0, 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(_nmnist_event, max_size=50))
def test_nmnist_roundtrip_hypothesis(rows):
    cols = list(zip(*rows)) if rows else [[], [], [], []]
    e = ev(*(np.asarray(c, dtype=np.int64) for c in cols))
    buf = io.BytesIO()
    write_nmnist(buf, e)
    data = buf.getvalue()
    assert len(data) == 5 * len(rows)
    back = read_nmnist(data)
    assert back.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(back, e)


@pytest.mark.parametrize("field,value", [("x", 256), ("y", 256), ("y", 240),
                                         ("t", 2**23), ("t", -1)])
def test_write_nmnist_rejects(field, value):
    cols = {"x": [1, 2], "y": [1, 2], "t": [0, 1], "p": [0, 1]}
    cols[field] = [cols[field][0], value]
    with pytest.raises(ValueError, match=f"'{field}'"):
        write_nmnist(io.BytesIO(), ev(cols["x"], cols["y"], cols["t"], cols["p"]))


# ---------------------------------------------------------------------------------------------
# binning: hand-made cases
# ---------------------------------------------------------------------------------------------

def test_bin_boundary_goes_to_later_bin_and_t_end_is_open():
    # sensor 1x1, polarity ignored; window [0, 8), T=4 -> bins [0,2) [2,4) [4,6) [6,8)
    e = ev([0] * 5, [0] * 5, [1, 2, 4, 7, 8], [1] * 5)
    c = bin_counts(e, (1, 1), 4, t_start=0, t_end=8, polarity_channels=False)
    assert c[:, 0].tolist() == [1, 1, 1, 1]       # t=2 -> bin 1, t=4 -> bin 2, t=8 dropped
    b = bin_events(e, (1, 1), 4, t_start=0, t_end=8, polarity_channels=False)
    assert b.dtype == bool and b.shape == (4, 1) and b.all()


def test_bin_non_integer_width_exact():
    # window [0, 10), T=3 -> edges 0, 10/3, 20/3, 10
    e = ev([0] * 6, [0] * 6, [0, 3, 4, 6, 7, 9], [1] * 6)
    c = bin_counts(e, (1, 1), 3, t_start=0, t_end=10, polarity_channels=False)
    assert c[:, 0].tolist() == [2, 2, 2]
    # window [0, 9), T=3 -> integer edges 0, 3, 6: t=3 and t=6 sit on edges -> later bin
    c = bin_counts(e[:5], (1, 1), 3, t_start=0, t_end=9, polarity_channels=False)
    assert c[:, 0].tolist() == [1, 2, 2]


def test_default_window_covers_all_events():
    # default t_start = t[0] = 100, t_end = t[-1] + 1 = 110 -> width 5: [100,105) [105,110)
    e = ev([0, 0, 0, 0], [0, 0, 0, 0], [100, 104, 105, 109], [1, 1, 1, 1])
    c = bin_counts(e, (1, 1), 2, polarity_channels=False)
    assert c[:, 0].tolist() == [2, 2]
    assert c.sum() == len(e)


def test_explicit_window_selects_events():
    e = ev([0, 1, 2, 0], [0, 0, 0, 0], [5, 10, 19, 20], [1, 1, 1, 1])
    c = bin_counts(e, (3, 1), 1, t_start=10, t_end=20, polarity_channels=False)
    assert c.tolist() == [[0, 1, 1]]              # t=5 before, t=20 at t_end: dropped
    c = bin_counts(e, (3, 1), 1, t_start=10, polarity_channels=False)   # t_end = 21
    assert c.tolist() == [[1, 1, 1]]


def test_on_off_channel_mapping():
    # W=3, H=2 -> plane 6; ON block [0, 6), OFF block [6, 12)
    e = ev([2, 2, 0], [1, 1, 0], [0, 1, 2], [1, 0, 1])
    b = bin_events(e, (3, 2), 1)
    assert b.shape == (1, 12)
    assert np.flatnonzero(b[0]).tolist() == [0, 5, 11]   # ON(0,0)=0, ON(2,1)=5, OFF(2,1)=6+5
    b = bin_events(e, (3, 2), 1, polarity_channels=False)
    assert b.shape == (1, 6)
    assert np.flatnonzero(b[0]).tolist() == [0, 5]
    assert binned_size((3, 2)) == 12 and binned_size((3, 2), polarity_channels=False) == 6


def test_on_channel_order_matches_digits_encoder():
    # ON channel of pixel i is channel i, OFF is i + n_pixels (as golden.data.encode_digits)
    e = ev([1], [0], [0], [1])
    assert np.flatnonzero(bin_events(e, (2, 2), 1)[0]).tolist() == [1]
    e = ev([1], [0], [0], [0])
    assert np.flatnonzero(bin_events(e, (2, 2), 1)[0]).tolist() == [4 + 1]


def test_downsample_grid_and_ceil():
    # W=5, H=3, d=2 -> W'=3, H'=2
    e = ev([4, 1, 0], [2, 1, 0], [0, 1, 2], [1, 1, 0])
    b = bin_events(e, (5, 3), 1, downsample=2)
    assert b.shape == (1, 12) and binned_size((5, 3), downsample=2) == 12
    # (4,2)->(2,1)=5 ON; (1,1)->(0,0)=0 ON; (0,0)->(0,0)=0 OFF -> 6
    assert np.flatnonzero(b[0]).tolist() == [0, 5, 6]
    c = bin_counts(ev([0, 1, 0, 1], [0, 0, 1, 1], [0] * 4, [1] * 4), (2, 2), 1, downsample=2)
    assert c.tolist() == [[4, 0]]


def test_tonic_sensor_size_with_polarity_accepted():
    e = ev([0], [0], [0], [1])
    assert bin_events(e, (2, 2, 2), 1).shape == (1, 8)


def test_empty_events_with_explicit_window():
    e = np.empty(0, dtype=EVENT_DTYPE)
    b = bin_events(e, (4, 4), 3, t_start=0, t_end=30)
    assert b.shape == (3, 32) and not b.any()


# ---------------------------------------------------------------------------------------------
# binning: errors
# ---------------------------------------------------------------------------------------------

def _ok():
    return ev([0, 1, 2], [0, 1, 1], [0, 5, 9], [1, 0, 1])


@pytest.mark.parametrize("kwargs,field", [
    (dict(sensor_size=(2, 2), T=2), "'x'"),                        # x = 2 >= W = 2
    (dict(sensor_size=(3, 1), T=2), "'y'"),                        # y = 1 >= H = 1
    (dict(sensor_size=(3, 2), T=0), "T"),
    (dict(sensor_size=(3, 2), T=-3), "T"),
    (dict(sensor_size=(3, 2), T=1.5), "T"),
    (dict(sensor_size=(3, 2), T=2, t_start=5, t_end=5), "t_end"),
    (dict(sensor_size=(3, 2), T=2, t_start=9, t_end=3), "t_end"),
    (dict(sensor_size=(3, 2), T=2, t_start=100), "t_end"),         # default t_end = 10 <= 100
    (dict(sensor_size=(3, 2), T=2, downsample=0), "downsample"),
    (dict(sensor_size=(3,), T=2), "sensor_size"),
    (dict(sensor_size=(0, 2), T=2), "sensor_size"),
])
@pytest.mark.parametrize("fn", [bin_events, bin_counts])
def test_binning_errors(fn, kwargs, field):
    with pytest.raises(ValueError, match=field):
        fn(_ok(), **kwargs)


def test_out_of_range_message_names_range():
    with pytest.raises(ValueError, match=r"out-of-range event coordinates.*'x'.*\[0, 1\]"):
        bin_events(_ok(), (2, 2), 2)


def test_out_of_range_checked_outside_window_too():
    # the offending event is outside the explicit window: still an error, never clipped/hidden
    e = ev([0, 7], [0, 0], [0, 100], [1, 1])
    with pytest.raises(ValueError, match="out-of-range event coordinates"):
        bin_events(e, (2, 1), 1, t_start=0, t_end=10)


def test_unsorted_timestamps():
    e = ev([0, 0, 0], [0, 0, 0], [0, 5, 4], [1, 1, 1])
    with pytest.raises(ValueError, match=r"'t' must be non-decreasing.*t\[2\]"):
        bin_events(e, (1, 1), 2)
    # equal timestamps are fine
    assert bin_counts(ev([0, 0], [0, 0], [3, 3], [1, 1]), (1, 1), 1).sum() == 2


def test_empty_events_need_window():
    with pytest.raises(ValueError, match="t_start"):
        bin_events(np.empty(0, dtype=EVENT_DTYPE), (2, 2), 2)


def test_missing_field_in_binning():
    a = np.zeros(2, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8")])
    with pytest.raises(ValueError, match="missing field 'p'"):
        bin_events(a, (2, 2), 1)


def test_count_overflow_raises():
    n = 65536
    e = ev(np.zeros(n, int), np.zeros(n, int), np.zeros(n, int), np.ones(n, int))
    with pytest.raises(ValueError, match="counts"):
        bin_counts(e, (1, 1), 1)
    assert bin_events(e, (1, 1), 1).sum() == 1


# ---------------------------------------------------------------------------------------------
# AEDAT4: the real recording
# ---------------------------------------------------------------------------------------------

@functools.cache
def _read_davis():
    return read_aedat4(AEDAT4_PATH)


def _davis():
    """The recording, read once; a missing file FAILS the calling test (never skips)."""
    if not AEDAT4_PATH.is_file():
        pytest.fail(f"test data missing: expected the DAVIS346 recording at {AEDAT4_PATH} "
                    f"(the 'shared' folder beside the repository root, shared/data/"
                    f"davis346.aedat4). It is required, not optional.")
    return _read_davis()


def test_aedat4_counts_and_sensor():
    events, size = _davis()
    assert events.dtype == EVENT_DTYPE
    assert len(events) == AEDAT4_N_EVENTS
    assert size == AEDAT4_SENSOR
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["x"].max() < 346 and events["y"].max() < 260
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    span = int(events["t"][-1] - events["t"][0])
    assert 2_300_000 < span < 2_400_000          # README: 2.36 s


def test_aedat4_binning_matches_independent_count():
    events, size = _davis()
    T, d = 8, 2
    b = bin_events(events, size, T, downsample=d)
    assert b.shape == (T, 2 * 173 * 130)

    # independent recomputation: bin edges by ceil, then unique (bin, polarity, y', x') tuples
    t = events["t"].astype(np.int64)
    t0, t1 = int(t[0]), int(t[-1]) + 1
    span = t1 - t0
    edges = np.array([t0 + -(-k * span // T) for k in range(1, T)], dtype=np.int64)
    k = np.searchsorted(edges, t, side="right")
    tuples = np.stack([k, events["p"].astype(np.int64), events["y"] // d, events["x"] // d],
                      axis=1)
    expected = len(np.unique(tuples, axis=0))
    assert int(b.sum()) == expected
    # and the per-bin totals agree too
    for kk in range(T):
        sel = tuples[tuples[:, 0] == kk]
        assert int(b[kk].sum()) == len(np.unique(sel, axis=0))

    c = bin_counts(events, size, T, downsample=d)
    assert int(c.sum()) == AEDAT4_N_EVENTS
    np.testing.assert_array_equal(c > 0, b)
    # ON block gets the p == 1 events
    assert int(c[:, : 173 * 130].sum()) == int((events["p"] == 1).sum())


def test_aedat4_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_aedat4(tmp_path / "nope.aedat4")
    bad = tmp_path / "bad.aedat4"
    bad.write_bytes(b"not an aedat file at all")
    with pytest.raises(ValueError, match="AEDAT4"):
        read_aedat4(bad)
