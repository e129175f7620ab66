"""Careless and hostile command lines of ``python -m host`` and ``python -m hdl_gen``: each is
one line ``error: ...`` naming the problem, exit code 2, and nothing is written.

Every case fails in the argument checks, before a device is opened or data is loaded, so the
table runs in-process in a few seconds; one case per CLI also runs as a real process (no
traceback on stderr).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden.config import tiny_config
from golden.core import Core
from hdl_gen.__main__ import main as hdl_main
from host import checkpoint as C
from host import protocol as P
from host.__main__ import main as host_main

ROOT = Path(__file__).resolve().parents[2]
CFG = tiny_config()


def _files(tmp: Path) -> None:
    """The inputs the table refers to (relative names, in the test's working folder)."""
    st = Core(CFG, "int").state_dict()
    good = C.save(tmp / "good.npz", CFG, st)
    raw = good.read_bytes()
    (tmp / "trunc.npz").write_bytes(raw[:len(raw) // 3])
    (tmp / "empty.npz").write_bytes(b"")
    (tmp / "cfg.json").write_text(CFG.to_json())
    np.savez(tmp / "random.npz", x=np.arange(4))
    text = P.config_bytes(CFG).decode()
    bad = dict(st, M0=np.full_like(st["M0"], 500))
    with open(tmp / "mom.npz", "wb") as f:
        np.savez(f, format=np.array(C.CHECKPOINT_FORMAT), config=np.array(text),
                 checksum=np.array(C.checksum(C.CHECKPOINT_FORMAT, text, bad)), **bad)
    np.savez(tmp / "old.npz", format=np.array("bsnn-accel-checkpoint/0"), config=np.array(text))
    (tmp / "empty.json").write_text("")
    (tmp / "trunc.json").write_text(CFG.to_json()[:40])
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "T0.json").write_text(CFG.replace(T=1).to_json().replace('"T": 1', '"T": 0'))
    (tmp / "file").write_text("not a folder\n")


H, G = "host", "hdl_gen"
CASES = [
    # --- counts ---------------------------------------------------------------------------------
    (H, "train --epochs 0", "--epochs must be >= 1, got 0"),
    (H, "train --epochs -1", "--epochs must be >= 1, got -1"),
    (H, "train --samples -3", "--samples must be >= 1, got -3"),
    (H, "train --samples 0", "--samples must be >= 1, got 0"),
    (H, "train --test-samples 0", "--test-samples must be >= 1, got 0"),
    (H, "train --epochs x", "argument --epochs: invalid int value: 'x'"),
    (H, "train --retries -1", "--retries must be >= 0, got -1"),
    (H, "train --timeout 0", "--timeout must be > 0 seconds, got 0.0"),
    (H, "train --timeout nan", "--timeout must be > 0 seconds, got nan"),
    (H, "train --baud 0", "--baud must be >= 1, got 0"),
    (H, "train --shuffle-seed -1", "--shuffle-seed must be >= 0, got -1"),
    (H, "train --steps 0", "--steps must be >= 1"),
    (H, "eval --checkpoint good.npz --test-samples -5", "--test-samples must be >= 1, got -5"),
    (H, "eval --checkpoint good.npz --test-samples 0", "--test-samples must be >= 1, got 0"),
    (H, "status --retries -2", "--retries must be >= 0, got -2"),
    # --- links -------------------------------------------------------------------------------------
    (H, "status --link serial:PORT@abc", "baud rate 'abc' is not a positive integer"),
    (H, "status --link serial:@9600", "no serial port before '@'"),
    (H, "status --link tcp:host:notaport", "TCP port 'notaport' is not an integer in 1..65535"),
    (H, "status --link tcp:localhost:70000", "TCP port '70000' is not an integer in 1..65535"),
    (H, "status --link tcp:", "--link 'tcp:' is unknown: use emulator"),
    (H, "status --link usb", "--link 'usb' is unknown"),
    (H, "status --link sim:nosuch", "simulator 'nosuch' is invalid: allowed verilator, icarus"),
    (H, "train --link serial:PORT@abc", "baud rate 'abc'"),
    # --- checkpoints -----------------------------------------------------------------------------
    (H, "eval --checkpoint nope.npz", "--checkpoint nope.npz: file not found"),
    (H, "eval --checkpoint empty.npz", "--checkpoint empty.npz: the file is empty"),
    (H, "eval --checkpoint trunc.npz", "--checkpoint trunc.npz: not a checkpoint (a zip cut"),
    (H, "eval --checkpoint cfg.json", "--checkpoint cfg.json: not a checkpoint (not a zip"),
    (H, "eval --checkpoint random.npz", "without a 'format' entry"),
    (H, "eval --checkpoint old.npz", "format 'bsnn-accel-checkpoint/0' is not supported"),
    (H, "eval --checkpoint mom.npz", "M0[0, 0] = 500 is out of range -127..127"),
    (H, "eval --checkpoint .", "--checkpoint .: not a file"),
    (H, "eval", "the following arguments are required: --checkpoint"),
    (H, "stream x.aedat4 --checkpoint mom.npz", "M0[0, 0] = 500 is out of range"),
    # --- configs --------------------------------------------------------------------------------
    (H, "train --config nope.json", "--config nope.json: file not found"),
    (H, "train --config empty.json",
     "--config empty.json: NetConfig: empty.json is not JSON (Expecting value"),
    (H, "train --config trunc.json", "--config trunc.json:"),
    (H, "train --config list.json", "--config list.json:"),
    (H, "train --config T0.json", "NetConfig.T=0 is invalid: allowed 1..256"),
    (H, "train --config good.npz", "--config good.npz:"),
    (H, "stream x.aedat4 --config empty.json", "--config empty.json:"),
    # --- output folders ---------------------------------------------------------------------------
    (H, "train --out file", "--out file: exists and is not a folder"),
    (H, "train --out file/sub", "is a file, not a folder"),
    (H, "train --out /proc/nope/x", "--out /proc/nope/x: cannot write in /proc"),
    (H, "eval --checkpoint good.npz --out file", "--out file: exists and is not a folder"),
    (H, "stream x.aedat4 --out file", "--out file: exists and is not a folder"),
    # --- the command line itself --------------------------------------------------------------------
    (H, "", "the following arguments are required: cmd"),
    (H, "frobnicate", "invalid choice: 'frobnicate'"),
    (H, "train --dta digits", "unrecognized arguments: --dta"),
    (H, "train --resume", "argument --resume: expected one argument"),
    (H, "train --resume nope.npz", "--resume nope.npz: file not found"),
    (H, "train --resume good.npz", "--resume good.npz: the checkpoint holds no training"),
    (H, "train --resume mom.npz", "M0[0, 0] = 500 is out of range"),
    (H, "train --resume good.npz --optimizer tbso", "no --config or --optimizer with it"),
    # --- hdl_gen ---------------------------------------------------------------------------------
    (G, "--lanes 0 --out g", "lanes=0 is invalid: allowed a power of two >= 2"),
    (G, "--lanes 1024 --out g", "lanes=1024 is invalid: allowed at most 256"),
    (G, "--lanes 3 --out g", "lanes=3 is invalid"),
    (G, "--lanes -8 --out g", "lanes=-8 is invalid"),
    (G, "--lanes abc --out g", "argument --lanes: invalid int value: 'abc'"),
    (G, "generate --lanes 0 --out g", "lanes=0 is invalid"),
    (G, "--config cfg.json --lanes 64 --out g", "lanes=64 is invalid: allowed at most 8"),
    (G, "--config nope.json --out g", "--config nope.json: file not found"),
    (G, "--config empty.json --out g",
     "--config empty.json: NetConfig: empty.json is not JSON (Expecting value"),
    (G, "--config trunc.json --out g", "--config trunc.json:"),
    (G, "--config list.json --out g", "--config list.json:"),
    (G, "--config T0.json --out g", "NetConfig.T=0 is invalid"),
    (G, "--out file", "--out file: exists and is not a folder"),
    (G, "generate --out /proc/nope", "--out /proc/nope: cannot write in /proc"),
    (G, "frobnicate", "invalid choice: 'frobnicate'"),
    (G, "build", "the following arguments are required: --board"),
    (G, "build --board nosuch", "argument --board: invalid choice: 'nosuch'"),
    (G, "report --boards nosuch", "argument --boards: invalid choice: 'nosuch'"),
]


def _run_main(main, argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:                              # argparse
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("cli,line,msg", CASES, ids=[f"{c}: {l}" for c, l, _ in CASES])
def test_bad_command_line(cli, line, msg, tmp_path, monkeypatch, capsys):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    argv = line.split()
    if cli == H and argv and argv[0] == "train" and "--out" not in argv:
        argv += ["--out", "o"]
    rc, err = _run_main(host_main if cli == H else hdl_main, argv, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert msg in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == before           # nothing written, no temporaries


@pytest.mark.parametrize("argv", [["-m", "host", "eval", "--checkpoint", "x.json"],
                                  ["-m", "hdl_gen", "--lanes", "0", "--out", "g"]])
def test_no_traceback_as_a_process(argv, tmp_path):
    (tmp_path / "x.json").write_text("{}")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "AMARANTH_USE_YOSYS": "builtin"}
    r = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_failed_run_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A run that fails after it wrote part of its output (here: the accuracy plot) leaves
    ``--out`` as it was: no half set of files, no temporary folder."""
    import host.plots

    cfg_file = tmp_path / "cfg.json"
    tiny_config(layers=(128, 8, 10)).to_json(cfg_file)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("the user's\n")

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(host.plots, "plot_accuracy", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        host_main(["train", "--epochs", "1", "--samples", "2", "--test-samples", "2",
                   "--config", str(cfg_file), "--out", str(out), "--no-progress"])
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json", "run"]
