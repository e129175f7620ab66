"""Benchmark: binning a long recording into windows, one call per window vs one pass.

    python -m golden.events_bench [--json FILE] [FILE.aedat4|.raw|.dat ...]

Without files it measures a seeded synthetic recording of the issue's size (10 s, 1.2 M events,
346 x 260, sorted uniform times); every FILE given is measured too (read with
golden.events.read_events; the read time is reported). For each recording:

* ``per_window_ms``: :func:`golden.events.bin_events` with an explicit window, called on the
  whole array (what a loop over windows did before): mean of ``--calls`` calls, spread over the
  recording;
* ``one_pass_ms``: :func:`golden.events.bin_windows`, every window at once;
* ``iter_ms``: :func:`golden.events.window_coords` + :func:`golden.events.iter_windows` over
  every window (one window in memory at a time);
* the results are checked equal (``bin_windows`` against the per-window calls measured).

Figures are wall-clock on whatever machine runs it (state it when quoting them); docs/events.md
holds the last run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from golden.events import (EVENT_DTYPE, bin_events, bin_windows, iter_windows, read_events,
                           window_coords)

__all__ = ["synthetic_recording", "bench", "main"]


def synthetic_recording(n=1_200_000, seconds=10.0, size=(346, 260), seed=0) -> np.ndarray:
    """Seeded, sorted, uniform events: ``n`` events over ``seconds`` on a ``size`` sensor."""
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, int(seconds * 1e6), n))
    ev["x"] = rng.integers(0, size[0], n)
    ev["y"] = rng.integers(0, size[1], n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench(events, size, T=8, bin_us=1000, downsample=4, calls=10, repeat=5) -> dict:
    """Figures for one recording (see the module docstring)."""
    wc = window_coords(events, size, T, bin_us, downsample=downsample)
    n_win = wc.n_windows
    one, b = _best(lambda: bin_windows(events, size, T, bin_us, downsample=downsample), repeat)

    def iterate():
        w = window_coords(events, size, T, bin_us, downsample=downsample)
        return sum(int(x.sum()) for _, _, x in iter_windows(w))

    it, total = _best(iterate, repeat)
    assert total == int(b.sum())
    pick = np.linspace(0, n_win - 1, min(calls, n_win)).astype(int)
    per = []
    for k in pick:
        t0 = time.perf_counter()
        x = bin_events(events, size, T, t_start=wc.window_start(k),
                       t_end=wc.window_start(k + 1), downsample=downsample)
        per.append(time.perf_counter() - t0)
        if not np.array_equal(x, b[k]):
            raise AssertionError(f"bin_windows differs from bin_events in window {k}")
    span_s = (int(events["t"][-1]) - int(events["t"][0]) + 1) / 1e6
    return {
        "events": int(len(events)), "span_s": span_s, "sensor": list(size), "T": T,
        "bin_us": bin_us, "downsample": downsample, "n_in": wc.n_in, "windows": n_win,
        "per_window_ms": 1e3 * float(np.mean(per)), "per_window_calls_measured": len(per),
        "per_window_loop_s_estimated": float(np.mean(per)) * n_win,
        "one_pass_ms": 1e3 * one, "iter_ms": 1e3 * it,
        "speedup_one_pass": float(np.mean(per)) * n_win / one,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golden.events_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bin-us", type=int, default=1000)
    ap.add_argument("--downsample", type=int, default=4)
    ap.add_argument("--calls", type=int, default=10, help="per-window calls to time")
    a = ap.parse_args(argv)
    for f in a.files:
        if not f.is_file():
            print(f"error: {f}: file not found", file=sys.stderr)
            return 2
    results = []
    recs = [("synthetic 10 s, 1.2 M events (seed 0)", None, None)] + [(str(f), f, None)
                                                                     for f in a.files]
    for name, path, _ in recs:
        if path is None:
            ev, size, read_s = synthetic_recording(), (346, 260), None
        else:
            t0 = time.perf_counter()
            try:
                rec = read_events(path)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            read_s = time.perf_counter() - t0
            ev, size = rec.events, rec.sensor_size
        r = {"recording": name, "read_s": read_s,
             **bench(ev, size, a.steps, a.bin_us, a.downsample, a.calls)}
        results.append(r)
        print(f"{name}: {r['events']} events, {r['span_s']:.2f} s, {r['windows']} windows of "
              f"{r['T']} x {r['bin_us']} us, n_in {r['n_in']}"
              + (f"; read {read_s * 1e3:.0f} ms" if read_s is not None else ""))
        print(f"  bin_events per window  {r['per_window_ms']:8.2f} ms/call "
              f"(x {r['windows']} windows = {r['per_window_loop_s_estimated']:.1f} s)")
        print(f"  bin_windows one pass   {r['one_pass_ms']:8.1f} ms for all windows "
              f"({r['speedup_one_pass']:.0f}x)")
        print(f"  window_coords + iter   {r['iter_ms']:8.1f} ms for all windows")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": platform.machine(), "python":
                                      platform.python_version(), "numpy": np.__version__,
                                      "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
