"""FlipUnit twin: momentum update, BSO / T-BSO flip decision, flip and momentum reset.

For one layer and one time step, with ``delta`` (post) and trace ``a`` (pre):

* Only synapses with a non-zero gradient ``G = delta[j] * a[i]`` are visited (event-driven:
  a zero ``delta[j]`` or a zero trace ``a[i]`` skips the synapse entirely, momentum included).
* ``M <- sat(M + sround(G - M * 2^gs, rate_shift + gs))``: an EMA of ``G * 2^-gs`` at rate
  ``2^-rate_shift``, stochastically rounded with :func:`golden.fixed.srand`, saturated
  symmetric to ``momentum_bits``.
* T-BSO only, once per layer and step (every step, visited synapses or not):
  ``q = (sum(delta^2) * sum(a^2) * recip) >> 32`` (the layer mean of G^2 in V units, exact for
  an outer product), ``V[t] <- sat(V[t] + ((q - V[t]) >> v_rate_shift))``,
  ``thr = (tbso_gamma_q * isqrt(V[t])) >> (tbso_gamma_frac + v_frac / 2)``.
  BSO: ``thr = gamma[layer]``.
* Visited synapses flip where ``w * M > thr`` (strictly: a tie does not flip); a flip resets M
  to 0 when ``reset_momentum``.
"""
from __future__ import annotations

import numpy as np

from .fixed import srand, synapse_address

__all__ = ["tbso_update", "flip_step"]


def tbso_update(ar, cfg, layer: int, V, t: int, delta, a, gamma_q: int):
    """Update ``V[t]`` in place from this step's delta and trace; return the flip threshold."""
    d = cfg.derived()
    gs = cfg.grad_shift[layer]
    if ar.is_int:
        s_d = int(np.sum(delta.astype(object) ** 2)) if delta.size else 0
        s_a = int(np.sum(a.astype(object) ** 2)) if a.size else 0
        q = (s_d * s_a * d.tbso_recip[layer]) >> 32
        v = int(V[t])
        v = v + ((q - v) >> cfg.v_rate_shift)
        if v > d.v_max:
            ar.counters["v"] += 1
            v = d.v_max
        V[t] = v
        root = int(np.asarray(ar.sqrt(v)))
        return (gamma_q * root) >> (cfg.tbso_gamma_frac + cfg.v_frac // 2)
    n = cfg.layers[layer] * cfg.layers[layer + 1]
    q = float(np.sum(delta ** 2)) * float(np.sum(a ** 2)) * 2.0 ** (cfg.v_frac - 2 * gs) / n
    V[t] = V[t] + (q - V[t]) * 2.0 ** -cfg.v_rate_shift
    return gamma_q * 2.0 ** -cfg.tbso_gamma_frac * np.sqrt(V[t]) * 2.0 ** (-cfg.v_frac / 2)


def flip_step(ar, cfg, layer: int, w_sign, M, delta, a, key: int, rate_shift: int, thr):
    """Update momentum and flip weights in place; return flipped ``(post, pre)`` index arrays.

    The arrays are ordered by pre, then post: the RTL walks the weight memory row by row (one
    row per presynaptic neuron) and emits flips in that order.
    """
    d = cfg.derived()
    gs = cfg.grad_shift[layer]
    rows = np.flatnonzero(delta)
    cols = np.flatnonzero(a)
    if rows.size == 0 or cols.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ix = np.ix_(rows, cols)
    G = delta[rows, None] * a[None, cols]
    m = M[ix]
    k = rate_shift + gs
    if ar.is_int:
        rnd = srand(synapse_address(layer, rows[:, None], cols[None, :]), key, k)
        m = ar.sround(G - (m << gs), k, rnd) + m
    else:
        m = m + (G - m * 2.0 ** gs) * 2.0 ** -k
    m = ar.sat(m, -d.mom_max, d.mom_max, "momentum")
    w = w_sign[ix]
    flip = w * m > thr
    if cfg.do_reset_momentum:
        m = np.where(flip, 0, m)
    M[ix] = m
    w_sign[ix] = np.where(flip, -w, w)
    fc, fr = np.nonzero(flip.T)          # pre-major: the order of the weight-memory rows
    return rows[fr], cols[fc]
