"""``python -m host``: train end to end in a temp dir, identical to golden.train; eval; errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import golden.train
from golden.config import NetConfig
from golden.core import Core
from golden.data import Dataset
from host.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_train_end_to_end_identical_to_golden(tmp_path, digits, capsys):
    out = tmp_path / "run"
    cfg_file = tmp_path / "cfg.json"
    cfg = NetConfig(optimizer="tbso")
    NetConfig().to_json(cfg_file)
    rc = main(["train", "--link", "emulator", "--data", "digits", "--epochs", "2",
               "--samples", "12", "--test-samples", "20", "--out", str(out), "--no-progress",
               "--config", str(cfg_file), "--optimizer", "tbso", "--shuffle-seed", "3"])
    assert rc == 0
    for f in ("accuracy.png", "flips_per_step.png", "raster.png", "checkpoint.npz",
              "history.json", "config.json"):
        assert (out / f).stat().st_size > 0, f
    printed = capsys.readouterr().out
    assert "epoch 1/2" in printed and "epoch 2/2" in printed and "held-out acc" in printed
    summary = json.loads((out / "history.json").read_text())
    assert NetConfig.from_dict(summary["config"]) == cfg

    # the same run on the golden model
    data = Dataset(digits.x_train, digits.y_train, digits.x_test[:20], digits.y_test[:20])
    core = Core(cfg, "int")
    h = golden.train.train(core, data, epochs=2, samples=12, shuffle_seed=3)
    assert summary["test_accuracy"] == h.test_accuracy
    assert summary["train_accuracy"] == h.train_accuracy
    assert summary["flips"] == h.flips
    assert summary["flips_per_step"] == [p.tolist() for p in h.flips_per_step]
    ck = np.load(out / "checkpoint.npz")
    for k, v in core.state_dict().items():
        assert np.array_equal(ck[k], v), k
    assert summary["link_bytes_per_sample"] > 0

    # eval from the checkpoint: inference only, same accuracy as golden
    rc = main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--link", "emulator",
               "--test-samples", "20", "--no-progress"])
    assert rc == 0
    assert f"held-out accuracy {h.test_accuracy[-1]:.4f}" in capsys.readouterr().out


def test_unknown_simulator_is_a_clear_error():
    # the SimLink itself (Verilator/Icarus) is exercised in verif/test_system_link.py
    r = subprocess.run([sys.executable, "-m", "host", "status", "--link", "sim:nosuch"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2                # a bad --link is a bad argument, found up front
    assert "nosuch" in r.stderr and "Traceback" not in r.stderr


def test_silent_serial_port_is_a_clear_error(capsys):
    rc = main(["status", "--link", "serial:loop://", "--timeout", "0.05"])
    assert rc == 3
    assert "loop://" in capsys.readouterr().err


def test_status_command(capsys):
    assert main(["status", "--link", "emulator"]) == 0
    assert "version" in capsys.readouterr().out


def test_manifest_gives_the_serial_default_baud(tmp_path, monkeypatch, capsys):
    """``--manifest report.json`` (a board build's report) sets the serial rate from its
    ``link.baud``; ``--baud`` overrides it; a report without one is a one-line error."""
    import host.link.serial_link as sl
    from host.link.base import LinkError

    seen = []

    class FakeSerial:
        def __init__(self, port, baud, timeout):
            seen.append(baud)
            raise LinkError(f"{port}: no such board here")

    monkeypatch.setattr(sl, "SerialLink", FakeSerial)
    rep = tmp_path / "report.json"
    rep.write_text(json.dumps({"board": "icebreaker", "link": {"baud": 12_000_000}}))
    args = ["status", "--link", "serial:/dev/ttyX", "--manifest", str(rep)]
    assert main(args) == 3
    assert main(args + ["--baud", "8000000"]) == 3
    assert main(["status", "--link", "serial:/dev/ttyX"]) == 3
    assert seen == [12_000_000, 8_000_000, sl.DEFAULT_BAUD]
    capsys.readouterr()
    rep.write_text(json.dumps({"board": "icebreaker", "link": None}))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --manifest: ") and "link.baud" in err[0]
