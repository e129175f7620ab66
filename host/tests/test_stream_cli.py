"""``python -m host stream``: the real recording window by window on the emulator (predictions
equal golden's from reset), ``--continuous`` equal to golden.stream.run_stream, bad input."""
from __future__ import annotations

import json

import numpy as np

from golden.config import tiny_config
from golden.core import Core
from golden.events import bin_windows
from golden.stream import run_stream
from golden.tests.test_events import AEDAT4_PATH, _davis
from host.__main__ import main
from host.tests.test_cli_data import _checkpoint_for, _main

T, BIN_US, D = 8, 5000, 16


def _expected(ck, cfg, n, continuous):
    ev, size = _davis()
    x = bin_windows(ev, size, T, BIN_US, downsample=D)[:n]
    core = Core(cfg, "int")
    core.load_state_dict(dict(np.load(ck)))
    if continuous:
        return [r.prediction for r in run_stream(core, x)]
    return [core.predict(w) for w in x]


def test_stream_real_recording_on_the_emulator_and_continuous(tmp_path, capsys):
    # slow leaks (15/16 per step), so what a window inherits matters
    cfg = tiny_config().replace(layers=(2 * 22 * 17, 16, 10), T=T, theta=(2.0,), leak_shift=4,
                                trace_shift=4)
    ck = _checkpoint_for(tmp_path, cfg)
    for continuous in (False, True):
        out = tmp_path / f"s{continuous}"
        rc = main(["stream", "--link", "emulator", str(AEDAT4_PATH), "--checkpoint", str(ck),
                   "--bin-us", str(BIN_US), "--windows", "25", "--out", str(out),
                   "--no-progress"] + (["--continuous"] if continuous else []))
        assert rc == 0
        printed = capsys.readouterr().out
        assert "--downsample 16 chosen (n_in 748, the network's)" in printed
        assert "real-time factor" in printed and "deadline:" in printed
        s = json.loads((out / "stream.json").read_text())
        assert s["windows"] == 25 and s["downsample"] == D
        assert s["predictions"] == _expected(ck, cfg, 25, continuous)
        assert s["real_time_factor"] > 0 and s["recording_s"] == 25 * T * BIN_US / 1e6
        assert ("continuous" in s["mode"]) == continuous
        for f in ("event_rate.png", "predictions.png"):
            assert (out / f).stat().st_size > 0
    # the two modes differ on this recording (state carried or not)
    assert _expected(ck, cfg, 25, True) != _expected(ck, cfg, 25, False)


def test_stream_bad_input(tmp_path, capsys):
    for argv, msg in (
        (["stream", str(tmp_path / "nope.aedat4")], "file not found"),
        (["stream", "digits"], "stream takes a recording FILE, got digits"),
        (["stream", str(AEDAT4_PATH), "--windows", "0"], "--windows must be >= 1"),
        (["stream", str(AEDAT4_PATH), "--downsample", "1"], "above the device's 16384"),
        (["stream"], "the following arguments are required: FILE"),
    ):
        rc, err = _main(*argv, "--out", str(tmp_path / "o"), capsys=capsys)
        assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), (argv, err)
        assert msg in err, (argv, err)
    assert not (tmp_path / "o").exists()
