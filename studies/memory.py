"""Study section ``memory``: peak training memory vs T, online (the Core) vs BPTT."""
from __future__ import annotations

import tracemalloc

import numpy as np

from .baselines import make_core
from .bptt import BPTTTrainer
from .common import base_config

__all__ = ["measure_memory"]


def _peak(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return int(peak)


def measure_memory(Ts=(4, 8, 16, 32, 64), n_in: int = 784, rate: float = 0.2,
                   seed: int = 0) -> dict:
    """Peak bytes allocated while training on one sample, after the model exists.

    Online (Core, float and int): the hardware's streaming loop -- ``step_once`` per time step,
    the input of step t handed in at step t. BPTT: one sample (batch 1), forward storing all T
    steps, then backward. The input events of the sample exist before the measurement in both
    cases. Also the learning state in bits (hardware: 1 + momentum_bits per synapse, T-BSO adds
    T V registers per layer; BPTT: fp32 latent weight + two Adam moments per synapse + per step
    the stored spikes (1 bit) and membranes (membrane_bits) of every neuron).
    """
    out = {"T": list(Ts), "n_in": n_in, "online_bso": [], "online_tbso": [],
           "online_bso_int": [], "bptt": [], "bptt_b32": [], "state_bits_online": [], "state_bits_tbso": [],
           "state_bits_bptt": []}
    for T in Ts:
        cfg = base_config(n_in, seed=seed, T=T)
        x = np.random.default_rng(seed).random((T, n_in)) < rate

        def online(opt, mode):
            core = make_core(cfg.replace(optimizer=opt), mode)

            def run():
                core.reset_sample()
                for t in range(T):
                    core.step_once(x[t], 3, learn=True)
            run()                                   # warm-up (first-call allocations)
            return _peak(run)

        out["online_bso"].append(online("bso", "float"))
        out["online_tbso"].append(online("tbso", "float"))
        out["online_bso_int"].append(online("bso", "int"))
        tr = BPTTTrainer(cfg, "adam", batch=1)
        xb, yb = x[None], np.array([3])
        tr.run_batch(xb, yb, learn=True)
        out["bptt"].append(_peak(lambda: tr.run_batch(xb, yb, learn=True)))
        xb32 = np.random.default_rng(seed + 1).random((32, T, n_in)) < rate
        yb32 = np.arange(32) % 10
        tr32 = BPTTTrainer(cfg, "adam", batch=32)
        tr32.run_batch(xb32, yb32, learn=True)
        out["bptt_b32"].append(_peak(lambda: tr32.run_batch(xb32, yb32, learn=True)))
        syn = sum(cfg.layers[l] * cfg.layers[l + 1] for l in range(cfg.n_layers))
        neurons = sum(cfg.layers[1:])
        out["state_bits_online"].append(syn * cfg.bits_per_synapse)
        out["state_bits_tbso"].append(syn * cfg.bits_per_synapse + cfg.n_layers * T * cfg.v_bits)
        out["state_bits_bptt"].append(syn * 3 * 32 + T * (n_in + neurons * (1 + cfg.membrane_bits)))
    return out
