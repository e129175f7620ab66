"""``python -m host stream``: run a recording through the device window by window, in order, and
report the predictions over time and whether the device kept up with real time.

    python -m host stream --link emulator FILE [--checkpoint CK | --config CFG] [--steps T]
                          [--bin-us US] [--downsample D] [--sensor W H] [--windows K]
                          [--out DIR]

The recording is binned once (golden.events.window_coords) into consecutive windows of ``T``
steps of ``--bin-us`` from its first event. Each window is one sample of the device, inference
only, pipelined (protocol v2: a window of ``SAMPLE`` frames in flight). The network: a
checkpoint, a config, or (neither) the default network sized for the data with its initial
random weights (then the predictions mean nothing, the timing does).

**State between windows.** By default every window starts from reset membranes and traces.
``--continuous`` carries them from window to window on the device (``SAMPLE`` with
``KEEP_STATE``, protocol v2; bit-exact golden.stream.run_stream); a v1 device refuses it.

**Real time.** ``real-time factor`` = recording time of the windows / processing time (host
binning + device). Each window's processing time is checked against its duration in the
recording (``T * bin_us``) with golden.stream.Deadline: the windows that missed, the first one,
and the events per second the device sustained before it. Measured on the machine that runs
it (wall clock).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import datasets

__all__ = ["add_parser", "cmd_stream"]


def add_parser(sub, link_args) -> None:
    s = sub.add_parser("stream", help="run a recording window by window, in real-time terms")
    link_args(s)
    s.add_argument("file", metavar="FILE", help="a recording: .aedat4, .raw, .dat, .bin")
    datasets.add_data_args(s, default=None, with_data=False)
    src = s.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, default=None)
    src.add_argument("--config", type=Path, default=None, help="NetConfig JSON")
    s.add_argument("--windows", type=int, default=None, help="stop after K windows")
    s.add_argument("--continuous", action="store_true",
                   help="carry membranes and traces across windows (SAMPLE KEEP_STATE, "
                        "protocol v2; golden.stream.run_stream)")
    s.add_argument("--out", type=Path, default=Path("out/stream"))


def cmd_stream(args, open_device, read_checkpoint, warn) -> dict:
    """Run ``stream``; return the summary (also written to ``--out``/stream.json)."""
    from golden.config import NetConfig
    from golden.events import iter_windows
    from golden.stream import Deadline

    from . import plots

    args.data = args.file
    if args.windows is not None and args.windows < 1:
        raise datasets.DataError(f"--windows must be >= 1, got {args.windows}")
    cfg = None
    if args.checkpoint is not None:
        cfg, where = read_checkpoint(args.checkpoint), f"the checkpoint ({args.checkpoint})"
    elif args.config is not None:
        if not args.config.is_file():
            raise datasets.DataError(f"--config {args.config}: file not found")
        try:
            cfg, where = NetConfig.from_json(args.config), f"the config ({args.config})"
        except (ValueError, KeyError, TypeError) as exc:
            raise datasets.DataError(f"--config {args.config}: {exc}") from None
    plan = datasets.plan(args, cfg.T if cfg else NetConfig().T)
    if plan.kind != "file":
        raise datasets.DataError(f"stream takes a recording FILE, got {args.file}")
    datasets.fit_downsample(plan, cfg.layers[0] if cfg else None)
    datasets.check_size(plan)
    untrained = cfg is None
    if cfg is None:
        base = NetConfig()
        cfg, where = base.replace(layers=(plan.n_in, *base.layers[1:]), T=plan.T), \
            "the default network"
    datasets.check_network(plan, cfg, where)
    warn(plan)
    print(f"data {plan.describe()}; network layers {cfg.layers}, T {cfg.T}"
          + (" (untrained: initial random weights)" if untrained else ""), flush=True)
    t_bin = time.perf_counter()
    wc = datasets.load_recording(plan)
    bin_s = time.perf_counter() - t_bin
    n = wc.n_windows if args.windows is None else min(args.windows, wc.n_windows)
    ev = plan.recording.events
    t_first = int(ev["t"][0])
    window_us = plan.T * plan.bin_us
    dl = Deadline(budget=window_us)
    preds, starts, costs = [], [], []
    with open_device(args, cfg) as acc:
        if args.continuous and acc.version < 2:
            raise datasets.DataError(f"--continuous needs protocol version 2 (SAMPLE "
                                     f"KEEP_STATE); {args.link} speaks version {acc.version}")
        if args.checkpoint is not None:
            acc.restore(args.checkpoint)
        else:
            acc.configure(cfg)
        acc.set_outputs(spikes=False, flips=False)
        windows = iter_windows(wc)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm
            bar = tqdm(total=n, desc="stream", unit="window", leave=False, dynamic_ncols=True)
        meta = []

        def xs():
            for _ in range(n):
                w, ws, x = next(windows)
                meta.append((w, ws))
                yield x

        t0 = c0 = time.perf_counter()
        # pipelined: a window's cost is the time since the previous window's answer
        for k, r in enumerate(acc.run_samples(xs(), keep_state=args.continuous)):
            c1 = time.perf_counter()
            cost_us = (c1 - c0) * 1e6
            c0 = c1
            w, ws = meta[k]
            dl.observe(cost_us, int(wc.bounds[w + 1] - wc.bounds[w]))
            preds.append(r.prediction)
            starts.append((ws - t_first) / 1e6)
            costs.append(cost_us)
            if bar is not None:
                bar.update()
        run_s = time.perf_counter() - t0
        if bar is not None:
            bar.close()
    # the recording time the windows cover (the last window may reach past the last event)
    rec_s = min(n * window_us, int(ev["t"][-1]) + 1 - t_first) / 1e6
    proc_s = run_s + bin_s
    step = max(1, n // 20)
    for k in range(0, n, step):
        print(f"t = {starts[k]:8.3f} s  window {k:5d}: predicted {preds[k]}  "
              f"({costs[k] / 1e3:.1f} ms for {window_us / 1e3:g} ms)")
    before = (dl.events_before_first_miss / (dl.first_missed * window_us / 1e6)
              if dl.first_missed else None)
    summary = {
        "file": str(plan.path),
        "mode": ("continuous on the device (SAMPLE KEEP_STATE = golden.stream.run_window)"
                 if args.continuous else "windows from reset on the device"),
        "link": args.link, "config": cfg.to_dict(), "untrained": untrained,
        "T": plan.T, "bin_us": plan.bin_us, "downsample": plan.downsample, "n_in": plan.n_in,
        "windows": n, "events": int(wc.bounds[n]), "events_outside_windows": wc.n_outside
        if n == wc.n_windows else int(len(ev) - wc.bounds[n]),
        "recording_s": rec_s, "binning_s": bin_s, "device_s": run_s, "processing_s": proc_s,
        "real_time_factor": rec_s / proc_s, "real_time_factor_device": rec_s / run_s,
        "window_deadline_us": window_us, "windows_missed": dl.missed,
        "first_missed_window": dl.first_missed,
        "first_missed_s": None if dl.first_missed is None else starts[dl.first_missed],
        "events_per_s_before_first_miss": before,
        "worst_window_us": dl.worst, "predictions": preds,
    }
    print(f"{n} windows ({rec_s:.3f} s of recording, {summary['events']} events) in "
          f"{proc_s:.3f} s (binning {bin_s * 1e3:.0f} ms, device {run_s:.3f} s): "
          f"real-time factor {summary['real_time_factor']:.2f}; mode: {summary['mode']}")
    if dl.first_missed is None:
        print(f"deadline: every window processed within its {window_us / 1e3:g} ms "
              f"(worst {dl.worst / 1e3:.1f} ms)")
    else:
        print(f"deadline: {dl.missed} of {n} windows took longer than their "
              f"{window_us / 1e3:g} ms; first at window {dl.first_missed} "
              f"(t = {summary['first_missed_s']:.3f} s), "
              + (f"{before:.0f} events/s sustained before it" if before is not None else
                 "the very first window"))
    print(f"predictions per class {np.bincount(preds, minlength=cfg.layers[-1]).tolist()}")
    from .outdir import staged

    with staged(args.out) as out:           # all three files, or none
        plots.plot_event_rate(ev["t"], out / "event_rate.png", f"{plan.spec}: {len(ev)} events")
        plots.plot_predictions(starts, preds, out / "predictions.png", cfg.layers[-1],
                               f"{Path(plan.spec).name}: prediction per window "
                               f"({'continuous' if args.continuous else 'from reset'})")
        (out / "stream.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}/stream.json, event_rate.png, predictions.png")
    return summary
