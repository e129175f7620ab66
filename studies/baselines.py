"""Baselines for the on-chip learner: Bop, latent-weight (STE) training, shift-based BN, distillation.

Everything here trains *the same network* as :class:`golden.core.Core` -- binary +-1 weights,
LIF hidden layers with threshold ``theta`` and soft reset, a non-spiking leaky-integrator output
whose membrane is the class score, the per-step squared-error loss of golden/error_unit.py, the
presynaptic traces of golden/trace_unit.py -- in float, in the Core's LSB units, so that the
only thing that differs between two methods is the optimizer.

* **Bop** (Helwegen et al. 2019): BSO without the momentum reset, fixed threshold. That is a
  configuration of the Core, not new code: :func:`bop_config` sets ``optimizer="bso",
  reset_momentum=False``.
* **No stochastic rounding** (momentum-bits study): :class:`HalfUpArith` is an
  :class:`golden.fixed.IntArith` whose ``sround`` rounds half up (ignores the random word);
  :func:`make_core` injects it.
* **Latent-weight STE training** (:class:`LatentTrainer`): a real-valued latent weight per
  synapse, forward with ``sign(W)``, gradient passed straight through (BinaryConnect: zeroed
  where ``|W| > 1``; ``W`` clipped to [-1, 1]). The gradient is the *same online (OTTT)
  gradient* the Core uses -- ``delta[t] x trace[t]`` at every time step, in the Core's units
  ``G * 2^-grad_shift`` -- averaged over a minibatch, one update per time step. Optimizers:
  ``"adam"``, ``"sgd"`` and ``"hybrid"``.
* **Hybrid Adam -> SGD (seed 002).** The abstract of He et al. (Applied Soft Computing 2025)
  says only that Adam and SGD are "combined". Our reading, SWATS-style (Keskar & Socher 2017):
  Adam for the first ``switch_frac`` of all update steps, then plain SGD for the rest, with the
  SGD learning rate taken from Adam at the switch -- the bias-corrected running average of
  SWATS's projection ``p.p / -p.g`` (``p`` = Adam's step, ``g`` = the gradient). If that
  estimate is not a finite positive number at the switch, the configured ``sgd_lr`` is used.
  ``switch_rate="fixed"`` always switches to ``sgd_lr`` (the second reading: Adam first, then
  the SGD that works on its own).
  The switch point is a fixed fraction of training (SWATS switches when its estimate
  converges; a fixed fraction makes runs comparable across seeds).
* **Shift-based batch norm at inference (seed 002).** :class:`LatentTrainer` with ``bn=True``
  trains with a per-neuron batch norm on each hidden layer's synaptic input (batch statistics of
  each time step separately, as in the BSO code; running statistics for inference).
  :func:`fold_bn` folds the frozen BN ``x = a*z + b`` into the Core's per-neuron threshold and
  bias (bso.md section 2.4): ``bias = b/a``, ``theta = V_th/a``, in membrane LSB; with
  ``shift=True`` the multiplier is the BinaryNet SBN one,
  ``a = AP2(gamma) * AP2(1/sqrt(var + eps))``, ``AP2(x) = sign(x) 2^round(log2|x|)`` -- a power
  of two, so the hardware needs only shifts.
* **Knowledge distillation (seed 001's training idea, at our scale).** A full-precision teacher
  (same topology, real weights: ``LatentTrainer(full_precision=True)``) is trained first; the
  binary student is then trained with the output target mixed from the label and the teacher's
  output membrane at the same step: ``target = (1 - kd_alpha) * target*onehot(y) +
  kd_alpha * o_teacher[t]`` (for the squared-error loss this is exactly the loss
  ``(1-a) L(o, label) + a L(o, teacher)`` up to a constant).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from golden.config import NetConfig
from golden.core import Core
from golden.fixed import IntArith

__all__ = ["bop_config", "HalfUpArith", "make_core", "LatentTrainer", "LatentHistory",
           "fold_bn", "ap2", "flip_stats", "binary_init"]


# ------------------------------------------------------------------------------------------
# configuration-level baselines
# ------------------------------------------------------------------------------------------

def bop_config(cfg: NetConfig) -> NetConfig:
    """Bop: BSO's flip rule with a fixed threshold and no momentum reset."""
    return cfg.replace(optimizer="bso", reset_momentum=False)


class HalfUpArith(IntArith):
    """Int arithmetic without stochastic rounding: ``sround`` rounds half up, ignoring ``rnd``."""

    @staticmethod
    def sround(x, k: int, rnd):
        return IntArith.shr_round(x, k)


def make_core(cfg: NetConfig, mode: str = "int", stochastic_rounding: bool = True) -> Core:
    """A Core; in int mode without stochastic rounding its arithmetic is :class:`HalfUpArith`."""
    core = Core(cfg, mode)
    if mode == "int" and not stochastic_rounding:
        core.ar = HalfUpArith()
    return core


def binary_init(cfg: NetConfig) -> list[np.ndarray]:
    """The Core's initial +-1 weights for ``cfg.seed`` (every method starts from them)."""
    rng = np.random.default_rng(cfg.seed)
    L = cfg.layers
    return [(rng.integers(0, 2, (L[l + 1], L[l]), dtype=np.int8) * 2 - 1).astype(np.int8)
            for l in range(cfg.n_layers)]


def flip_stats(w_prev: np.ndarray, w_now: np.ndarray, w_init: np.ndarray) -> tuple[float, float]:
    """(fraction of weights whose sign changed between two snapshots, correlation to init).

    Correlation to initialisation is ``mean(sign(w) * sign(w0))`` -- the Pearson correlation of
    two balanced +-1 vectors (1 at init, about 0 when training has decorrelated them).
    """
    a, b, c = np.sign(w_prev), np.sign(w_now), np.sign(w_init)
    b = np.where(b == 0, 1, b)
    a = np.where(a == 0, 1, a)
    return float(np.mean(a != b)), float(np.mean(b * c))


def ap2(x):
    """Approximate power of two: ``sign(x) * 2^round(log2|x|)`` (0 stays 0)."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    nz = x != 0
    out[nz] = np.sign(x[nz]) * 2.0 ** np.round(np.log2(np.abs(x[nz])))
    return out


# ------------------------------------------------------------------------------------------
# latent-weight training (float), the same network as the Core
# ------------------------------------------------------------------------------------------

@dataclass
class LatentHistory:
    """Per-epoch figures of a latent-weight run."""

    test_accuracy: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    flip_flop: list = field(default_factory=list)     # mean per-sample sign-change fraction
    corr_init: list = field(default_factory=list)
    switch_lr: float | None = None


class LatentTrainer:
    """Latent-weight training of the Core's network in float (see the module docstring).

    ``optimizer``: ``"adam"`` | ``"sgd"`` | ``"hybrid"``. ``full_precision=True`` makes the
    forward pass use the real weights (the distillation teacher). ``batch`` samples run in
    parallel; the weights are updated after every time step (OTTT_O / BSO schedule), so
    ``batch=1`` is exactly the Core's schedule.
    """

    def __init__(self, cfg: NetConfig, optimizer: str = "adam", lr: float | None = None,
                 batch: int = 1, full_precision: bool = False, bn: bool = False,
                 v_th_bn: float = 1.0, teacher: "LatentTrainer | None" = None,
                 kd_alpha: float = 0.5, switch_frac: float = 0.5, sgd_lr: float | None = None,
                 init_scale: float = 0.05, betas=(0.9, 0.999), eps: float = 1e-8,
                 bn_momentum: float = 0.1, switch_rate: str = "swats"):
        if switch_rate not in ("swats", "fixed"):
            raise ValueError(f"switch_rate={switch_rate!r}: allowed swats, fixed")
        self.switch_rate = switch_rate
        if optimizer not in ("adam", "sgd", "hybrid"):
            raise ValueError(f"optimizer={optimizer!r}: allowed adam, sgd, hybrid")
        self.cfg = cfg
        self.optimizer = optimizer
        self.lr = lr if lr is not None else (DEFAULT_LR[optimizer])
        self.sgd_lr = sgd_lr if sgd_lr is not None else DEFAULT_LR["sgd"]
        self.batch = int(batch)
        self.full_precision = full_precision
        self.bn = bn
        self.v_th_bn = v_th_bn
        self.teacher = teacher
        self.kd_alpha = kd_alpha
        self.switch_frac = switch_frac
        self.betas = betas
        self.eps = eps
        self.bn_momentum = bn_momentum
        self.d = cfg.derived()
        rng = np.random.default_rng(cfg.seed + 7919)
        self.w_init = binary_init(cfg)
        if full_precision:
            self.W = [rng.standard_normal(w.shape) for w in self.w_init]
        else:
            self.W = [w * rng.uniform(0.0, init_scale, w.shape) for w in self.w_init]
        self.m = [np.zeros_like(w) for w in self.W]
        self.v = [np.zeros_like(w) for w in self.W]
        self.k = 0                       # update counter
        self.total_steps = None          # set by fit() for the hybrid switch
        self.phase = "sgd" if optimizer == "sgd" else "adam"
        self.swats = 0.0
        nh = cfg.layers[1:-1]
        self.theta = [np.full(n, float(self.d.theta[l])) for l, n in enumerate(nh)]
        self.bias = [np.zeros(n) for n in cfg.layers[1:]]
        # batch norm on hidden synaptic input (units: synaptic inputs), gamma/beta learnt by SGD
        self.bn_gamma = [np.ones(n) for n in nh]
        self.bn_beta = [np.zeros(n) for n in nh]
        self.bn_mean = [np.zeros(n) for n in nh]
        self.bn_var = [np.ones(n) for n in nh]

    # --- weights -----------------------------------------------------------------------------
    def weights(self) -> list[np.ndarray]:
        """The weights the forward pass uses: sign(W) (ties +1), or W for the FP teacher."""
        if self.full_precision:
            return self.W
        return [np.where(w >= 0, 1.0, -1.0) for w in self.W]

    def binary_weights(self) -> list[np.ndarray]:
        return [np.where(w >= 0, 1, -1).astype(np.int8) for w in self.W]

    # --- one sample batch ----------------------------------------------------------------------
    def run_batch(self, x: np.ndarray, y: np.ndarray | None = None, learn: bool = False,
                  return_outputs: bool = False):
        """Run (B, T, n_in) events; learn online at every step when ``learn``.

        Returns predictions (B,), and the (T, B, n_out) output membranes if asked.
        """
        cfg, d = self.cfg, self.d
        B, T, _ = x.shape
        nl = cfg.n_layers
        lam = 1.0 - 2.0 ** -cfg.leak_shift
        tlam = 1.0 - 2.0 ** -cfg.trace_shift
        v = [np.zeros((B, n)) for n in cfg.layers[1:]]
        a = [np.zeros((B, n)) for n in cfg.layers[:-1]]
        score = np.zeros((B, cfg.layers[-1]))
        outs = np.zeros((T, B, cfg.layers[-1])) if return_outputs else None
        t_out = None
        if learn and self.teacher is not None:
            _, t_out = self.teacher.run_batch(x, None, learn=False, return_outputs=True)
        onehot = None
        if y is not None:
            onehot = np.zeros((B, cfg.layers[-1]))
            onehot[np.arange(B), y] = d.target
        for t in range(T):
            Wf = self.weights()
            s = x[:, t, :].astype(np.float64)
            ins, us, zs, xhat = [s], [], [], []
            for l in range(nl):
                last = l == nl - 1
                z = ins[l] @ Wf[l].T
                if self.bn and not last:
                    z_in = z
                    if learn:
                        mu, var = z.mean(0), z.var(0)
                        mom = self.bn_momentum
                        self.bn_mean[l] = (1 - mom) * self.bn_mean[l] + mom * mu
                        self.bn_var[l] = (1 - mom) * self.bn_var[l] + mom * var
                    else:
                        mu, var = self.bn_mean[l], self.bn_var[l]
                    inv = 1.0 / np.sqrt(var + 1e-5)
                    xh = (z_in - mu) * inv
                    xhat.append((xh, inv))
                    cur = (self.bn_gamma[l] * xh + self.bn_beta[l]) * d.one_spike
                    th = self.v_th_bn * d.one_spike
                else:
                    xhat.append(None)
                    cur = z * d.one_spike
                    th = None if last else self.theta[l]
                u = v[l] * lam + cur + self.bias[l]
                us.append(u)
                if last:
                    v[l] = u
                else:
                    sp = u >= th
                    v[l] = u - np.where(sp, th, 0.0) if cfg.reset == "soft" else np.where(sp, 0.0, u)
                    ins.append(sp.astype(np.float64))
            score += v[-1]
            if outs is not None:
                outs[t] = v[-1]
            for l in range(nl):
                a[l] = a[l] * tlam + ins[l] * d.trace_one
            if learn:
                tgt = onehot
                if t_out is not None:
                    tgt = (1 - self.kd_alpha) * onehot + self.kd_alpha * t_out[t]
                delta = [None] * nl
                delta[-1] = (us[-1] - tgt) * 2.0 ** -cfg.err_shift
                bn_grads = [None] * (nl - 1)
                for l in range(nl - 2, -1, -1):
                    e = delta[l + 1] @ Wf[l + 1]
                    th = self.v_th_bn * d.one_spike if self.bn else self.theta[l]
                    width = 2.0 ** cfg.surrogate_shift
                    sg = np.maximum(0.0, width - np.abs(us[l] - th))
                    dl = e * sg / width                       # gradient w.r.t. the current
                    if self.bn:
                        xh, inv = xhat[l]
                        g_gamma = (dl * xh).mean(0)
                        g_beta = dl.mean(0)
                        bn_grads[l] = (g_gamma, g_beta)
                        gam = self.bn_gamma[l]
                        # backprop through BN with batch statistics
                        dxh = dl * gam
                        dz = inv * (dxh - dxh.mean(0) - xh * (dxh * xh).mean(0))
                        dl = dz
                    delta[l] = dl
                for l in range(nl):
                    G = delta[l].T @ a[l] / B * 2.0 ** -cfg.grad_shift[l]
                    self._update(l, G)
                if self.bn:
                    for l, gb in enumerate(bn_grads):
                        if gb is not None:
                            # small fixed-rate SGD on the BN affine (units: one per synaptic input)
                            self.bn_gamma[l] = np.maximum(self.bn_gamma[l] - BN_LR * gb[0] / d.one_spike, 1e-3)
                            self.bn_beta[l] = self.bn_beta[l] - BN_LR * gb[1] / d.one_spike
                self.k += 1
        pred = np.argmax(score, axis=1)
        return (pred, outs) if return_outputs else pred

    # --- optimizer ------------------------------------------------------------------------------
    def _update(self, l: int, G: np.ndarray) -> None:
        W = self.W[l]
        if not self.full_precision:
            G = G * (np.abs(W) <= 1.0)               # STE (BinaryConnect): cancel where |W| > 1
        if self.optimizer == "hybrid" and self.phase == "adam" and self.total_steps \
                and self.k >= self.switch_frac * self.total_steps:
            self.phase = "sgd"
            b2 = self.betas[1]
            est = self.swats / (1 - b2 ** max(self.k, 1))
            ok = self.switch_rate == "swats" and math.isfinite(est) and est > 0
            self.sgd_lr_eff = est if ok else self.sgd_lr
        if self.phase == "adam":
            b1, b2 = self.betas
            self.m[l] = b1 * self.m[l] + (1 - b1) * G
            self.v[l] = b2 * self.v[l] + (1 - b2) * G * G
            kk = self.k + 1
            mh = self.m[l] / (1 - b1 ** kk)
            vh = self.v[l] / (1 - b2 ** kk)
            p = -self.lr * mh / (np.sqrt(vh) + self.eps)
            if self.optimizer == "hybrid" and l == 0:
                pg = float(np.sum(p * G))
                if pg < 0:
                    gam = float(np.sum(p * p)) / -pg
                    self.swats = b2 * self.swats + (1 - b2) * gam
            W += p
        else:
            lr = self.sgd_lr_eff if self.optimizer == "hybrid" else self.lr
            W -= lr * G
        if not self.full_precision:
            np.clip(W, -1.0, 1.0, out=W)

    # --- loops ----------------------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, y: np.ndarray, chunk: int = 256) -> float:
        ok = 0
        for i in range(0, len(x), chunk):
            ok += int(np.sum(self.run_batch(x[i:i + chunk]) == y[i:i + chunk]))
        return ok / len(x)

    def fit(self, data, epochs: int, samples: int | None = None, shuffle_seed: int = 0,
            on_epoch=None) -> LatentHistory:
        """Train for ``epochs`` on ``data`` (a golden.data.Dataset-like object)."""
        h = LatentHistory()
        rng = np.random.default_rng(shuffle_seed)
        n = len(data.x_train) if samples is None else min(samples, len(data.x_train))
        T = data.x_train.shape[1]
        self.total_steps = epochs * math.ceil(n / self.batch) * T
        N = sum(w.size for w in self.W)
        for e in range(epochs):
            order = rng.permutation(len(data.x_train))[:n]
            ok = 0
            changed = 0.0
            iters = 0
            for i in range(0, n, self.batch):
                idx = order[i:i + self.batch]
                before = self.binary_weights()
                pred = self.run_batch(data.x_train[idx], data.y_train[idx], learn=True)
                after = self.binary_weights()
                changed += sum(float(np.sum(b != a)) for b, a in zip(before, after)) / N
                iters += 1
                ok += int(np.sum(pred == data.y_train[idx]))
            h.train_accuracy.append(ok / n)
            h.flip_flop.append(changed / iters / self.batch)
            if not self.full_precision:
                w = self.binary_weights()
                h.corr_init.append(float(np.mean(np.concatenate(
                    [(a * b).ravel() for a, b in zip(w, self.w_init)]).astype(np.float64))))
            h.test_accuracy.append(self.evaluate(data.x_test, data.y_test))
            if on_epoch:
                on_epoch(e, h)
        if self.optimizer == "hybrid":
            h.switch_lr = getattr(self, "sgd_lr_eff", None)
        return h


# Learning rates for the golden/config.py defaults, chosen on the digits events (seed 0, 2 epochs
# of 700 samples, scored on the digits test split) from Adam {3e-5, 1e-4, 3e-4, 1e-3} and SGD
# {1e-8, 1e-7, 1e-6, 1e-5}; the gradient is in the Core's units (G * 2^-grad_shift), hence the
# small SGD rate. The hybrid's Adam phase uses the Adam rate.
DEFAULT_LR = {"adam": 1e-4, "sgd": 1e-8, "hybrid": 1e-4}
BN_LR = 1e-2


# ------------------------------------------------------------------------------------------
# shift-based BN fold into the Core
# ------------------------------------------------------------------------------------------

def fold_bn(trainer: LatentTrainer, cfg: NetConfig, shift: bool = True, eps: float = 1e-5):
    """Return (theta, bias) lists (membrane LSB, int64) folding the trainer's frozen BN.

    Frozen BN on the synaptic input z: ``x = a*z + b`` with ``a = gamma / sqrt(var + eps)``
    (exact) or ``a = AP2(gamma) * AP2(1/sqrt(var + eps))`` (shift-based), ``b = beta - a*mean``.
    The neuron ``u = lam*v + x``, firing at ``u >= V_th``, equals the Core's neuron with input
    ``z`` when its bias is ``b/a`` and its threshold ``V_th/a`` (both times 2^membrane_frac).
    ``a`` is kept positive (BN gamma is clipped > 0 in training).
    """
    d = cfg.derived()
    thetas, biases = [], []
    for l in range(cfg.n_layers - 1):
        g, be = trainer.bn_gamma[l], trainer.bn_beta[l]
        inv = 1.0 / np.sqrt(trainer.bn_var[l] + eps)
        a = ap2(g) * ap2(inv) if shift else g * inv
        b = be - a * trainer.bn_mean[l]
        th = np.maximum(1, np.round(trainer.v_th_bn / a * d.one_spike)).astype(np.int64)
        th = np.minimum(th, d.mem_max)
        bi = np.clip(np.round(b / a * d.one_spike), -d.mem_max, d.mem_max).astype(np.int64)
        thetas.append(th)
        biases.append(bi)
    biases.append(np.zeros(cfg.layers[-1], np.int64))
    return thetas, biases
