"""Continuous streaming on the golden core, and the deadline bookkeeping of a stream.

**Continuous run** (:func:`run_stream`). A long recording is cut into windows of ``T`` steps
(``golden.events.window_coords``). ``Core.run_sample`` starts every window from reset state;
``run_stream`` instead carries the membranes ``v`` and the presynaptic traces ``a`` of every
layer from the last step of one window into the first step of the next, so the network sees
one unbroken stream. Per window only two things restart:

* the step index ``t`` (0..T-1 inside each window: it indexes T-BSO's ``V[t]`` and the device's
  step field), and
* the class score (the sum of the output membranes over the window's steps), so that each
  window has its own prediction ``argmax(score)``.

So the spikes, membranes, traces and (BSO) flips of ``run_stream`` over ``n`` windows of ``T``
steps are bit-exact those of one ``run_sample`` over the ``n*T`` steps of the concatenation
(for ``n*T <= 256``, the config's limit), and the sum of the windows' scores is that run's score
(golden/tests/test_stream.py). (T-BSO keeps one ``V[t]`` per step index, so its learning runs
are the same only window-relative.)

**Deadline** (:class:`Deadline`). A stream has a budget per unit of work (per step or per
window, in cycles at the board clock or in microseconds of wall time) and a cost of each unit;
the bookkeeping counts the units whose cost exceeded the budget, remembers the first one, and
the events processed before it. The host's ``stream`` command feeds it the measured wall time
of each window against the window's duration in the recording (real time); a device that
reports cycles per step would feed it cycles against a cycle budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .core import Core, FlipEvents, SampleResult

__all__ = ["run_window", "run_stream", "Deadline"]


def run_window(core: Core, events: np.ndarray, label: int | None = None,
               learn: bool = False) -> SampleResult:
    """Run one window of ``T`` steps **without resetting** membranes and traces (only the step
    index and the score restart); the result is shaped like ``Core.run_sample``'s."""
    cfg = core.cfg
    events = np.asarray(events)
    if events.shape != (cfg.T, cfg.layers[0]):
        raise ValueError(f"events have shape {events.shape}: expected (T={cfg.T}, "
                         f"n_in={cfg.layers[0]})")
    core.t = 0
    core.score = core.ar.zeros(cfg.layers[-1])
    rasters = [np.zeros((cfg.T, n), bool) for n in cfg.layers[1:-1]]
    parts = [[], [], [], []]
    per_step = np.zeros(cfg.T, np.int64)
    for t in range(cfg.T):
        spikes, flips = core.step_once(events[t], label, learn)
        for l, sp in enumerate(spikes):
            rasters[l][t] = sp
        for l, post, pre in flips:
            if post.size:
                for dst, v in zip(parts, (np.full(post.size, t), np.full(post.size, l), post,
                                          pre)):
                    dst.append(v)
                per_step[t] += post.size
    cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64))
    fe = FlipEvents(*(cat(p) for p in parts))
    return SampleResult(int(np.argmax(core.score)), rasters, np.array(core.score), fe, per_step)


def run_stream(core: Core, windows, labels=None, learn: bool = False,
               reset_first: bool = True) -> list[SampleResult]:
    """Run ``windows`` (an iterable of ``(T, n_in)`` arrays) as one continuous stream.

    ``reset_first``: start from reset state (as a new stream does); False continues the state
    the core holds. ``labels``: one per window (needed with ``learn``).
    """
    if reset_first:
        core.reset_sample()
    out = []
    for w, x in enumerate(windows):
        label = None if labels is None else int(labels[w])
        out.append(run_window(core, x, label, learn))
    return out


@dataclass
class Deadline:
    """Per-unit deadline bookkeeping: ``observe(cost, events)`` for each step/window in order.

    ``budget``: the allowed cost of one unit (same unit as the costs). A unit misses its
    deadline when ``cost > budget``.
    """

    budget: float
    units: int = 0
    missed: int = 0
    first_missed: int | None = None
    events_before_first_miss: int = 0
    worst: float = 0.0
    _events: int = field(default=0, repr=False)

    def __post_init__(self):
        if not self.budget > 0:
            raise ValueError(f"Deadline budget must be > 0, got {self.budget}")

    def observe(self, cost: float, events: int = 0) -> bool:
        """Record one unit; return True if it missed its deadline."""
        miss = cost > self.budget
        if miss:
            self.missed += 1
            if self.first_missed is None:
                self.first_missed = self.units
                self.events_before_first_miss = self._events
        self.units += 1
        self._events += int(events)
        self.worst = max(self.worst, float(cost))
        return miss

    @property
    def events(self) -> int:
        """Events of all units observed."""
        return self._events
