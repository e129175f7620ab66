"""Checkpoint -> resume is bit-exact: N samples, a checkpoint, a fresh device restored from the
file and M more samples equal N + M samples straight -- every weight, momentum, V, threshold,
bias and register, and every prediction, score and flip after the split.

The schedule runs at a boundary on each side of the split (``end_epoch``), so the registers it
changes (``rate_shift``, ``gamma``, ``tbso_gamma_q``) and the step counter (the stochastic
rounding key) must come back from the file too. The RTL version (a fresh simulator process for
the resumed half) is ``verif/test_resume_sim.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import tiny_config
from golden.core import Core
from host.accelerator import Accelerator
from host.link import EmulatorLink

from .conftest import random_dataset

# flips often, and the schedule changes a register at every end_epoch
CFG = {"bso": tiny_config(gamma=(2, 2), rate_shift=4, schedule_every=1, schedule_gamma_num=3,
                          schedule_gamma_den=2),
       "tbso": tiny_config(optimizer="tbso", gamma=(2, 2), rate_shift=4, tbso_gamma=0.25,
                           schedule_every=1, schedule_gamma_num=3, schedule_gamma_den=2)}
EPOCH_AT = {2: 1, 9: 2}          # end_epoch(e) after the sample with this index


def learn(acc, data, ks):
    """Learn samples ``ks`` (with the schedule at EPOCH_AT); return what each one reported."""
    out = []
    for k in ks:
        r = acc.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
        out.append((r.prediction, r.scores.tolist(), r.flips.as_tuples()))
        if k in EPOCH_AT:
            acc.end_epoch(EPOCH_AT[k])
    return out


def split_run(open_link, cfg, data, n, m, path):
    """Samples 0..n-1 on one device, checkpoint, samples n..n+m-1 on a fresh one restored from
    the file; return (results after the split, final state, state in the checkpoint)."""
    with Accelerator(open_link()) as a:
        a.configure(cfg)
        a.set_outputs(spikes=False, flips=True)
        learn(a, data, range(n))
        a.checkpoint(path)
        at_split = a.state_dict()
    with Accelerator(open_link()) as b:
        assert b.restore(path) == cfg
        b.set_outputs(spikes=False, flips=True)
        after = learn(b, data, range(n, n + m))
        return after, b.state_dict(), at_split


def straight_run(open_link, cfg, data, n, m):
    with Accelerator(open_link()) as a:
        a.configure(cfg)
        a.set_outputs(spikes=False, flips=True)
        before = learn(a, data, range(n))
        at_split = a.state_dict()
        after = learn(a, data, range(n, n + m))
        return before, after, a.state_dict(), at_split


def assert_same_state(got, want, what):
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{what}: {k}"


def check_resume(open_link, cfg, n, m, path, reference=None):
    """Split at ``n`` on ``open_link`` against the straight run on ``reference`` (default: the
    same kind of link)."""
    data = random_dataset(cfg, n_train=n + m)
    _, after_ref, final_ref, split_ref = straight_run(reference or open_link, cfg, data, n, m)
    after, final, split = split_run(open_link, cfg, data, n, m, path)
    assert_same_state(split, split_ref, f"at the split (sample {n})")
    assert after == after_ref
    assert_same_state(final, final_ref, f"after {n} + {m}")
    assert int(final["step"]) == (n + m) * cfg.T
    assert sum(len(f) for _, _, f in after) > 0            # learning went on after the resume
    assert final["rate_shift"] != cfg.rate_shift or any(   # the schedule ran on both sides
        g != g0 for g, g0 in zip(final["gamma"], cfg.gamma))
    # the golden model resumed from the same file agrees too
    core = Core(cfg, "int")
    from host.checkpoint import load
    core.load_state_dict(load(path)[1])
    for k in range(n, n + m):
        core.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
        if k in EPOCH_AT:
            core.end_epoch(EPOCH_AT[k])
    assert_same_state(core.state_dict(), final_ref, "golden resumed")


@pytest.mark.parametrize("opt", ["bso", "tbso"])
@pytest.mark.parametrize("n", [1, 3, 7])
def test_resume_bit_exact_emulator(opt, n, tmp_path):
    check_resume(lambda: EmulatorLink(), CFG[opt], n, 12 - n, tmp_path / "ck.npz")


def test_cli_train_resume_equals_the_unsplit_run(tmp_path, capsys):
    """``train --epochs 3`` == ``train --epochs 1`` then ``train --resume CK --epochs 3``: the
    same history (accuracies, flips, flips per step) and the same checkpoint, bit for bit; the
    schedule (every epoch here) runs on both sides of the split."""
    import json

    from host.__main__ import main

    cfg_file = tmp_path / "cfg.json"
    tiny_config(layers=(128, 16, 10), gamma=(4, 4), rate_shift=5, schedule_every=1,
                schedule_gamma_num=3, schedule_gamma_den=2).to_json(cfg_file)
    common = ["--link", "emulator", "--data", "digits", "--samples", "10", "--test-samples",
              "6", "--no-progress", "--shuffle-seed", "5"]
    assert main(["train", "--epochs", "3", "--config", str(cfg_file), "--out",
                 str(tmp_path / "straight"), *common]) == 0
    assert main(["train", "--epochs", "1", "--config", str(cfg_file), "--out",
                 str(tmp_path / "first"), *common]) == 0
    ck = tmp_path / "first" / "checkpoint.npz"
    # the resumed run takes data, samples and seed from the checkpoint
    assert main(["train", "--epochs", "3", "--resume", str(ck), "--no-progress", "--out",
                 str(tmp_path / "resumed")]) == 0
    capsys.readouterr()
    a, b = (json.loads((tmp_path / d / "history.json").read_text())
            for d in ("straight", "resumed"))
    for key in ("test_accuracy", "train_accuracy", "flips", "flips_per_step", "config",
                "train_samples_per_epoch", "test_samples"):
        assert a[key] == b[key], key
    assert len(b["per_epoch"]) == 3
    assert [r["flips"] for r in a["per_epoch"]] == [r["flips"] for r in b["per_epoch"]]
    from host.checkpoint import load
    (_, sa, pa), (_, sb, pb) = (load(tmp_path / d / "checkpoint.npz", with_progress=True)
                                for d in ("straight", "resumed"))
    assert_same_state(sb, sa, "checkpoint")
    assert pa == pb and pa["epochs_done"] == 3
    assert ((tmp_path / "straight" / "checkpoint.npz").read_bytes()
            == (tmp_path / "resumed" / "checkpoint.npz").read_bytes())     # the same file
    # a resume that contradicts the run, or has nothing left to do, is refused up front
    for argv, msg in ((["--epochs", "1"], "1 epoch(s) are done already"),
                      (["--epochs", "3", "--samples", "9"], "the run had --samples 10, not 9"),
                      (["--epochs", "3", "--config", str(cfg_file)], "no --config")):
        assert main(["train", "--resume", str(ck), "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()
