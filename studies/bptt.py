"""BPTT trainer for the Core's network: latent weights, backprop through all T steps.

The network, units and loss are those of :mod:`studies.baselines` (the Core's network in float):
binary forward weights ``sign(W)``, LIF hidden layers (soft reset), a leaky-integrator output,
the per-step squared error ``L = sum_t 1/2 |o[t] - target*onehot|^2 * 2^-err_shift``. The forward
pass stores every step's input spikes, membranes and spikes; the backward pass runs t = T-1..0:

* output: ``eps_o[t] = (o[t] - tgt) * 2^-err_shift + lam * eps_o[t+1]`` (the output is a leaky
  integrator, so o[t] feeds o[t+1]);
* hidden: ``eps_h[t] = sg(u[t]) * (W_out^T eps_o[t]) + lam * eps_h[t+1]`` (the membrane path
  through time; the reset is detached, as in the OTTT/BSO code; ``sg`` is the Core's triangle
  surrogate);
* ``dW = sum_t eps[t] (x) s_pre[t] * trace_one`` (the spike, in the Core's trace LSB, so that
  gradients have the scale of the online ones).

With ``lam = 0`` in both sums this is exactly the sum over t of the online (OTTT) gradient
``delta[t] (x) trace[t]``; BPTT adds the temporal credit paths. Its training memory holds all T
steps of the activations -- it grows linearly in T, which :func:`studies.memory.measure_memory` measures
against the Core's online learner (constant in T).

Weights are updated once per minibatch (sum over t), by Adam (STE: zero gradient where
``|W| > 1``, W clipped to [-1, 1]).
"""
from __future__ import annotations

import numpy as np

from .baselines import LatentTrainer

__all__ = ["BPTTTrainer"]


class BPTTTrainer(LatentTrainer):
    """Latent-weight training by backprop through time (one update per minibatch)."""

    def __init__(self, cfg, optimizer: str = "adam", lr: float | None = None, batch: int = 1,
                 **kw):
        super().__init__(cfg, optimizer=optimizer, lr=lr, batch=batch, **kw)
        if self.bn:
            raise ValueError("BPTTTrainer: bn=True is not supported")

    def run_batch(self, x, y=None, learn: bool = False, return_outputs: bool = False):
        if not learn:
            return super().run_batch(x, y, learn=False, return_outputs=return_outputs)
        cfg, d = self.cfg, self.d
        B, T, _ = x.shape
        nl = cfg.n_layers
        lam = 1.0 - 2.0 ** -cfg.leak_shift
        Wf = self.weights()
        t_out = None
        if self.teacher is not None:
            _, t_out = self.teacher.run_batch(x, None, learn=False, return_outputs=True)
        onehot = np.zeros((B, cfg.layers[-1]))
        onehot[np.arange(B), y] = d.target
        # forward, storing every step (this is what makes BPTT's memory grow with T)
        S = [np.empty((T, B, n)) for n in cfg.layers[:-1]]     # input spikes of each layer
        U = [np.empty((T, B, n)) for n in cfg.layers[1:]]      # pre-reset membranes
        v = [np.zeros((B, n)) for n in cfg.layers[1:]]
        score = np.zeros((B, cfg.layers[-1]))
        for t in range(T):
            S[0][t] = x[:, t, :]
            for l in range(nl):
                last = l == nl - 1
                u = v[l] * lam + (S[l][t] @ Wf[l].T) * d.one_spike + self.bias[l]
                U[l][t] = u
                if last:
                    v[l] = u
                else:
                    sp = u >= self.theta[l]
                    v[l] = u - np.where(sp, self.theta[l], 0.0) if cfg.reset == "soft" \
                        else np.where(sp, 0.0, u)
                    S[l + 1][t] = sp
            score += v[-1]
        # backward through time
        grads = [np.zeros_like(w) for w in self.W]
        eps = [np.zeros((B, n)) for n in cfg.layers[1:]]
        width = 2.0 ** cfg.surrogate_shift
        for t in range(T - 1, -1, -1):
            tgt = onehot if t_out is None else \
                (1 - self.kd_alpha) * onehot + self.kd_alpha * t_out[t]
            eps[-1] = (U[-1][t] - tgt) * 2.0 ** -cfg.err_shift + lam * eps[-1]
            for l in range(nl - 2, -1, -1):
                sg = np.maximum(0.0, width - np.abs(U[l][t] - self.theta[l]))
                eps[l] = sg / width * (eps[l + 1] @ Wf[l + 1]) + lam * eps[l]
            for l in range(nl):
                grads[l] += eps[l].T @ S[l][t] * d.trace_one
        for l in range(nl):
            self._update(l, grads[l] / B * 2.0 ** -cfg.grad_shift[l])
        self.k += 1
        pred = np.argmax(score, axis=1)
        return (pred, None) if return_outputs else pred
