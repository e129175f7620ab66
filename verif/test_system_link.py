"""End to end: the same K-sample training run through EmulatorLink and SimLink gives identical
predictions, output scores, spikes, flips (per step, in order), final memories and status counters.

SimLink simulates the whole board top (UART at the iCEBreaker's rate: 12 Mbaud at 48 MHz, 4
clocks per bit; deframer, executor, Core, framer) behind its cocotb TCP bridge; the host code
is the unchanged :class:`Accelerator`. Verilator runs K = 16 digits samples, Icarus a shorter
run; the compact core (``arch="compact"``) the same bench with K = 2 / 1. Each run writes its
wall time, link bytes per sample and simulated cycles to
``out/link_perf_[<arch>_]<simulator>.json``.

``test_fault_injection``: random bit errors (both directions) and truncated frames injected into
the UART byte stream by the bridge; the host detects every one, recovers (resync, resend, the
device replays) and the run still equals the emulator's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from golden.config import DEFAULT
from golden.data import load_digits_events
from host.accelerator import Accelerator
from hdl_gen.flow.boards import get_board
from host.link import EmulatorLink, SimLink

ROOT = Path(__file__).resolve().parents[1]
# digits (128 inputs, 10 classes), a 32-neuron hidden layer, BSO tuned to flip often
CFG = DEFAULT.replace(layers=(128, 32, 10), rate_shift=5, gamma=(24, 24), trace_bits=6,
                      membrane_bits=11)
LANES = 8
#: clocks per UART bit of the iCEBreaker's board top (12 Mbaud at 48 MHz)
DIVISOR = get_board("icebreaker").uart_divisor()


def training_run(link, k: int, cfg=CFG, data=None):
    """Configure ``cfg``, load the seeded weights and learn ``k`` samples of ``data`` (a
    :class:`golden.data.Dataset`; default: the digits) with every event reported, then one
    inference sample; return what the host saw and measured."""
    data = load_digits_events(T=cfg.T) if data is None else data
    out = {}
    t0 = time.perf_counter()
    with Accelerator(link) as acc:
        acc.configure(cfg)
        acc.set_outputs(spikes=True, flips=True)
        b0 = link.bytes_sent + link.bytes_received
        t1 = time.perf_counter()
        out["samples"] = [acc.run_sample(data.x_train[i], int(data.y_train[i]), learn=True)
                          for i in range(k)]
        t2 = time.perf_counter()
        b1 = link.bytes_sent + link.bytes_received
        out["inference"] = acc.run_sample(data.x_test[0], learn=False)
        acc.end_epoch(0)
        out["state"] = acc.state_dict()
        out["status"] = acc.status().fields
        out["host_stats"] = dict(acc.stats)
    out["perf"] = {"wall_total_s": time.perf_counter() - t0, "wall_samples_s": t2 - t1,
                   "samples": k, "wall_per_sample_s": (t2 - t1) / k,
                   "link_bytes_per_sample": (b1 - b0) / k}
    return out


def assert_same(a, b):
    for i, (x, y) in enumerate(zip(a["samples"] + [a["inference"]],
                                   b["samples"] + [b["inference"]])):
        assert x.prediction == y.prediction, f"sample {i}: prediction"
        assert np.array_equal(x.scores, y.scores), f"sample {i}: scores"
        for l, (s, t) in enumerate(zip(x.spikes, y.spikes)):
            assert np.array_equal(s, t), f"sample {i}: spikes of hidden layer {l}"
        assert x.flips.as_tuples() == y.flips.as_tuples(), f"sample {i}: flips"
        assert np.array_equal(x.flips_per_step, y.flips_per_step)
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        assert np.array_equal(a["state"][key], b["state"][key]), f"final {key}"
    # link counters and what each device grants; the protocol version may differ (the
    # emulator speaks v2, the RTL v1 until it has v2): the v2 keys are link keys too
    skip = {"flags", "frames_ok", "crc_errors", "length_errors", "cmd_errors", "replay_bytes",
            "version", "window", "next_seq", "credit", "seq_errors", "replays"}
    sa = {k: v for k, v in a["status"].items() if k not in skip}
    sb = {k: v for k, v in b["status"].items() if k not in skip}
    assert sa == sb, "status"


@pytest.mark.parametrize("simulator,k,arch", [("verilator", 16, "parallel"),
                                              ("icarus", 3, "parallel"),
                                              ("verilator", 2, "compact"),
                                              ("icarus", 1, "compact")])
def test_training_run_matches_emulator(simulator, k, arch):
    ref = training_run(EmulatorLink(CFG), k)
    link = SimLink(simulator, CFG, lanes=LANES, arch=arch, baud_divisor=DIVISOR)
    got = training_run(link, k)
    assert_same(got, ref)
    n_flips = sum(len(r.flips) for r in ref["samples"])
    assert n_flips > 0 and got["state"]["step"] == k * CFG.T
    stats = link.stats
    perf = {"simulator": simulator, "arch": arch, "config": CFG.to_dict(), "lanes": LANES,
            "baud_divisor": stats.get("divisor"), "flips": n_flips,
            "sim": got["perf"], "emulator": ref["perf"], "bridge": stats,
            "host_stats": got["host_stats"]}
    if stats.get("cycles"):
        perf["core_busy_cycles_per_sample"] = stats["core_busy_cycles"] / (k + 1)
    path = ROOT / "out" / (f"link_perf_{simulator}.json" if arch == "parallel"
                           else f"link_perf_{arch}_{simulator}.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(perf, indent=1) + "\n")
    print(json.dumps(perf["sim"]), json.dumps(perf["emulator"]), stats)


def test_cli_train_on_sim(tmp_path, capsys):
    """``python -m host train --link sim:icarus`` learns on the simulated board exactly as
    ``--link emulator`` does (accuracy, flips per step, checkpoint)."""
    from host.__main__ import main

    cfg_path = tmp_path / "cfg.json"
    CFG.to_json(cfg_path)
    summaries = {}
    for link in ("emulator", "sim:icarus"):
        out = tmp_path / link.replace(":", "_")
        rc = main(["train", "--link", link, "--config", str(cfg_path), "--epochs", "1",
                   "--samples", "2", "--test-samples", "2", "--out", str(out), "--no-progress"])
        assert rc == 0, capsys.readouterr().err
        summaries[link] = json.loads((out / "history.json").read_text())
        assert (out / "checkpoint.npz").exists() and (out / "raster.png").exists()
    e, s = summaries["emulator"], summaries["sim:icarus"]
    for key in ("test_accuracy", "train_accuracy", "flips", "flips_per_step"):
        assert e[key] == s[key], key
    ce = np.load(tmp_path / "emulator" / "checkpoint.npz")
    cs = np.load(tmp_path / "sim_icarus" / "checkpoint.npz")
    for key in ce.files:
        assert np.array_equal(ce[key], cs[key]), key


def test_fault_injection():
    """Bit errors in both directions and truncated host frames, injected into the UART stream
    once the set-up is through: every one is detected (device ERROR CRC/TRUNCATED/TOO_LONG, a
    bad frame or silence at the host), the host resynchronises and resends (the device replays
    what it already executed), and predictions, flips and final memories equal the emulator's."""
    k = 4
    data = load_digits_events(T=CFG.T)
    faults = {"seed": 11, "tx_flip": 0.005, "rx_flip": 0.001, "tx_truncate": 0.08,
              "tx_skip": 1500, "rx_skip": 100}
    ref = Accelerator(EmulatorLink(CFG))
    link = SimLink("verilator", CFG, lanes=LANES, timeout=4.0, faults=faults,
                   baud_divisor=DIVISOR)
    with Accelerator(link, retries=12, sync_attempts=6) as acc:
        for a in (ref, acc):
            a.configure(CFG)
            a.set_outputs(spikes=True, flips=True)
        for i in range(k):
            x, y = data.x_train[i], int(data.y_train[i])
            r_ref, r = ref.run_sample(x, y, learn=True), acc.run_sample(x, y, learn=True)
            assert r.prediction == r_ref.prediction and np.array_equal(r.scores, r_ref.scores)
            assert r.flips.as_tuples() == r_ref.flips.as_tuples(), f"sample {i}: flips"
            for s, t in zip(r.spikes, r_ref.spikes):
                assert np.array_equal(s, t), f"sample {i}: spikes"
        st = acc.status()
        got, want = acc.state_dict(), ref.state_dict()
        for key in want:
            assert np.array_equal(got[key], want[key]), key
        host = dict(acc.stats)
    inj = link.stats["faults"]
    print(f"injected {inj}; host {host}; device: crc {st.crc_errors}, length "
          f"{st.length_errors}, cmd {st.cmd_errors}")
    assert inj["tx_flip"] + inj["tx_truncate"] >= 5 and inj["rx_flip"] >= 2, inj
    # the device saw the host's damaged frames (those whose SYNC survived) ...
    assert st.crc_errors + st.length_errors >= 1
    # ... and every fault cost the host a recovery (a resend, or a SYNC that found garbage)
    assert host["retries"] >= 1 and host["bad_frames"] + host["transport_errors"] >= 1
