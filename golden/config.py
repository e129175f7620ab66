"""The network and learning configuration: one frozen dataclass shared by golden, hdl_gen and host.

Every quantity is stated in the units docs/fixed_point.md defines. Integer-mode constants are
*derived* from these fields (see :meth:`NetConfig.derived`); nothing else in the project defines a
width, a shift or a threshold. ``NetConfig.to_json`` / ``from_json`` give the manifest that
``python -m hdl_gen`` writes next to the Verilog and that the host reads back.

Validation is one place for every entry point (the CLI, ``WRITE_CONFIG`` on a device, the
generator): constructing a config checks every field's type (integers must be ``int`` and not
``bool``, numbers finite, lists of the right length and element type), its range
(:data:`INT_RANGES` and :meth:`NetConfig.validate`) and the cross-field limits, and raises
:class:`ConfigError` (a ``ValueError``) whose message names the field, the value and what is
allowed. NumPy scalars and arrays are accepted and stored as plain Python values.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NetConfig", "Derived", "ConfigError", "DEFAULT", "TBSO_DEFAULTS", "SCHEDULE_LIMITS",
           "INT_RANGES", "tiny_config"]

# Widths of the schedule-adjusted registers (the link's REG_BITS): the schedule saturates here.
SCHEDULE_LIMITS = {"rate_shift": 63, "gamma": 0xFFFF, "tbso_gamma_q": 0xFFFF}

OPTIMIZERS = ("bso", "tbso")
MODES = ("float", "int")
RESETS = ("soft", "hard")
MAX_LAYER = 16384               # synapse addresses are (layer << 28) | (post << 14) | pre
MAX_WEIGHT_LAYERS = 15
U31 = 2 ** 31 - 1               # the schedule counters: any 32-bit host or register holds them

# Inclusive ranges of the scalar integer fields (cross-field limits are in NetConfig.validate).
INT_RANGES = {
    "T": (1, 256), "leak_shift": (1, 15), "membrane_frac": (0, 24), "membrane_bits": (2, 48),
    "trace_shift": (1, 15), "trace_frac": (0, 16), "trace_bits": (1, 32), "err_shift": (0, 24),
    "delta_bits": (2, 32), "surrogate_shift": (0, 24), "momentum_bits": (2, 32),
    "rate_shift": (0, 24), "tbso_gamma_frac": (0, 16), "v_rate_shift": (0, 24),
    "v_frac": (0, 32), "v_bits": (8, 48), "schedule_every": (0, U31),
    "schedule_gamma_num": (0, U31), "schedule_gamma_den": (1, U31),
    "schedule_rate_step": (0, U31), "seed": (0, 2 ** 32 - 1),
}


class ConfigError(ValueError):
    """A :class:`NetConfig` field of the wrong type, outside its range, or in conflict with
    another field. The message names the field, the value and what is allowed."""


def _is_int(v) -> bool:
    # numbers.Integral covers int and NumPy integers without importing NumPy; bool is not a count
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return (isinstance(v, numbers.Real) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _is_bool(v) -> bool:
    t = type(v)                                                   # NumPy's bool too
    return isinstance(v, bool) or (t.__module__ == "numpy" and t.__name__ in ("bool", "bool_"))


def _seq(v):
    """``v`` as a list when it is a list, a tuple or an array (``tolist``); else None."""
    if isinstance(v, (list, tuple)):
        return list(v)
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        t = v.tolist()
        return t if isinstance(t, list) else None
    return None


def _plain(v):
    """NumPy scalars to the Python value they hold (JSON and equality stay plain)."""
    if type(v) in (bool, int, float, str) or v is None:
        return v
    if _is_bool(v):
        return bool(v)
    if _is_int(v):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return v


@dataclass(frozen=True)
class Derived:
    """Integer constants that follow from a :class:`NetConfig` (all in LSB units)."""

    theta: tuple[int, ...]        # per hidden layer, membrane LSB (2^-membrane_frac)
    one_spike: int                # one +1 synaptic input in membrane LSB
    trace_one: int                # one presynaptic spike in trace LSB
    target: int                   # output target for the label class, membrane LSB
    mem_max: int                  # membrane saturation bound (symmetric)
    trace_max: int
    delta_max: int
    mom_max: int
    v_max: int
    tbso_recip: tuple[int, ...]   # per layer: round(2^(32+v_frac-2*grad_shift) / (n_pre*n_post))


@dataclass(frozen=True)
class NetConfig:
    """Network, fixed-point and learning parameters.

    Sizes: ``layers = (n_in, n_hidden..., n_out)``; every weight is binary +-1.
    Hidden layers are LIF neurons that fire at ``u >= theta``; the last layer is a non-spiking
    leaky integrator whose membrane is the class score.
    """

    # --- topology and time -------------------------------------------------------------------
    layers: tuple[int, ...] = (128, 256, 10)
    T: int = 8
    # --- neuron ------------------------------------------------------------------------------
    leak_shift: int = 1              # lambda_m = 1 - 2^-leak_shift (1 -> 0.5, the paper's tau=2)
    membrane_frac: int = 4           # fraction bits of the membrane
    membrane_bits: int = 16          # signed width of the membrane, saturating
    theta: tuple[float, ...] = (8.0,)  # per hidden layer threshold, in synaptic units
    reset: str = "soft"
    # --- presynaptic trace a <- lambda_a * a + s ------------------------------------------------
    trace_shift: int = 1             # lambda_a = 1 - 2^-trace_shift
    trace_frac: int = 5              # trace LSB = 2^-trace_frac spikes
    trace_bits: int = 7              # unsigned width, saturating
    # --- error ---------------------------------------------------------------------------------
    target: float = 15.5             # output membrane target for the label class (others: 0)
    err_shift: int = 0               # delta_out = (o - target*y) >> err_shift
    delta_bits: int = 16             # signed width of every delta, saturating
    surrogate_shift: int = 6         # triangle surrogate half-width = 2^surrogate_shift LSB
    # --- optimizer ------------------------------------------------------------------------------
    optimizer: str = "bso"           # "bso" | "tbso"
    momentum_bits: int = 8           # signed width of M, saturating symmetric
    grad_shift: tuple[int, ...] = (2, 4)  # per layer: M tracks G * 2^-grad_shift
    rate_shift: int = 12             # momentum EMA rate = 2^-rate_shift
    gamma: tuple[int, ...] = (64, 64)  # BSO flip threshold per layer, momentum LSB
    reset_momentum: bool | None = None  # None: True for BSO, False for T-BSO (as released)
    tbso_gamma: float = 0.5          # T-BSO: thr = tbso_gamma * sqrt(V[t])
    tbso_gamma_frac: int = 8         # fixed-point fraction bits of tbso_gamma
    v_rate_shift: int = 10           # V EMA rate = 2^-v_rate_shift
    v_frac: int = 8                  # V LSB = 2^-v_frac momentum LSB^2 (must be even)
    v_bits: int = 32                 # unsigned width of V, saturating
    # --- schedule (applied at the end of an epoch whose 0-based index e>0, e % every == 0) ----
    schedule_every: int = 3          # 0: off
    schedule_gamma_num: int = 1      # gamma <- gamma * num // den  (BSO; T-BSO scales tbso_gamma)
    schedule_gamma_den: int = 1
    schedule_rate_step: int = 1      # rate_shift += step
    # --- bookkeeping ----------------------------------------------------------------------------
    seed: int = 1                    # weight init and stochastic-rounding key
    init_theta_scale: bool = True    # (documentation only) theta was chosen ~ sqrt(fan-in active)

    # ------------------------------------------------------------------------------------------
    def __post_init__(self):
        self._check_types()
        object.__setattr__(self, "layers", tuple(int(x) for x in _seq(self.layers)))
        object.__setattr__(self, "theta", tuple(float(x) for x in _seq(self.theta)))
        object.__setattr__(self, "grad_shift", tuple(int(x) for x in _seq(self.grad_shift)))
        object.__setattr__(self, "gamma", tuple(int(x) for x in _seq(self.gamma)))
        for f in dataclasses.fields(self):
            if f.name not in ("layers", "theta", "grad_shift", "gamma"):
                object.__setattr__(self, f.name, _plain(getattr(self, f.name)))
        self.validate()

    def _check_types(self) -> None:
        """Raise :class:`ConfigError` for the first field whose *type* is wrong, before any
        value is converted (``T=4.5``, ``T=True``, ``theta="8"``, ``layers=[16.5, 8, 4]``)."""

        def bad(name, allowed):
            raise ConfigError(f"NetConfig.{name}={getattr(self, name)!r} is invalid: "
                              f"allowed {allowed}")

        for name, (lo, hi) in INT_RANGES.items():
            if not _is_int(getattr(self, name)):
                bad(name, f"an integer (not bool) in {lo}..{hi}")
        for name, what in (("layers", f"a list of 2..{MAX_WEIGHT_LAYERS + 1} integers, each "
                                      f"1..{MAX_LAYER}"),
                           ("grad_shift", "a list of integers 0..24, one per weight layer"),
                           ("gamma", "a list of integers 0..2^(momentum_bits-1)-1, one per "
                                     "weight layer")):
            v = _seq(getattr(self, name))
            if v is None or not all(_is_int(x) for x in v):
                bad(name, what)
        v = _seq(self.theta)
        if v is None or not all(_is_real(x) for x in v):
            bad("theta", "a list of finite numbers > 0, one per hidden layer")
        for name in ("target", "tbso_gamma"):
            if not _is_real(getattr(self, name)):
                bad(name, "a finite number >= 0")
        for name, allowed in (("reset", RESETS), ("optimizer", OPTIMIZERS)):
            if not isinstance(getattr(self, name), str):
                bad(name, f"one of {allowed}")
        if not (self.reset_momentum is None or _is_bool(self.reset_momentum)):
            bad("reset_momentum", "true, false or null (null: the optimizer's default)")
        if not _is_bool(self.init_theta_scale):
            bad("init_theta_scale", "true or false")

    @property
    def n_layers(self) -> int:
        """Number of weight layers."""
        return len(self.layers) - 1

    @property
    def do_reset_momentum(self) -> bool:
        """Whether a flip zeroes the synapse's momentum."""
        if self.reset_momentum is None:
            return self.optimizer == "bso"
        return bool(self.reset_momentum)

    @property
    def bits_per_synapse(self) -> int:
        """Learning state stored per synapse: the weight bit plus the momentum bits."""
        return 1 + self.momentum_bits

    def validate(self) -> None:
        """Raise :class:`ConfigError` (a ValueError) naming the first field of a wrong type,
        outside its allowed range, or in conflict with another field."""

        def need(ok, name, allowed, value):
            if not ok:
                raise ConfigError(f"NetConfig.{name}={value!r} is invalid: allowed {allowed}")

        self._check_types()
        for name, (lo, hi) in INT_RANGES.items():
            v = getattr(self, name)
            need(lo <= v <= hi, name, f"{lo}..{hi}", v)
        L = self.layers
        need(len(L) >= 2, "layers", "at least (n_in, n_out)", L)
        need(len(L) <= MAX_WEIGHT_LAYERS + 1, "layers",
             f"at most {MAX_WEIGHT_LAYERS} weight layers", L)
        for n in L:
            # synapse addresses are (layer << 28) | (post << 14) | pre (golden/fixed.py)
            need(1 <= n <= MAX_LAYER, "layers", f"each size in 1..{MAX_LAYER}", L)
        need(self.reset in RESETS, "reset", RESETS, self.reset)
        need(len(self.theta) == self.n_layers - 1, "theta",
             f"one value per hidden layer ({self.n_layers - 1})", self.theta)
        for th in self.theta:
            need(th > 0, "theta", "> 0", self.theta)
        need(self.trace_frac + 1 <= self.trace_bits <= 32, "trace_bits",
             f"trace_frac+1..32 (one spike must fit)", self.trace_bits)
        need(self.target >= 0, "target", "a finite number >= 0", self.target)
        need(self.optimizer in OPTIMIZERS, "optimizer", OPTIMIZERS, self.optimizer)
        need(len(self.grad_shift) == self.n_layers, "grad_shift",
             f"one value per layer ({self.n_layers})", self.grad_shift)
        for g in self.grad_shift:
            need(0 <= g <= 24, "grad_shift", "each 0..24", self.grad_shift)
        need(len(self.gamma) == self.n_layers, "gamma",
             f"one value per layer ({self.n_layers})", self.gamma)
        mom_max = (1 << (self.momentum_bits - 1)) - 1
        for g in self.gamma:
            need(0 <= g <= mom_max, "gamma", f"each 0..{mom_max} (momentum_bits)", self.gamma)
        need(self.tbso_gamma >= 0, "tbso_gamma", "a finite number >= 0", self.tbso_gamma)
        q = self.tbso_gamma * (1 << self.tbso_gamma_frac)
        need(q == int(q) and q < (1 << 16), "tbso_gamma",
             f"a multiple of 2^-{self.tbso_gamma_frac} below 2^{16 - self.tbso_gamma_frac}",
             self.tbso_gamma)
        need(self.v_frac % 2 == 0, "v_frac", "even, 0..32", self.v_frac)
        # widths must hold the values the config itself puts into them
        d = self.derived()
        for th in d.theta:
            need(th <= d.mem_max, "theta", f"<= membrane max {d.mem_max} LSB "
                 f"(membrane_bits={self.membrane_bits})", self.theta)
        need(d.target <= d.mem_max, "target",
             f"<= membrane max {d.mem_max} LSB (membrane_bits={self.membrane_bits})", self.target)
        need(d.one_spike <= d.mem_max, "membrane_frac",
             f"one synaptic input (2^membrane_frac) must fit membrane_bits={self.membrane_bits}",
             self.membrane_frac)
        for th, raw in zip(d.theta, self.theta):
            need(th / d.one_spike == raw, "theta",
                 f"multiples of 2^-{self.membrane_frac} (membrane_frac)", self.theta)
        need(d.target / d.one_spike == self.target, "target",
             f"a multiple of 2^-{self.membrane_frac} (membrane_frac)", self.target)

    def derived(self) -> Derived:
        """Integer constants used by int mode and by the RTL generator.

        Computed once per config (the dataclass is frozen, so they cannot go stale) and kept
        outside the fields: equality, hashing, ``to_dict`` and ``replace`` ignore the cache.
        """
        d = self.__dict__.get("_derived")
        if d is None:
            d = self._compute_derived()
            object.__setattr__(self, "_derived", d)
        return d

    def _compute_derived(self) -> Derived:
        one = 1 << self.membrane_frac
        recip = []
        for l in range(self.n_layers):
            n = self.layers[l] * self.layers[l + 1]
            e = 32 + self.v_frac - 2 * self.grad_shift[l]
            recip.append(int(round(2.0 ** e / n)))
        return Derived(
            theta=tuple(int(round(t * one)) for t in self.theta),
            one_spike=one,
            trace_one=1 << self.trace_frac,
            target=int(round(self.target * one)),
            mem_max=(1 << (self.membrane_bits - 1)) - 1,
            trace_max=(1 << self.trace_bits) - 1,
            delta_max=(1 << (self.delta_bits - 1)) - 1,
            mom_max=(1 << (self.momentum_bits - 1)) - 1,
            v_max=(1 << self.v_bits) - 1,
            tbso_recip=tuple(recip),
        )

    # --- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-JSON view of the config (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON (sorted keys); write it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        """Build from a dict; unknown keys, wrong types and bad values are a :class:`ConfigError`
        naming them."""
        if not isinstance(d, dict):
            raise ConfigError(f"NetConfig: expected an object of fields, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names, key=str)
        if unknown:
            raise ConfigError(f"NetConfig: unknown field(s) {unknown}; allowed {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "NetConfig":
        """Load from a JSON file path or a JSON string (an hdl_gen manifest works too)."""
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"NetConfig: {p or 'the text'} is not JSON ({e})") from None
        if isinstance(d, dict) and "config" in d and isinstance(d["config"], dict):
            d = d["config"]                                       # an hdl_gen manifest
        return cls.from_dict(d)

    def replace(self, **kw) -> "NetConfig":
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **kw)

    @classmethod
    def default_for(cls, optimizer: str = "bso", **kw) -> "NetConfig":
        """The tuned default for ``optimizer``: the field defaults plus :data:`TBSO_DEFAULTS`
        for ``"tbso"``; ``kw`` overrides fields (``python -m studies.digits`` runs these)."""
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={optimizer!r} is invalid: allowed {OPTIMIZERS}")
        base = dict(TBSO_DEFAULTS) if optimizer == "tbso" else {}
        base.update(kw)
        return cls(optimizer=optimizer, **base)


# T-BSO values that differ from the (BSO-tuned) field defaults, tuned on digits (studies.digits).
TBSO_DEFAULTS: dict = {
    "grad_shift": (4, 2),      # puts tbso_gamma * sqrt(V) of both layers near 50-100 momentum LSB
    "tbso_gamma": 0.5,
    "v_rate_shift": 6,         # V settles within ~64 samples (the threshold starts at 0)
    "reset_momentum": True,    # reset on flip (as BSO): without it int mode jitters on M noise
    "schedule_rate_step": 0,   # anneal by raising the threshold instead of slowing the EMA:
    "schedule_gamma_num": 3,   # tbso_gamma *= 3/2 every schedule_every epochs (a slower EMA
    "schedule_gamma_den": 2,   # adds stochastic-rounding noise that T-BSO's threshold follows)
}


DEFAULT = NetConfig()


def tiny_config(**kw) -> NetConfig:
    """A small network for unit tests and fast RTL benches."""
    base = dict(layers=(16, 8, 4), T=4, theta=(2.0,), grad_shift=(2, 3), gamma=(8, 8))
    base.update(kw)
    return NetConfig(**base)
