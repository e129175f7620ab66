"""host.checkpoint: round trip, atomic save, and one clear error for every kind of bad file."""
from __future__ import annotations

import numpy as np
import pytest

from golden.config import SCHEDULE_LIMITS, tiny_config
from golden.core import Core
from host import checkpoint as C
from host import protocol as P
from host.checkpoint import CheckpointError

from .conftest import random_dataset


@pytest.fixture(scope="module")
def trained():
    """A tiny config and a golden state after some learning (momenta, flips, V non-zero)."""
    cfg = tiny_config(optimizer="tbso", gamma=(2, 2), rate_shift=4, tbso_gamma=0.25,
                      layers=(13, 8, 4))           # n_pre = 13: packed weights have padding
    core = Core(cfg, "int")
    data = random_dataset(cfg, n_train=12)
    for k in range(12):
        core.run_sample(data.x_train[k], int(data.y_train[k]), learn=True)
    assert core.step > 0 and any(np.abs(m).max() > 0 for m in core.M)
    return cfg, core.state_dict()


def write_raw(path, fmt=C.CHECKPOINT_FORMAT, config=None, state=None, digest="auto",
              progress=None):
    """Write an .npz the way a (possibly buggy or hostile) writer would, checksum recomputed."""
    meta = {"format": np.array(fmt), "config": np.array(config)}
    if progress is not None:
        meta["progress"] = np.array(progress)
    if digest == "auto":
        digest = C.checksum(fmt, config, state, progress)
    if digest is not None:
        meta["checksum"] = np.array(digest)
    with open(path, "wb") as f:
        np.savez(f, **meta, **state)
    return path


def cfg_text(cfg):
    return P.config_bytes(cfg).decode()


def test_round_trip_bit_exact(trained, tmp_path):
    cfg, st = trained
    path = C.save(tmp_path / "ck", cfg, st, progress={"epoch": 1, "done": 3})
    assert path.name == "ck.npz"
    cfg2, st2, prog = C.load(path, with_progress=True)
    assert cfg2 == cfg and prog == {"epoch": 1, "done": 3}
    assert st2.keys() == st.keys()
    for k, (dt, shape, _) in C.state_spec(cfg).items():
        assert st2[k].dtype == dt and st2[k].shape == shape
        assert np.array_equal(st2[k], st[k]), k
    core = Core(cfg, "int")
    core.load_state_dict(st2)                      # the golden model reads it unchanged
    for k, v in core.state_dict().items():
        assert np.array_equal(v, st[k]), k
    assert C.load(path, expect=cfg)[0] == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]     # no temporary left


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    cfg, st = trained
    path = C.save(tmp_path / "ck.npz", cfg, st)
    before = path.read_bytes()
    real = np.savez

    def dies_half_way(f, **arrays):
        real(f, **dict(list(arrays.items())[:3]))
        raise KeyboardInterrupt                      # e.g. ^C or a full disk mid-write

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        C.save(path, cfg, st)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_save_refuses_invalid_state(trained, tmp_path):
    cfg, st = trained
    bad = dict(st, M0=st["M0"] + cfg.derived().mom_max + 1)
    with pytest.raises(CheckpointError, match=r"M0\[0, 0\] = \d+ is out of range"):
        C.save(tmp_path / "ck.npz", cfg, bad)
    assert not list(tmp_path.iterdir())


def _bad_files(tmp, cfg, st):
    """name -> (path, expected message part)."""
    good = C.save(tmp / "good.npz", cfg, st)
    raw = good.read_bytes()
    mm = cfg.derived().mom_max
    text = cfg_text(cfg)
    cases = {}

    def case(name, msg, data=None, **kw):
        p = tmp / name
        if data is not None:
            p.write_bytes(data)
        else:
            write_raw(p, **kw)
        cases[name] = (p, msg)

    cases["missing.npz"] = (tmp / "missing.npz", "file not found")
    case("empty.npz", "the file is empty", data=b"")
    case("truncated.npz", "a zip cut short or damaged", data=raw[:len(raw) // 2])
    case("config.json", "not a checkpoint", data=cfg.to_json().encode())
    arr = tmp / "arr.npy"
    np.save(arr, st["M0"])
    cases["arr.npy"] = (arr, "a .npy array")
    rnd = tmp / "random.npz"
    np.savez(rnd, a=np.arange(3), b=np.ones(2))
    cases["random.npz"] = (rnd, "without a 'format' entry")
    case("numformat.npz", "not a text entry", config=text, state=st,
         fmt=np.array([1, 2, 3]), digest=None)
    case("format3.npz", "format 'bsnn-accel-checkpoint/3' is not supported",
         fmt="bsnn-accel-checkpoint/3", config=text, state=st)
    case("no_checksum.npz", "no 'checksum' entry", config=text, state=st, digest=None)
    case("edited.npz", "checksum mismatch", config=text,
         state=dict(st, M0=np.zeros_like(st["M0"])), digest=C.checksum(
             C.CHECKPOINT_FORMAT, text, st))
    # one byte of an array changed inside the file: the zip's own CRC or the checksum sees it
    k = raw.index(st["M0"].tobytes()[:64]) + 10
    flipped = bytearray(raw)
    flipped[k] ^= 0x40
    case("flipped.npz", "", data=bytes(flipped))
    case("badcfg.npz", "invalid config: NetConfig.T=0", config=text.replace('"T":4', '"T":0'),
         state=st)
    case("notjson.npz", "invalid config", config="{layers: 3", state=st)
    case("othercfg.npz", "unexpected array(s) ['M1', 'V1', 'bias1', 'theta0', 'w1']", config=cfg_text(cfg.replace(
        layers=(13, 4), theta=(), grad_shift=(2,), gamma=(2,))), state=st)
    case("mom.npz", f"M1[0, 0] = {mm + 100} is out of range {-mm}..{mm}", config=text,
         state=dict(st, M1=np.full_like(st["M1"], mm + 100)))
    case("mom_neg.npz", f"M0[2, 5] = {-mm - 1} is out of range", config=text,
         state=dict(st, M0=np.where(np.arange(13) == 5, -mm - 1, 0)[None].repeat(8, 0)
                    * (np.arange(8) == 2)[:, None]))
    case("dtype.npz", "M0 has dtype float64, expected int64", config=text,
         state=dict(st, M0=st["M0"].astype(float)))
    case("shape.npz", "V0 has shape (5,), expected (4,)", config=text,
         state=dict(st, V0=np.zeros(5, np.int64)))
    case("missing_arr.npz", "missing array(s) ['theta0']", config=text,
         state={k: v for k, v in st.items() if k != "theta0"})
    case("pad.npz", "w0: padding bits beyond n_pre=13 are not 0", config=text,
         state=dict(st, w0=st["w0"] | np.uint8(0x80)))
    case("theta.npz", "theta0[3] = 0 is out of range 1..", config=text,
         state=dict(st, theta0=np.where(np.arange(8) == 3, 0, st["theta0"])))
    case("v.npz", "V1[0] = -1 is out of range 0..", config=text,
         state=dict(st, V1=np.full(4, -1, np.int64)))
    case("rate.npz", f"rate_shift = 64 is out of range 0..{SCHEDULE_LIMITS['rate_shift']}",
         config=text, state=dict(st, rate_shift=np.int64(64)))
    case("gamma.npz", f"gamma[1] = 65536 is out of range 0..{SCHEDULE_LIMITS['gamma']}",
         config=text, state=dict(st, gamma=np.array([2, 65536], np.int64)))
    case("tbso.npz", "tbso_gamma_q = -1 is out of range", config=text,
         state=dict(st, tbso_gamma_q=np.int64(-1)))
    case("step.npz", f"step = {2**32} is out of range 0..{2**32 - 1}", config=text,
         state=dict(st, step=np.int64(2**32)))
    case("progress.npz", "'progress' is not JSON", config=text, state=st, progress="{")
    return cases


def test_every_bad_file_is_one_clear_error(trained, tmp_path):
    cfg, st = trained
    for name, (path, msg) in _bad_files(tmp_path, cfg, st).items():
        with pytest.raises(CheckpointError) as ei:
            C.load(path)
        text = str(ei.value)
        assert text.startswith(str(path)), (name, text)
        assert msg in text, (name, text)
        assert "\n" not in text, (name, text)


def test_other_config_expected(trained, tmp_path):
    cfg, st = trained
    path = C.save(tmp_path / "ck.npz", cfg, st)
    with pytest.raises(CheckpointError, match=r"written for another config: T=4 \(expected 5\)"):
        C.load(path, expect=cfg.replace(T=5))


def test_format_1_loads_with_validation(trained, tmp_path):
    cfg, st = trained
    old = tmp_path / "old.npz"                    # as host.accelerator wrote it before format 2
    np.savez(old, format=np.array("bsnn-accel-checkpoint/1"), config=np.array(cfg_text(cfg)),
             **{k: v.astype(np.int32) if k.startswith("M") else v for k, v in st.items()})
    cfg2, st2 = C.load(old)
    assert cfg2 == cfg
    for k in st:
        assert st2[k].dtype == C.state_spec(cfg)[k][0]
        assert np.array_equal(st2[k], st[k]), k
    mm = cfg.derived().mom_max
    np.savez(old, format=np.array("bsnn-accel-checkpoint/1"), config=np.array(cfg_text(cfg)),
             **dict(st, M0=st["M0"] * 0 + 500))
    with pytest.raises(CheckpointError, match=f"M0\\[0, 0\\] = 500 is out of range -{mm}..{mm}"):
        C.load(old)


def test_accelerator_checkpoint_uses_the_format(trained, tmp_path):
    from host.accelerator import Accelerator
    from host.link import EmulatorLink

    cfg, st = trained
    with Accelerator(EmulatorLink()) as acc:
        acc.configure(cfg)
        acc.load_state_dict(st)
        path = acc.checkpoint(tmp_path / "dev.npz")
    with np.load(path) as z:
        assert str(z["format"]) == C.CHECKPOINT_FORMAT
    cfg2, st2 = Accelerator.read_checkpoint(path)
    assert cfg2 == cfg and all(np.array_equal(st2[k], st[k]) for k in st)
    bad = tmp_path / "bad.npz"
    write_raw(bad, config=cfg_text(cfg), state=dict(st, M0=st["M0"] * 0 + 500))
    with Accelerator(EmulatorLink()) as acc, pytest.raises(CheckpointError, match="M0"):
        acc.restore(bad)
