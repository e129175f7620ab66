"""TraceUnit twin: presynaptic eligibility traces ``a <- a - (a >> trace_shift) + s * trace_one``.

``lambda_a = 1 - 2^-trace_shift`` (0.5 by default, OTTT's trace). Unsigned, saturating at
``2^trace_bits - 1``. The trace of step t includes step t's spike, as in OTTT.
"""
from __future__ import annotations

__all__ = ["trace_step"]


def trace_step(ar, cfg, a, s):
    """Return the next trace for current trace ``a`` and binary spikes ``s``."""
    d = cfg.derived()
    a = a - ar.shr(a, cfg.trace_shift) + s * d.trace_one
    return ar.sat(a, 0, d.trace_max, "trace")
