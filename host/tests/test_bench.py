"""``python -m host bench`` on the emulator: the figures and keys it writes, the line model,
and bad command lines (one ``error:`` line, exit 2, nothing written)."""
from __future__ import annotations

import json

import pytest

from host.__main__ import main
from host.bench import board_link, line_model


def test_bench_emulator_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--link", "emulator", "--data", "digits", "--samples", "6",
                 "--emulator-samples", "16", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "samples/s" in printed and "icebreaker at 12 Mbaud" in printed
    d = json.loads(out.read_text())
    for key in ("emulator_samples_per_s", "board_samples_per_s", "bytes_per_sample"):
        assert key in d
    assert d["emulator"]["protocol"] == 2 and d["emulator"]["max_in_flight"] > 1
    bp = d["bytes_per_sample"]
    assert bp["total"] == bp["to_device"] + bp["from_device"] and 50 < bp["to_device"] < 200
    assert set(d["boards"]) == {"icebreaker", "ulx3s-85f"}
    ice = d["boards"]["icebreaker"]
    assert (ice["baud"], ice["divisor"]) == (12_000_000, 4)
    assert ice["board_samples_per_s"] == d["board_samples_per_s"] > 0
    assert 0 < ice["line_utilisation"]["to_device"] <= 1
    assert d["target"]["core_time_included"] is False


def test_line_model():
    # stop-and-wait: 11 exchanges x 2 ms dominate
    v1 = line_model(236, 215, 0.0003, 11, 1, 12e6, 2e-3, pipelined=False)
    assert v1["s_per_sample"] == pytest.approx(10 * 451 / 12e6 + 0.0003 + 0.022)
    # a window of 13 hides the round trip behind 13 samples of work
    v2 = line_model(156, 56, 0.0001, 0, 13, 12e6, 2e-3, pipelined=True)
    assert v2["s_per_sample"] == pytest.approx((10 * 212 / 12e6 + 0.0001 + 2e-3) / 13)
    fat = line_model(156, 56, 0.0003, 0, 100, 12e6, 2e-3, pipelined=True)
    assert fat["s_per_sample"] == pytest.approx(0.0003)          # the core is the limit
    assert board_link("ulx3s-85f")["divisor"] == 27


@pytest.mark.parametrize("argv,msg", [
    (["--link", "serial:/dev/x"], "bench runs on emulator or sim"),
    (["--link", "nope"], "is unknown"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--samples", "99999"], "the training split has"),
    (["--usb-rtt-ms", "-1"], "--usb-rtt-ms must be >= 0"),
    (["--lanes", "0"], "--lanes must be >= 1"),
    (["--samples", "5", "--emulator-samples", "4"], "at least --samples"),
    (["--board", "nexys"], "invalid choice"),
    (["--config", "/no/such.json"], "file not found"),
])
def test_bench_bad_input(tmp_path, capsys, argv, msg):
    out = tmp_path / "b.json"
    try:
        rc = main(["bench", *argv, "--json", str(out)])
    except SystemExit as e:                    # argparse's own errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and msg in err, err
    assert not out.exists()


class _FakeSim:
    """A stand-in for SimLink: the emulator with a heartbeat whose cycles are the UART's
    (10 bits x divisor per byte) plus 1000 core cycles per command; v1 or v2."""

    def __new__(cls, simulator, cfg, *, lanes=None, baud_divisor=4, versions=(1,), **kw):
        from host.link import EmulatorLink

        link = EmulatorLink(cfg, versions=versions)
        link.simulator = simulator or "verilator"
        link.stats = {"core_busy_cycles": 0}
        n_cmd = [0]
        send = link._send

        def _send(data):
            n_cmd[0] += 1
            link.stats["core_busy_cycles"] += 1000
            send(data)

        link._send = _send
        link.heartbeat = lambda: {
            "cycles": 10 * baud_divisor * (link.bytes_sent + link.bytes_received)
            + 1000 * n_cmd[0], "idle": 1, "bytes_out": link.bytes_received}
        return link


@pytest.mark.parametrize("versions", [(1,), (1, 2)], ids=["rtl-v1", "rtl-v2"])
def test_bench_sim_path(tmp_path, capsys, monkeypatch, versions):
    import host.link

    monkeypatch.setattr(host.link, "SimLink",
                        lambda *a, **kw: _FakeSim(*a, versions=versions, **kw))
    out = tmp_path / "s.json"
    assert main(["bench", "--link", "sim", "--samples", "3", "--emulator-samples", "3",
                 "--board", "icebreaker", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    ice = d["boards"]["icebreaker"]
    sim = ice["sim"]
    assert sim["protocol"] == versions[-1] and sim["cycles_per_sample"] > 0
    assert d["target"]["core_time_included"] is True
    if versions == (1,):
        assert "v2_projected" in ice and sim["exchanges_per_sample"] > 5
        assert ice["board_samples_per_s_v1"] == sim["board_samples_per_s"]
        assert sim["board_s_per_sample"] > sim["exchanges_per_sample"] * 2e-3
    else:
        assert ice["board_samples_per_s"] == sim["board_samples_per_s"]
    assert "sim:verilator" in capsys.readouterr().out
