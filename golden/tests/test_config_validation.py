"""One validation of a NetConfig: types, ranges and cross-field limits, each a ConfigError
(a ValueError) naming the field, the value and what is allowed; valid configs unchanged."""
import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.config import (DEFAULT, INT_RANGES, TBSO_DEFAULTS, ConfigError, NetConfig,
                           tiny_config)

FIELDS = {f.name: f for f in dataclasses.fields(NetConfig)}
TUPLE_INT = ("layers", "grad_shift", "gamma")
REALS = ("target", "tbso_gamma")


def _raises_naming(field, value, **base):
    kw = dict(base)
    kw[field] = value
    with pytest.raises(ConfigError) as e:
        NetConfig(**kw)
    msg = str(e.value)
    assert f"NetConfig.{field}=" in msg and "allowed" in msg, msg
    return msg


def test_every_field_has_a_type_rule():
    """Each field is covered by INT_RANGES or one of the other kinds (a new field must be)."""
    known = set(INT_RANGES) | set(TUPLE_INT) | set(REALS) | {
        "theta", "reset", "optimizer", "reset_momentum", "init_theta_scale"}
    assert known == set(FIELDS)


@pytest.mark.parametrize("field,value", [
    ("layers", [16.5, 8, 4]), ("layers", "16,8,4"), ("layers", [16, True, 4]), ("layers", 16),
    ("theta", "8"), ("theta", 8.0), ("theta", [float("nan")]), ("theta", ["8"]),
    ("T", 4.5), ("T", True), ("T", "8"), ("T", None), ("T", 8.0),
    ("leak_shift", 1.5), ("seed", False), ("target", "15.5"), ("target", float("inf")),
    ("tbso_gamma", None), ("reset", 1), ("optimizer", None), ("reset_momentum", "yes"),
    ("reset_momentum", 1), ("init_theta_scale", 0), ("grad_shift", (2.0, 4)),
    ("gamma", [64, "64"]),
])
def test_wrong_types_are_rejected_naming_field_value_and_range(field, value):
    msg = _raises_naming(field, value)
    assert repr(value) in msg
    if field in INT_RANGES:
        lo, hi = INT_RANGES[field]
        assert f"{lo}..{hi}" in msg


def test_the_issue_cases_name_the_allowed_range():
    assert "1..256" in _raises_naming("T", 4.5)
    assert "1..15" in _raises_naming("leak_shift", 1.5)
    assert "1..16384" in _raises_naming("layers", [16.5, 8, 4])
    assert "finite numbers > 0" in _raises_naming("theta", "8")


def test_config_error_is_a_value_error_and_json_paths_raise_it():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="not JSON"):
        NetConfig.from_json("{not json")
    with pytest.raises(ConfigError, match="object of fields"):
        NetConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="NetConfig.T=4.5"):
        NetConfig.from_json(json.dumps({"T": 4.5}))
    with pytest.raises(ConfigError, match="NetConfig.T=True"):
        NetConfig.from_json('{"T": true}')


def test_numpy_values_are_accepted_and_made_plain():
    cfg = NetConfig(layers=np.array([128, 256, 10]), T=np.int64(8), target=np.float64(15.5),
                    reset_momentum=np.bool_(True))
    assert cfg == NetConfig(reset_momentum=True)
    assert type(cfg.T) is int and type(cfg.target) is float and cfg.layers == (128, 256, 10)
    json.dumps(cfg.to_dict())


def test_defaults_and_tuned_configs_unchanged():
    """The valid configs of the project construct as before: same fields, same JSON."""
    for cfg in (DEFAULT, NetConfig.default_for("tbso"), tiny_config()):
        assert NetConfig.from_json(cfg.to_json()) == cfg
    assert NetConfig.default_for("tbso").grad_shift == TBSO_DEFAULTS["grad_shift"]
    assert DEFAULT.to_dict()["layers"] == [128, 256, 10] and DEFAULT.theta == (8.0,)


# --- hypothesis: every scalar integer field past its limits and with wrong types ---------------

_wrong_int = st.one_of(st.booleans(), st.floats(allow_nan=True), st.text(max_size=3),
                       st.none(), st.lists(st.integers(0, 4), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(INT_RANGES)), _wrong_int)
def test_int_fields_reject_every_non_integer(field, value):
    _raises_naming(field, value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(INT_RANGES)), st.booleans(), st.integers(1, 2 ** 40))
def test_int_fields_reject_values_past_their_range(field, above, by):
    lo, hi = INT_RANGES[field]
    msg = _raises_naming(field, hi + by if above else lo - by)
    assert f"{lo}..{hi}" in msg


_not_a_number = st.one_of(st.booleans(), st.text(max_size=2), st.none(),
                         st.lists(st.integers(), max_size=1))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TUPLE_INT + ("theta",)), st.lists(_not_a_number, min_size=1, max_size=3),
       st.integers(0, 2))
def test_tuple_fields_reject_wrong_element_types(field, bad, at):
    good = list(getattr(DEFAULT, field))
    _raises_naming(field, good[:at] + bad + good[at:])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(TUPLE_INT), st.floats(), st.integers(0, 2))
def test_integer_tuples_reject_floats(field, bad, at):
    good = list(getattr(DEFAULT, field))
    _raises_naming(field, good[:at] + [bad] + good[at:])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.integers(1, 16), st.integers(1, 20), st.integers(0, 12),
       st.integers(2, 12), st.sampled_from(["bso", "tbso"]), st.integers(0, 2 ** 32 - 1))
def test_valid_configs_construct_and_round_trip(n_in, n_out, T, rate, mbits, opt, seed):
    mom_max = (1 << (mbits - 1)) - 1
    cfg = NetConfig(layers=(n_in, 8, n_out), T=T, rate_shift=rate, momentum_bits=mbits,
                    gamma=(min(64, mom_max), min(64, mom_max)), optimizer=opt, seed=seed)
    assert NetConfig.from_json(cfg.to_json()) == cfg
    assert NetConfig.from_dict(json.loads(cfg.to_json())).to_json() == cfg.to_json()


@pytest.mark.parametrize("kw,field", [
    (dict(theta=(1.0, 2.0)), "theta"), (dict(gamma=(24, 500)), "gamma"),
    (dict(trace_frac=8, trace_bits=8), "trace_bits"), (dict(v_frac=7), "v_frac"),
    (dict(membrane_bits=8, theta=(16.0,)), "theta"),
    (dict(membrane_bits=4, membrane_frac=4, theta=(0.0625,), target=0.0625), "membrane_frac"),
    (dict(tbso_gamma=0.3), "tbso_gamma"), (dict(layers=(4,)), "layers"),
])
def test_cross_field_limits(kw, field):
    with pytest.raises(ConfigError, match=f"NetConfig.{field}="):
        DEFAULT.replace(**kw)
