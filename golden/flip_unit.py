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

import math

import numpy as np

from .fixed import srand_block

__all__ = ["tbso_update", "flip_step"]


def _sum_squares(x) -> int:
    """Exact ``sum(x**2)`` of an integer vector (Python ints where int64 could overflow)."""
    if x.size == 0:
        return 0
    bound = int(np.max(np.abs(x)))
    if bound * bound * x.size < 2 ** 63:       # int64 cannot overflow: NumPy's dot is exact
        return int(np.dot(x, x))
    return int(np.sum(x.astype(object) ** 2))


def tbso_update(ar, cfg, layer: int, V, t: int, delta, a, gamma_q: int):
    """Update ``V[t]`` in place from this step's delta and trace; return the flip threshold."""
    d = cfg.derived()
    gs = cfg.grad_shift[layer]
    if ar.is_int:
        s_d = _sum_squares(delta)
        s_a = _sum_squares(a)
        q = (s_d * s_a * d.tbso_recip[layer]) >> 32
        v = int(V[t])
        v = v + ((q - v) >> cfg.v_rate_shift)
        if v > d.v_max:
            ar.counters["v"] += 1
            v = d.v_max
        V[t] = v
        root = math.isqrt(v)
        return (gamma_q * root) >> (cfg.tbso_gamma_frac + cfg.v_frac // 2)
    n = cfg.layers[layer] * cfg.layers[layer + 1]
    q = float(np.sum(delta ** 2)) * float(np.sum(a ** 2)) * 2.0 ** (cfg.v_frac - 2 * gs) / n
    V[t] = V[t] + (q - V[t]) * 2.0 ** -cfg.v_rate_shift
    return gamma_q * 2.0 ** -cfg.tbso_gamma_frac * np.sqrt(V[t]) * 2.0 ** (-cfg.v_frac / 2)


def _flat(x: np.ndarray):
    """A flat view of ``x`` (writes land in ``x``), or None when ``x`` is not C-contiguous."""
    return x.reshape(-1) if x.flags.c_contiguous else None


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
    # the visited block (rows x cols), gathered once through flat indices (np.ix_ is slower)
    Mf, wf = _flat(M), _flat(w_sign)
    if Mf is not None and wf is not None and M.shape == w_sign.shape:
        idx = (rows * M.shape[1])[:, None] + cols[None, :]
        m = Mf.take(idx)
    else:
        Mf = wf = None
        idx = np.ix_(rows, cols)
        m = M[idx]
    G = delta[rows][:, None] * a[cols][None, :]
    k = rate_shift + gs
    if ar.is_int:
        # M + sround(G - M * 2^gs, k), with as few temporaries as possible
        x = np.left_shift(m, gs)
        np.subtract(G, x, out=x)
        x = ar.sround(x, k, srand_block(layer, rows, cols, key, k))
        m = np.add(x, m, out=x)
    else:
        m = m + (G - m * 2.0 ** gs) * 2.0 ** -k
    lo, hi = m.min(), m.max()
    if ar.is_int and (lo < -d.mom_max or hi > d.mom_max):
        m = ar.sat(m, -d.mom_max, d.mom_max, "momentum")
        lo, hi = m.min(), m.max()
    # flip where w * M > thr; thr >= 0, so only |M| > thr can flip: look at the weights there
    if thr >= 0 and lo >= -thr and hi <= thr:
        flip = np.zeros(0, np.intp)
    else:
        cand = np.flatnonzero(np.abs(m) > thr) if thr >= 0 else np.arange(m.size)
        w = (wf.take(idx.reshape(-1)[cand]) if wf is not None
             else w_sign[idx].reshape(-1)[cand])
        flip = cand[w * m.reshape(-1)[cand] > thr]
    if flip.size and cfg.do_reset_momentum:
        m.reshape(-1)[flip] = 0
    if Mf is not None:
        Mf[idx] = m
    else:
        M[idx] = m
    if flip.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    fr, fc = np.divmod(flip, cols.size)
    post, pre = rows[fr], cols[fc]
    w_sign[post, pre] = -w_sign[post, pre]
    order = np.lexsort((post, pre))          # pre-major: the order of the weight-memory rows
    return post[order], pre[order]
