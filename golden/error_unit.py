"""ErrorUnit twin: the output error from the label and the hidden error through W^T.

Loss (per step t): ``L[t] = 1/2 * sum_c (o_c[t] - target * y_c)^2`` on the output membrane
``o`` (a squared error: its gradient is a subtraction, which the hardware can afford; the paper's
softmax cross-entropy needs exponentials and a divide per step).

* ``delta_out = sat(round((o - target_lsb * onehot(y)) / 2^err_shift))``
* ``e = W_out^T delta_out`` (binary weights: a sum of +-delta), full width.
* triangle surrogate ``sg = max(0, 2^surrogate_shift - |u - theta|)`` on the pre-reset membrane.
* ``delta_hidden = sat(round(e * sg / 2^surrogate_shift))``

Rounding is half-up (``shr_round``); saturation to ``delta_bits`` signed is counted.
"""
from __future__ import annotations

import numpy as np

__all__ = ["output_error", "hidden_error", "surrogate"]


def output_error(ar, cfg, o, label: int):
    """Return delta of the output layer for membrane ``o`` and class ``label``."""
    d = cfg.derived()
    tgt = ar.zeros(o.shape)
    tgt[label] = d.target
    delta = ar.shr_round(o - tgt, cfg.err_shift)
    return ar.sat(delta, -d.delta_max, d.delta_max, "delta")


def surrogate(ar, cfg, u, theta):
    """Triangle surrogate derivative, scaled so that its peak is ``2^surrogate_shift``."""
    width = 1 << cfg.surrogate_shift
    return np.maximum(0, width - np.abs(u - theta))


def hidden_error(ar, cfg, w_sign_next, delta_next, u, theta):
    """Return delta of a hidden layer from the next layer's weights (+-1) and delta."""
    d = cfg.derived()
    e = w_sign_next.T.astype(ar.dtype) @ delta_next
    delta = ar.shr_round(e * surrogate(ar, cfg, u, theta), cfg.surrogate_shift)
    return ar.sat(delta, -d.delta_max, d.delta_max, "delta")
