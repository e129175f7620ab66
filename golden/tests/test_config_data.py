"""Config validation and serialisation; the digits encoder and split; a learning smoke test."""
import json

import numpy as np
import pytest

from golden.config import DEFAULT, NetConfig, tiny_config
from golden.core import Core
from golden.data import encode_digits, load_digits_events
from golden.train import evaluate, train


def test_json_round_trip(tmp_path):
    cfg = tiny_config(optimizer="tbso", reset="hard")
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert NetConfig.from_json(path) == cfg
    assert NetConfig.from_json(cfg.to_json()) == cfg
    assert NetConfig.from_json(json.dumps({"config": cfg.to_dict()})) == cfg


@pytest.mark.parametrize("field,value,words", [
    ("momentum_bits", 1, "momentum_bits"), ("optimizer", "adam", "optimizer"),
    ("theta", (1.0, 2.0), "theta"), ("theta", (10000.0,), "theta"),
    ("theta", (1.01,), "multiples"), ("layers", (128,), "layers"),
    ("layers", (128, 20000, 10), "16384"), ("gamma", (24, 500), "gamma"),
    ("v_frac", 7, "v_frac"), ("reset", "none", "reset"), ("T", 0, "T"),
    ("tbso_gamma", 0.3, "tbso_gamma"), ("trace_bits", 2, "trace_bits"),
])
def test_invalid_config_names_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        DEFAULT.replace(**{field: value})


def test_unknown_json_field_is_an_error():
    with pytest.raises(ValueError, match="unknown field"):
        NetConfig.from_dict({"layers": [4, 2], "lanes": 8})


def test_bits_per_synapse_default_at_most_9():
    assert DEFAULT.bits_per_synapse == 1 + DEFAULT.momentum_bits <= 9


def test_delta_encoder_counts_and_channels():
    img = np.array([[0, 16, 8, 4] + [0] * 60])
    ev = encode_digits(img, T=8)
    assert ev.shape == (1, 8, 128)
    counts = ev[0].sum(0)
    assert counts[0] == 0 and counts[1] == 8 and counts[2] == 4 and counts[3] == 2
    assert counts[64] == 8 and counts[65] == 0 and counts[66] == 4 and counts[67] == 6


@pytest.mark.parametrize("bad,words", [(np.array([[17] * 64]), "0..16"),
                                       (np.array([[-1] * 64]), "0..16"),
                                       (np.zeros(64), "shape")])
def test_encoder_rejects_bad_images(bad, words):
    with pytest.raises(ValueError, match=words):
        encode_digits(bad, T=4)


def test_split_is_fixed_and_disjoint():
    d = load_digits_events(T=4)
    assert len(d.x_train) == 1437 and len(d.x_test) == 360
    d2 = load_digits_events(T=4)
    assert np.array_equal(d.x_test, d2.x_test) and np.array_equal(d.y_train, d2.y_train)
    assert np.bincount(d.y_test, minlength=10).min() > 20


def test_core_rejects_bad_input():
    core = Core(tiny_config())
    with pytest.raises(ValueError, match="shape"):
        core.run_sample(np.zeros((4, 15), bool))
    with pytest.raises(ValueError, match="label"):
        core.run_sample(np.zeros((4, 16), bool), label=4, learn=True)
    with pytest.raises(ValueError, match="mode"):
        Core(tiny_config(), "fixed")


@pytest.mark.parametrize("optimizer", ["bso", "tbso"])
def test_learning_far_above_chance(optimizer):
    cfg = NetConfig.default_for(optimizer) if hasattr(NetConfig, "default_for") \
        else DEFAULT.replace(optimizer=optimizer)
    data = load_digits_events(cfg.T)
    core = Core(cfg, "int")
    before = evaluate(core, data.x_test[:200], data.y_test[:200])
    train(core, data, epochs=1, samples=600, eval_every_epoch=False)
    after = evaluate(core, data.x_test[:200], data.y_test[:200])
    assert after >= 0.5 and after > before + 0.3, (before, after)
