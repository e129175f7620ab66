"""Core twin: the whole accelerator (all layers, learning on or off), one sample at a time.

Order of one time step ``t`` (the RTL follows the same order; docs/fixed_point.md section 5):

1. forward, layer by layer: accumulate, LIF, spikes to the next layer (the output layer integrates);
   ``score += o`` (the prediction is ``argmax score`` after the last step, lowest index on ties);
2. traces of every layer's *input* spikes are advanced (they include step t's spikes);
3. if learning: output error from the label, hidden errors through the *old* weights;
4. if learning: per layer, T-BSO ``V[t]`` and threshold, then momentum update and flips;
   the global learning-step counter (the stochastic-rounding key) advances by one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import SCHEDULE_LIMITS, NetConfig
from .error_unit import hidden_error, output_error
from .fixed import FloatArith, IntArith, step_key
from .flip_unit import flip_step, tbso_update
from .neuron_array import accumulate, lif_step
from .trace_unit import trace_step

__all__ = ["Core", "SampleResult", "FlipEvents"]


@dataclass
class FlipEvents:
    """Flip events of one sample as parallel arrays (t, layer, post, pre), in emission order."""

    t: np.ndarray
    layer: np.ndarray
    post: np.ndarray
    pre: np.ndarray

    def __len__(self):
        return int(self.t.size)

    def as_tuples(self) -> list[tuple[int, int, int, int]]:
        return list(zip(self.t.tolist(), self.layer.tolist(), self.post.tolist(),
                        self.pre.tolist()))


@dataclass
class SampleResult:
    """What one sample produced: prediction, per-layer spike rasters, output scores, flips."""

    prediction: int
    spikes: list[np.ndarray]           # per hidden layer: (T, n) bool
    scores: np.ndarray                 # (n_out,) sum over t of the output membrane
    flips: FlipEvents
    flips_per_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class Core:
    """Golden model of the accelerator core, in ``mode='int'`` (hardware contract) or ``'float'``.

    State is public and named like the RTL memories: ``w_sign[l]`` (+-1, int8, shape
    (n_post, n_pre)), ``M[l]`` (momentum, same shape), ``V[l]`` (T-BSO, shape (T,)),
    ``theta[l]`` / ``bias[l]`` (per neuron, membrane LSB).
    """

    def __init__(self, cfg: NetConfig, mode: str = "int"):
        if mode not in ("int", "float"):
            raise ValueError(f"Core mode={mode!r} is invalid: allowed ('int', 'float')")
        self.cfg = cfg
        self.mode = mode
        self.ar = IntArith() if mode == "int" else FloatArith()
        d = cfg.derived()
        rng = np.random.default_rng(cfg.seed)
        L = cfg.layers
        self.w_sign = [(rng.integers(0, 2, (L[l + 1], L[l]), dtype=np.int8) * 2 - 1)
                       .astype(np.int8) for l in range(cfg.n_layers)]
        self.M = [self.ar.zeros((L[l + 1], L[l])) for l in range(cfg.n_layers)]
        self.V = [self.ar.zeros(cfg.T) for _ in range(cfg.n_layers)]
        self.theta = [np.full(L[l + 1], d.theta[l], np.int64) for l in range(cfg.n_layers - 1)]
        self.bias = [np.zeros(L[l + 1], np.int64) for l in range(cfg.n_layers)]
        self.step = 0                               # global learning-step counter
        self.rate_shift = cfg.rate_shift
        self.gamma = list(cfg.gamma)
        self.tbso_gamma_q = int(round(cfg.tbso_gamma * (1 << cfg.tbso_gamma_frac)))
        self.reset_sample()

    # --- per-sample state ----------------------------------------------------------------------
    def reset_sample(self) -> None:
        """Clear membranes, traces, scores and the time-step index (a new sample starts)."""
        L = self.cfg.layers
        self.v = [self.ar.zeros(L[l + 1]) for l in range(self.cfg.n_layers)]
        self.a = [self.ar.zeros(L[l]) for l in range(self.cfg.n_layers)]
        self.score = self.ar.zeros(L[-1])
        self.t = 0

    @property
    def counters(self) -> dict:
        """Saturation counters of the int arithmetic (all zero in float mode)."""
        return dict(self.ar.counters)

    # --- one time step ----------------------------------------------------------------------------
    def step_once(self, s_in: np.ndarray, label: int | None = None, learn: bool = False):
        """Run time step ``self.t`` on binary input ``s_in``; return (spikes per layer, flips).

        ``flips`` is a list of ``(layer, post, pre)`` array triples, one per layer.
        """
        cfg = self.cfg
        ar = self.ar
        s_in = np.asarray(s_in)
        if s_in.shape != (cfg.layers[0],):
            raise ValueError(f"input spikes have shape {s_in.shape}: expected ({cfg.layers[0]},)")
        if self.t >= cfg.T:
            raise ValueError(f"time step {self.t} is beyond T={cfg.T}: call reset_sample()")
        if learn and label is None:
            raise ValueError("learn=True needs a label")
        if label is not None and not 0 <= int(label) < cfg.layers[-1]:
            raise ValueError(f"label={label} out of range 0..{cfg.layers[-1] - 1}")
        s = s_in.astype(bool)
        spikes_in = [s]
        us = []
        for l in range(cfg.n_layers):
            last = l == cfg.n_layers - 1
            z = accumulate(self.w_sign[l], spikes_in[l])
            theta = None if last else self.theta[l]
            u, s_out, self.v[l] = lif_step(ar, cfg, self.v[l], z, theta, self.bias[l],
                                           spiking=not last)
            us.append(u)
            if not last:
                spikes_in.append(s_out)
        self.score = self.score + self.v[-1]
        for l in range(cfg.n_layers):
            self.a[l] = trace_step(ar, cfg, self.a[l], spikes_in[l])
        flips = []
        if learn:
            deltas = [None] * cfg.n_layers
            deltas[-1] = output_error(ar, cfg, us[-1], int(label))
            for l in range(cfg.n_layers - 2, -1, -1):
                deltas[l] = hidden_error(ar, cfg, self.w_sign[l + 1], deltas[l + 1], us[l],
                                         self.theta[l])
            key = step_key(cfg.seed, self.step)
            for l in range(cfg.n_layers):
                if cfg.optimizer == "tbso":
                    thr = tbso_update(ar, cfg, l, self.V[l], self.t, deltas[l], self.a[l],
                                      self.tbso_gamma_q)
                else:
                    thr = self.gamma[l]
                post, pre = flip_step(ar, cfg, l, self.w_sign[l], self.M[l], deltas[l],
                                      self.a[l], key, self.rate_shift, thr)
                flips.append((l, post, pre))
            self.step += 1
        self.t += 1
        return spikes_in[1:], flips

    # --- one sample ------------------------------------------------------------------------------
    def run_sample(self, events: np.ndarray, label: int | None = None,
                   learn: bool = False) -> SampleResult:
        """Reset, run all T steps of ``events`` (T, n_in) binary, and return what happened."""
        cfg = self.cfg
        events = np.asarray(events)
        if events.shape != (cfg.T, cfg.layers[0]):
            raise ValueError(f"events have shape {events.shape}: expected (T={cfg.T}, "
                             f"n_in={cfg.layers[0]})")
        self.reset_sample()
        rasters = [np.zeros((cfg.T, n), bool) for n in cfg.layers[1:-1]]
        ft, fl, fpo, fpr = [], [], [], []
        per_step = np.zeros(cfg.T, np.int64)
        for t in range(cfg.T):
            spikes, flips = self.step_once(events[t], label, learn)
            for l, sp in enumerate(spikes):
                rasters[l][t] = sp
            for l, post, pre in flips:
                if post.size:
                    ft.append(np.full(post.size, t)); fl.append(np.full(post.size, l))
                    fpo.append(post); fpr.append(pre)
                    per_step[t] += post.size
        cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64))
        fe = FlipEvents(cat(ft), cat(fl), cat(fpo), cat(fpr))
        pred = int(np.argmax(self.score))
        return SampleResult(pred, rasters, np.array(self.score), fe, per_step)

    def predict(self, events: np.ndarray) -> int:
        """Inference only: the predicted class of one sample."""
        return self.run_sample(events, learn=False).prediction

    # --- schedule ---------------------------------------------------------------------------------
    def end_epoch(self, epoch: int) -> None:
        """Apply the gamma / rate schedule after 0-based ``epoch`` (as the released code does).

        The scheduled values saturate at the width of the registers that hold them
        (``SCHEDULE_LIMITS``), so a long run never asks the hardware for an unrepresentable value.
        """
        c = self.cfg
        if c.schedule_every and epoch > 0 and epoch % c.schedule_every == 0:
            lim = SCHEDULE_LIMITS
            self.rate_shift = min(self.rate_shift + c.schedule_rate_step, lim["rate_shift"])
            self.gamma = [min(g * c.schedule_gamma_num // c.schedule_gamma_den, lim["gamma"])
                          for g in self.gamma]
            self.tbso_gamma_q = min(self.tbso_gamma_q * c.schedule_gamma_num
                                    // c.schedule_gamma_den, lim["tbso_gamma_q"])

    # --- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Learned state as plain arrays (weights as packed bits, 1 = +1)."""
        d = {"step": np.int64(self.step), "rate_shift": np.int64(self.rate_shift),
             "gamma": np.array(self.gamma, np.int64),
             "tbso_gamma_q": np.int64(self.tbso_gamma_q)}
        for l in range(self.cfg.n_layers):
            d[f"w{l}"] = np.packbits(self.w_sign[l] > 0, axis=1, bitorder="little")
            d[f"M{l}"] = self.M[l].copy()
            d[f"V{l}"] = self.V[l].copy()
            d[f"bias{l}"] = self.bias[l].copy()
        for l in range(self.cfg.n_layers - 1):
            d[f"theta{l}"] = self.theta[l].copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` produced (bit-exact)."""
        self.step = int(d["step"]); self.rate_shift = int(d["rate_shift"])
        self.gamma = [int(g) for g in d["gamma"]]; self.tbso_gamma_q = int(d["tbso_gamma_q"])
        for l in range(self.cfg.n_layers):
            n_pre = self.cfg.layers[l]
            bits = np.unpackbits(d[f"w{l}"], axis=1, count=n_pre, bitorder="little")
            self.w_sign[l] = (bits.astype(np.int8) * 2 - 1).astype(np.int8)
            self.M[l] = np.array(d[f"M{l}"], self.ar.dtype)
            self.V[l] = np.array(d[f"V{l}"], self.ar.dtype)
            self.bias[l] = np.array(d[f"bias{l}"], np.int64)
        for l in range(self.cfg.n_layers - 1):
            self.theta[l] = np.array(d[f"theta{l}"], np.int64)
