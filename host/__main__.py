"""Command line: train on the accelerator, evaluate a checkpoint, read the status.

    python -m host train --link emulator|sim|serial:PORT[@BAUD]|tcp:HOST:PORT --data digits
                         --epochs N [--samples K] [--test-samples K] [--out DIR]
                         [--optimizer bso|tbso] [--config FILE]
    python -m host eval --checkpoint FILE --link ... [--test-samples K]
    python -m host status --link ...

``train`` streams the data set through the device with learning on, prints held-out accuracy
per epoch and writes ``accuracy.png``, ``flips_per_step.png``, ``raster.png``,
``checkpoint.npz``, ``history.json`` and ``config.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def link_args(sp):
        sp.add_argument("--link", default="emulator",
                        help="emulator | sim[:verilator|:icarus] | serial:PORT[@BAUD] | "
                             "tcp:HOST:PORT")
        sp.add_argument("--baud", type=int, default=None, help="serial baud rate (115200)")
        sp.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for an answer (serial/tcp, default 1)")
        sp.add_argument("--retries", type=int, default=8, help="resends of one command")
        sp.add_argument("--test-samples", type=int, default=None,
                        help="evaluate on the first K held-out samples only")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="learn on the device")
    link_args(t)
    t.add_argument("--data", default="digits", choices=["digits"])
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--samples", type=int, default=None,
                   help="training samples per epoch (default: all 1437)")
    t.add_argument("--out", type=Path, default=Path("out/host"))
    t.add_argument("--optimizer", choices=["bso", "tbso"], default=None)
    t.add_argument("--config", type=Path, default=None, help="NetConfig JSON (or hdl_gen manifest)")
    t.add_argument("--shuffle-seed", type=int, default=0)

    e = sub.add_parser("eval", help="inference only, from a checkpoint")
    link_args(e)
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--data", default="digits", choices=["digits"])

    s = sub.add_parser("status", help="print the device status block")
    link_args(s)
    return p


def _open(args, cfg=None):
    from .accelerator import Accelerator
    from .link import open_link

    # cfg: what a simulated RTL is generated for (the emulator stays reconfigurable)
    link = open_link(args.link, timeout=args.timeout, baud=args.baud,
                     cfg=cfg if args.link.startswith("sim") else None)
    try:
        return Accelerator(link, retries=args.retries)
    except BaseException:
        link.close()
        raise


def _data(name: str, cfg, test_samples: int | None):
    from golden.data import Dataset, load_digits_events

    d = load_digits_events(T=cfg.T)
    if d.n_in != cfg.layers[0]:
        raise SystemExit(f"error: the {name} data have {d.n_in} inputs, the config "
                         f"layers[0]={cfg.layers[0]}")
    if test_samples is not None:
        d = Dataset(d.x_train, d.y_train, d.x_test[:test_samples], d.y_test[:test_samples], d.name)
    return d


def _progress(args, desc):
    if args.no_progress:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit="sample", leave=False, dynamic_ncols=True)


def cmd_train(args) -> dict:
    """Run ``train``; return the summary written to history.json."""
    from golden.config import NetConfig

    from . import plots
    from .train import train

    cfg = NetConfig.from_json(args.config) if args.config else NetConfig()
    if args.optimizer:
        cfg = cfg.replace(optimizer=args.optimizer)
    t_start = time.perf_counter()
    with _open(args, cfg) as acc:         # fail fast on a missing device before loading data
        data = _data(args.data, cfg, args.test_samples)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        acc.configure(cfg)
        acc.set_outputs(spikes=False, flips=True)    # spikes only for the raster below
        link = acc.link
        n = len(data.x_train) if args.samples is None else min(args.samples, len(data.x_train))
        marks = {"bytes": link.bytes_sent + link.bytes_received, "t": time.perf_counter()}
        per_epoch = []

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
                  progress=_progress(args, "train"), on_epoch=on_epoch)
        b1 = link.bytes_sent + link.bytes_received
        n_samples = args.epochs * (n + len(data.x_test))
        ckpt = acc.checkpoint(out / "checkpoint.npz")
        acc.set_outputs(spikes=True, flips=True)
        k = 0
        r = acc.run_sample(data.x_test[k], learn=False)
        plots.plot_raster(data.x_test[k], r.spikes, out / "raster.png",
                          f"held-out sample {k}: label {int(data.y_test[k])}, "
                          f"predicted {r.prediction}")
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
            "link_stats": acc.stats, "checkpoint": str(ckpt),
        }
    cfg.to_json(out / "config.json")
    (out / "history.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"held-out accuracy {h.test_accuracy[-1]:.4f} after {args.epochs} epoch(s); "
          f"{summary['wall_s']:.1f} s, {summary['link_bytes_per_sample']:.0f} link bytes/sample; "
          f"wrote {out}/")
    return summary


def cmd_eval(args) -> float:
    """Run ``eval``; return the held-out accuracy."""
    from .accelerator import Accelerator

    cfg, _ = Accelerator.read_checkpoint(args.checkpoint)
    with _open(args, cfg) as acc:
        data = _data(args.data, cfg, args.test_samples)
        acc.restore(args.checkpoint)
        prog = _progress(args, "eval") or (lambda it: it)
        ok = sum(acc.predict(data.x_test[k]) == int(data.y_test[k])      # golden evaluate()
                 for k in prog(range(len(data.x_test))))
    acc_ = ok / len(data.x_test)
    print(f"held-out accuracy {acc_:.4f} on {len(data.x_test)} samples ({args.checkpoint})")
    return acc_


def cmd_status(args) -> dict:
    """Run ``status``; return the fields."""
    with _open(args) as acc:
        st = acc.status()
    for k, v in st.fields.items():
        print(f"{k:>14}: {v}")
    return st.fields


def main(argv=None) -> int:
    """Entry point; return the process exit code."""
    args = _parser().parse_args(argv)
    from .link import LinkError

    try:
        {"train": cmd_train, "eval": cmd_eval, "status": cmd_status}[args.cmd](args)
    except NotImplementedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TimeoutError, LinkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
