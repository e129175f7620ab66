"""NeuronArray twin: XNOR-accumulate of binary weights into LIF (or leaky-integrator) neurons.

One time step of one layer, in the order the RTL performs it:

1. ``z[j] = sum_i s[i] * w[j, i]`` with ``w`` in {-1, +1}: each presynaptic event adds +-1.
2. ``u = sat(leak(v) + z * one_spike + bias)``, ``leak(v) = v - (v >> leak_shift)``.
3. Spiking layers: ``s = u >= theta`` (a tie fires); soft reset ``v = u - theta * s``
   or hard reset ``v = 0`` where ``s``. The output layer does not fire: ``v = u``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["accumulate", "lif_step"]


def accumulate(w_sign: np.ndarray, s_in: np.ndarray) -> np.ndarray:
    """Return ``z = W @ s`` for +-1 weights ``w_sign`` (n_post, n_pre) and binary ``s_in``."""
    idx = np.flatnonzero(s_in)
    if idx.size == 0:
        return np.zeros(w_sign.shape[0], np.int64)
    # |z| <= n_pre <= 16384 (NetConfig), so 16-bit accumulators are exact and faster
    dt = np.int16 if idx.size < 2 ** 15 and w_sign.dtype == np.int8 else np.int64
    return w_sign.take(idx, axis=1).sum(axis=1, dtype=dt).astype(np.int64)


def lif_step(ar, cfg, v, z, theta, bias, spiking: bool):
    """Advance one layer by one step; return ``(u, spikes, v_next)``.

    ``ar`` is the mode's arithmetic (golden.fixed), ``theta``/``bias`` per-neuron LSB values.
    """
    d = cfg.derived()
    u = v - ar.shr(v, cfg.leak_shift) + z * d.one_spike + bias
    u = ar.sat(u, -d.mem_max, d.mem_max, "membrane")
    if not spiking:
        return u, np.zeros(u.shape, bool), u
    s = u >= theta
    if cfg.reset == "soft":
        v_next = u - np.where(s, theta, 0)
        v_next = ar.sat(v_next, -d.mem_max, d.mem_max, "membrane")
    else:
        v_next = np.where(s, 0, u)
    return u, s, v_next
