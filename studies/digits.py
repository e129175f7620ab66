"""Benchmark of the default digits network: BSO and T-BSO, float and int mode.

``python -m studies.digits`` trains :meth:`NetConfig.default_for` ("bso" and "tbso") on the digits
event data (:func:`golden.data.load_digits_events`, held-out split) with
:func:`golden.train.train`, in both arithmetics, and prints held-out accuracy, flips per epoch,
training samples/s and learning bits per synapse.

Options: ``--epochs N`` (default :data:`EPOCHS`), ``--quick`` (:data:`QUICK_EPOCHS` epochs, a few
minutes), ``--json FILE`` (machine-readable results), ``--jobs N`` (runs in parallel processes;
default 1), ``--only bso|tbso``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from golden.config import NetConfig
from golden.core import Core
from golden.data import load_digits_events
from golden.train import train

__all__ = ["EPOCHS", "QUICK_EPOCHS", "run_one", "main"]

EPOCHS = 10          # full benchmark
QUICK_EPOCHS = 3     # --quick
OPTIMIZERS = ("bso", "tbso")
MODES = ("float", "int")


def run_one(optimizer: str, mode: str, epochs: int) -> dict:
    """Train the default network for ``optimizer`` in ``mode``; return one result row."""
    cfg = NetConfig.default_for(optimizer)
    data = load_digits_events(T=cfg.T)
    core = Core(cfg, mode)
    t0 = time.perf_counter()
    h = train(core, data, epochs)
    return {
        "optimizer": optimizer,
        "mode": mode,
        "test_accuracy": float(h.test_accuracy[-1]),
        "train_samples_per_s": float(np.mean(h.samples_per_s)),
        "bits_per_synapse": int(cfg.bits_per_synapse),
        "flips_per_epoch": [int(f) for f in h.flips],
        "test_accuracy_per_epoch": [float(a) for a in h.test_accuracy],
        "train_accuracy_per_epoch": [float(a) for a in h.train_accuracy],
        "saturation_counters": {k: int(v) for k, v in core.counters.items()},
        "config": cfg.to_dict(),
        "wall_s": time.perf_counter() - t0,
    }


def _run_star(args):
    return run_one(*args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m studies.digits", description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default {EPOCHS})")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--only", choices=OPTIMIZERS, help="run one optimizer only")
    a = p.parse_args(argv)
    epochs = a.epochs if a.epochs is not None else (QUICK_EPOCHS if a.quick else EPOCHS)
    if epochs < 1:
        p.error("--epochs must be >= 1")
    opts = (a.only,) if a.only else OPTIMIZERS
    jobs = [(o, m, epochs) for o in opts for m in MODES]
    if a.jobs > 1:
        from multiprocessing import Pool
        with Pool(min(a.jobs, len(jobs))) as pool:
            runs = pool.map(_run_star, jobs)
    else:
        runs = [run_one(*j) for j in jobs]

    print(f"digits held-out accuracy after {epochs} epoch(s) (golden model, one sample at a time)")
    hdr = f"{'optimizer':9s} {'mode':5s} {'test acc':>8s} {'samples/s':>9s} {'bits/syn':>8s}  flips per epoch"
    print(hdr)
    print("-" * len(hdr))
    for r in runs:
        print(f"{r['optimizer']:9s} {r['mode']:5s} {100 * r['test_accuracy']:7.1f}% "
              f"{r['train_samples_per_s']:9.0f} {r['bits_per_synapse']:8d}  {r['flips_per_epoch']}")
    for o in opts:
        acc = {r["mode"]: r["test_accuracy"] for r in runs if r["optimizer"] == o}
        print(f"{o}: int - float = {100 * (acc['int'] - acc['float']):+.1f} points")
    out = {"runs": [{k: v for k, v in r.items() if k != "config"} for r in runs],
           "config": NetConfig.default_for("bso").to_dict(),
           "configs": {o: NetConfig.default_for(o).to_dict() for o in opts},
           "epochs": epochs}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
