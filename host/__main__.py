"""Command line: train on the accelerator, evaluate a checkpoint, read the status.

    python -m host train --link emulator|sim|serial:PORT[@BAUD]|tcp:HOST:PORT
                         --data digits|mnist|nmnist:DIR [--steps T] [--bin-us US]
                         [--downsample D] [--sensor W H] --epochs N [--samples K]
                         [--test-samples K] [--out DIR] [--optimizer bso|tbso] [--config FILE]
                         [--resume CHECKPOINT]
    python -m host eval --checkpoint FILE --link ... --data digits|mnist|nmnist:DIR|FILE
                        [binning options] [--test-samples K] [--out DIR]
    python -m host stream --link ... FILE [--checkpoint CK | --config CFG] [binning options]
    python -m host status --link ...
    python -m host bench --link emulator|sim[:verilator] --data digits --samples N [--json F]

``train`` streams the data set through the device with learning on, prints held-out accuracy
per epoch and writes ``accuracy.png``, ``flips_per_step.png``, ``raster.png`` (and, for event
data, ``event_rate.png``), ``checkpoint.npz``, ``history.json`` and ``config.json`` into
``--out``. Without ``--config`` the network is the default one sized for the data
(``layers[0]`` = the data's inputs, ``T`` = ``--steps``). ``eval`` of a labelled data set prints
the held-out accuracy; of a recording (FILE) the prediction of each window, and writes
``event_rate.png``, ``raster.png`` and ``predictions.png``. ``--data`` and the binning options:
host/datasets.py. Every bad input is one line ``error: ...`` and exit code 2, found before any
work; outputs are written to a temporary folder and moved into ``--out`` at the end, so a failed
run leaves nothing behind. ``train --resume CK`` continues the run that wrote ``CK`` (its
config, data options, samples and shuffle seed) up to ``--epochs`` in total.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import bench, datasets, outdir, stream

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line ``error: ...`` (exit code 2), as every other bad input."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m host", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    def link_args(sp):
        sp.add_argument("--link", default="emulator",
                        help="emulator | sim[:verilator|:icarus] | serial:PORT[@BAUD] | "
                             "tcp:HOST:PORT")
        sp.add_argument("--baud", type=int, default=None,
                        help="serial baud rate (default: the --manifest's, else 115200)")
        sp.add_argument("--manifest", type=Path, default=None,
                        help="the board's build report (report.json of `python -m hdl_gen "
                             "build`): the serial link's default baud rate (its link.baud)")
        sp.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for an answer (serial/tcp, default 1); on "
                             "sim, how long simulated time may stand still (default 20)")
        sp.add_argument("--retries", type=int, default=8, help="resends of one command")
        sp.add_argument("--test-samples", type=int, default=None,
                        help="evaluate on the first K held-out samples only")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="learn on the device")
    link_args(t)
    datasets.add_data_args(t)
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--samples", type=int, default=None,
                   help="training samples per epoch (default: all 1437)")
    t.add_argument("--out", type=Path, default=Path("out/host"))
    t.add_argument("--optimizer", choices=["bso", "tbso"], default=None)
    t.add_argument("--config", type=Path, default=None, help="NetConfig JSON (or hdl_gen manifest)")
    t.add_argument("--shuffle-seed", type=int, default=None, help="(default 0)")
    t.add_argument("--resume", type=Path, default=None, metavar="CHECKPOINT",
                   help="continue the run that wrote CHECKPOINT up to --epochs in total (its "
                        "config, data options, samples and shuffle seed)")

    e = sub.add_parser("eval", help="inference only, from a checkpoint")
    link_args(e)
    e.add_argument("--checkpoint", type=Path, required=True)
    datasets.add_data_args(e)
    e.add_argument("--out", type=Path, default=Path("out/eval"),
                   help="where the figures of a recording go")

    stream.add_parser(sub, link_args)
    bench.add_parser(sub)

    s = sub.add_parser("status", help="print the device status block")
    link_args(s)
    return p


def _open(args, cfg=None):
    from .accelerator import Accelerator
    from .link import open_link

    # cfg: what a simulated RTL is generated for (the emulator stays reconfigurable)
    link = open_link(args.link, timeout=args.timeout, baud=args.baud or args.manifest_baud,
                     cfg=cfg if args.link.startswith("sim") else None)
    for note in getattr(link, "latency_notes", ()):
        print(f"warning: {note}", file=sys.stderr)
    try:
        return Accelerator(link, retries=args.retries)
    except BaseException:
        link.close()
        raise


def _labelled(plan, test_samples: int | None, progress):
    from golden.data import Dataset

    d = datasets.load_labelled(plan, progress)
    if test_samples is not None:
        d = Dataset(d.x_train, d.y_train, d.x_test[:test_samples], d.y_test[:test_samples], d.name)
    return d


def _warn(plan):
    for n in plan.notes:
        print(n, flush=True)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    plan.warnings.clear()
    plan.notes.clear()


def _check_labels(data, cfg):
    n_out = cfg.layers[-1]
    for name, y in (("train", data.y_train), ("test", data.y_test)):
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise datasets.DataError(f"{name} labels span {int(y.min())}..{int(y.max())}, the "
                                     f"network has {n_out} outputs (layers[-1])")


def _progress(args, desc, unit="sample"):
    if args.no_progress:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def _file_progress(args):
    """progress(iterable, desc) for loading files."""
    if args.no_progress:
        return None
    from tqdm import tqdm

    return lambda it, desc: tqdm(it, desc=desc, unit="file", leave=False, dynamic_ncols=True)


def cmd_train(args) -> dict:
    """Run ``train``; return the summary written to history.json."""
    from . import plots
    from .train import train

    if args.epochs < 1:
        raise datasets.DataError(f"--epochs must be >= 1, got {args.epochs}")
    resumed = _resume_args(args) if args.resume is not None else None
    if args.shuffle_seed is None:
        args.shuffle_seed = 0
    cfg = datasets.load_config(args.config)
    if resumed is not None:
        cfg = resumed[0]
    plan = datasets.plan(args, cfg.T)
    if not plan.labelled:
        raise datasets.DataError(f"--data {plan.spec}: a single recording has no labels; train "
                                 f"needs labelled data: digits, mnist or nmnist:DIR")
    datasets.check_size(plan)
    if args.config is None and resumed is None:     # the default network, sized for the data
        cfg = cfg.replace(layers=(plan.n_in, *cfg.layers[1:]), T=plan.T)
    if args.optimizer and resumed is None:
        cfg = cfg.replace(optimizer=args.optimizer)
    datasets.check_network(plan, cfg, f"the network ({args.config or 'default'})")
    print(f"data {plan.describe()}; network layers {cfg.layers}, T {cfg.T}, {cfg.optimizer}",
          flush=True)
    t_start = time.perf_counter()
    final = Path(args.out)
    with _open(args, cfg) as acc, outdir.staged(final) as out:   # fail fast on a missing
        data = _labelled(plan, args.test_samples, _file_progress(args))    # device first
        _warn(plan)
        _check_labels(data, cfg)
        start, history, per_epoch = 0, None, []
        if resumed is None:
            acc.configure(cfg)
        else:
            from golden.train import History

            acc.restore(args.resume)
            prog = resumed[1]
            start, per_epoch = prog["epochs_done"], list(prog["per_epoch"])
            history = History(**{k: list(v) for k, v in prog["history"].items()})
            history.flips_per_step = [np.array(p, np.int64) for p in history.flips_per_step]
        # spikes only for the raster below; v2's RESULT counts the flips per step itself
        acc.set_outputs(spikes=False, flips=acc.version < 2)
        link = acc.link
        n = len(data.x_train) if args.samples is None else min(args.samples, len(data.x_train))
        marks = {"bytes": link.bytes_sent + link.bytes_received, "t": time.perf_counter()}

        def on_epoch(e, h):
            now = link.bytes_sent + link.bytes_received
            dt = time.perf_counter() - marks["t"]
            row = {"epoch": e + 1, "train_accuracy": h.train_accuracy[-1],
                   "test_accuracy": h.test_accuracy[-1] if h.test_accuracy else None,
                   "flips": int(h.flips[-1]), "wall_s": dt,
                   "link_bytes": now - marks["bytes"]}
            per_epoch.append(row)
            marks.update(bytes=now, t=time.perf_counter())
            print(f"epoch {e + 1}/{args.epochs}: train acc {row['train_accuracy']:.4f}  "
                  f"held-out acc {row['test_accuracy']:.4f}  flips {row['flips']}  "
                  f"{dt:.1f} s", flush=True)

        b0 = link.bytes_sent + link.bytes_received
        h = train(acc, data, args.epochs, samples=args.samples, shuffle_seed=args.shuffle_seed,
                  progress=_progress(args, "train"), on_epoch=on_epoch, start_epoch=start,
                  history=history)
        b1 = link.bytes_sent + link.bytes_received
        n_samples = (args.epochs - start) * (n + len(data.x_test))
        # no timings in the file: the same run gives the same bytes on every device
        acc.checkpoint(out / "checkpoint.npz", progress={
            "epochs_done": args.epochs,
            "per_epoch": [{k: r[k] for k in ("epoch", "train_accuracy", "test_accuracy",
                                             "flips")} for r in per_epoch],
            "history": {"test_accuracy": h.test_accuracy, "train_accuracy": h.train_accuracy,
                        "flips": [int(f) for f in h.flips],
                        "flips_per_step": [np.asarray(p).tolist() for p in h.flips_per_step]},
            "args": {k: (None if getattr(args, k) is None else
                         (list(getattr(args, k)) if k == "sensor" else getattr(args, k)))
                     for k in _RESUME_KEYS}})
        acc.set_outputs(spikes=True, flips=True)
        k = 0
        r = acc.run_sample(data.x_test[k], learn=False)
        plots.plot_raster(data.x_test[k], r.spikes, out / "raster.png",
                          f"held-out sample {k}: label {int(data.y_test[k])}, "
                          f"predicted {r.prediction}")
        if plan.kind == "nmnist":
            first = sorted((plan.path / "Test").glob("[0-9]/*.bin"))[0]
            plots.plot_event_rate(datasets.gev.read_events(first, sensor_size=plan.sensor)
                                  .events["t"], out / "event_rate.png",
                                  f"{first.relative_to(plan.path)}: events over time")
        plots.plot_accuracy(h, out / "accuracy.png")
        plots.plot_flips_per_step(h, out / "flips_per_step.png")
        summary = {
            "link": args.link, "config": cfg.to_dict(), "epochs": args.epochs,
            "train_samples_per_epoch": n, "test_samples": len(data.x_test),
            "test_accuracy": h.test_accuracy, "train_accuracy": h.train_accuracy,
            "flips": [int(f) for f in h.flips],
            "flips_per_step": [p.tolist() for p in h.flips_per_step],
            "per_epoch": per_epoch, "wall_s": time.perf_counter() - t_start,
            "link_bytes_per_sample": (b1 - b0) / max(n_samples, 1),
            "link_stats": acc.stats, "checkpoint": str(final / "checkpoint.npz"),
        }
        cfg.to_json(out / "config.json")
        (out / "history.json").write_text(json.dumps(summary, indent=2) + "\n")
    out = final
    print(f"held-out accuracy {h.test_accuracy[-1]:.4f} after {args.epochs} epoch(s); "
          f"{summary['wall_s']:.1f} s, {summary['link_bytes_per_sample']:.0f} link bytes/sample; "
          f"wrote {out}/")
    return summary


_RESUME_KEYS = ("data", "steps", "bin_us", "downsample", "sensor", "format", "samples",
                "test_samples", "shuffle_seed")


def _resume_args(args):
    """``train --resume CK``: check it against the command line, fill in the run's options;
    return ``(config, progress)``."""
    from .checkpoint import CheckpointError, load

    if args.config is not None or args.optimizer is not None:
        raise datasets.DataError("--resume continues the checkpoint's network: no --config or "
                                 "--optimizer with it")
    try:
        cfg, _, prog = load(args.resume, with_progress=True)
    except CheckpointError as exc:
        raise datasets.DataError(f"--resume {exc}") from None
    if not prog or "epochs_done" not in prog or "args" not in prog:
        raise datasets.DataError(f"--resume {args.resume}: the checkpoint holds no training "
                                 f"progress (only `train` writes it)")
    done = prog["epochs_done"]
    if args.epochs <= done:
        raise datasets.DataError(f"--resume {args.resume}: {done} epoch(s) are done already; "
                                 f"--epochs (the total) must be > {done}, got {args.epochs}")
    for k in _RESUME_KEYS:
        given, was = getattr(args, k), prog["args"].get(k)
        if k == "sensor" and given is not None:
            given = list(given)
        if k == "data" and given == "digits" and was != "digits":
            given = None                  # the parser's default: take the run's
        if given is not None and given != was:
            raise datasets.DataError(f"--resume {args.resume}: the run had --"
                                     f"{k.replace('_', '-')} {was}, not {given}")
        setattr(args, k, was)
    return cfg, prog


def _read_checkpoint(path):
    from .checkpoint import CheckpointError, load

    try:
        return load(path)[0]
    except CheckpointError as exc:
        raise datasets.DataError(f"--checkpoint {exc}") from None


def cmd_eval(args):
    """Run ``eval``; return the held-out accuracy (labelled data) or the per-window
    predictions (a recording)."""
    cfg = _read_checkpoint(args.checkpoint)
    plan = datasets.plan(args, cfg.T)
    if plan.kind == "file":
        datasets.fit_downsample(plan, cfg.layers[0])
    datasets.check_network(plan, cfg, f"the checkpoint ({args.checkpoint})")
    if not plan.labelled:
        return _eval_recording(args, cfg, plan)
    with _open(args, cfg) as acc:
        data = _labelled(plan, args.test_samples, _file_progress(args))
        _warn(plan)
        _check_labels(data, cfg)
        acc.restore(args.checkpoint)
        prog = _progress(args, "eval") or (lambda it: it)
        ok = sum(r.prediction == int(data.y_test[k])      # golden evaluate(), pipelined
                 for k, r in zip(prog(range(len(data.x_test))), acc.run_samples(data.x_test)))
    acc_ = ok / len(data.x_test)
    print(f"held-out accuracy {acc_:.4f} on {len(data.x_test)} samples ({args.checkpoint})")
    return acc_


def _eval_recording(args, cfg, plan) -> list[int]:
    """Predict every window of a recording (each window from reset state); print and plot."""
    from golden.events import iter_windows

    from . import plots

    _warn(plan)
    wc = datasets.load_recording(plan)
    n = wc.n_windows if args.test_samples is None else min(args.test_samples, wc.n_windows)
    t_first = int(plan.recording.events["t"][0])
    preds, starts = [], []
    with _open(args, cfg) as acc:
        acc.restore(args.checkpoint)
        acc.set_outputs(spikes=True, flips=False)
        prog = _progress(args, "eval", unit="window") or (lambda it: it)
        t0 = time.perf_counter()
        first = None
        windows = iter_windows(wc)
        for _ in prog(range(n)):
            w, ws, x = next(windows)
            r = acc.run_sample(x, learn=False)
            if first is None:
                first = (x, r)
            preds.append(r.prediction)
            starts.append((ws - t_first) / 1e6)
        dt = time.perf_counter() - t0
    rec_s = n * plan.T * plan.bin_us / 1e6
    step = max(1, n // 20)
    for k in range(0, n, step):
        print(f"t = {starts[k]:8.3f} s  window {k:5d}: predicted {preds[k]}")
    counts = np.bincount(preds, minlength=cfg.layers[-1])
    print(f"{n} windows of {plan.T} x {plan.bin_us} us ({rec_s:.3f} s of recording) in "
          f"{dt:.2f} s; predictions per class {counts.tolist()}; "
          f"{wc.n_outside} events outside the windows")
    ev = plan.recording.events
    with outdir.staged(args.out) as out:
        plots.plot_event_rate(ev["t"], out / "event_rate.png", f"{plan.spec}: {len(ev)} events",
                              windows_us=[wc.window_start(k) for k in range(n)])
        plots.plot_raster(first[0], first[1].spikes, out / "raster.png",
                          f"window 0: predicted {first[1].prediction}")
        plots.plot_predictions(starts, preds, out / "predictions.png", cfg.layers[-1],
                               f"{plan.spec}: prediction per window (each from reset)")
    print(f"wrote {args.out}/event_rate.png, raster.png, predictions.png")
    return preds


def cmd_status(args) -> dict:
    """Run ``status``; return the fields."""
    with _open(args) as acc:
        st = acc.status()
    for k, v in st.fields.items():
        print(f"{k:>14}: {v}")
    return st.fields


def _check_args(args) -> None:
    """Checks every command shares, before any work: the link's spelling and numbers, the
    retry/timeout/baud values, and that ``--out`` can be written."""
    from .link import parse_link

    try:
        parse_link(args.link)
    except ValueError as e:
        raise datasets.DataError(f"--{e}") from None
    if getattr(args, "retries", 0) < 0:
        raise datasets.DataError(f"--retries must be >= 0, got {args.retries}")
    if args.timeout is not None and not args.timeout > 0:     # also NaN
        raise datasets.DataError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if getattr(args, "baud", None) is not None and args.baud < 1:
        raise datasets.DataError(f"--baud must be >= 1, got {args.baud}")
    args.manifest_baud = None
    if getattr(args, "manifest", None) is not None:
        from .link import manifest_baud
        try:
            args.manifest_baud = manifest_baud(args.manifest)
        except ValueError as e:
            raise datasets.DataError(f"--manifest: {e}") from None
    if (getattr(args, "shuffle_seed", None) or 0) < 0:
        raise datasets.DataError(f"--shuffle-seed must be >= 0, got {args.shuffle_seed}")
    if getattr(args, "out", None) is not None:
        try:
            outdir.check_out(args.out)
        except outdir.OutError as e:
            raise datasets.DataError(str(e)) from None


def main(argv=None) -> int:
    """Entry point; return the process exit code."""
    args = _parser().parse_args(argv)
    from .link import LinkError

    try:
        _check_args(args)
        {"train": cmd_train, "eval": cmd_eval, "status": cmd_status, "bench": bench.cmd_bench,
         "stream": lambda a: stream.cmd_stream(a, _open, _read_checkpoint, _warn)}[args.cmd](args)
    except (datasets.DataError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TimeoutError, LinkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:                 # the device refused a command (DeviceError)
        from .accelerator import DeviceError
        if not isinstance(e, DeviceError):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
