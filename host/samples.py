"""Samples on the device: the v1 command sequence and v2's pipelined ``SAMPLE`` (a mixin of
:class:`host.accelerator.Accelerator`).

Version 1 runs a sample as ``RESET_STATE``, ``LEARN``, ``LABEL``, one ``EVENTS`` per non-empty
step and ``RUN``, each stop-and-wait. Version 2 sends one ``SAMPLE`` frame per sample (a few when
long) and keeps a window of them in flight (:meth:`SampleRunner.run_samples`), each answered by a
``RESULT``; spikes, flips and scores come only when asked for.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from golden.core import FlipEvents, SampleResult

from . import protocol as P
from .protocol import Cmd, EventFlags, OutputMask, Rsp, SampleFlags
from .transport import Command, TransportFault

__all__ = ["RunResult", "SampleRunner"]


@dataclass
class RunResult:
    """What one ``RUN`` reported: events by (t, layer), flips, prediction, the ACK summary."""

    spikes: dict            # (t, layer) -> index array (only when spike reporting is on)
    flips: list             # (t, layer, post, pre) in emission order (when flip reporting is on)
    prediction: int | None  # when the run ended the sample
    scores: np.ndarray | None
    t: int
    step: int
    n_spikes: int
    n_flips: int


def _count_reports(frames) -> tuple[int, int]:
    """(spikes, flips) in the SPIKES / FLIPS frames among ``frames``."""
    ns = nf = 0
    for f in frames:
        if f.op == Rsp.FLIPS:
            nf += len(f.payload) // P.RSP_LAYOUTS[Rsp.FLIPS].item_size
        elif f.op == Rsp.SPIKES:
            sv, _, data = P.unpack(Rsp.SPIKES, f.payload)
            ns += (int(np.unpackbits(np.frombuffer(data, np.uint8)).sum())
                   if sv["format"] == P.SpikeFormat.BITMAP else len(data) // 2)
    return ns, nf


class SampleRunner:
    """Mixin over ``self.tx`` (a :class:`host.transport.Transport`), ``self.cfg``,
    ``self._outputs``."""

    # --- v1 building blocks ------------------------------------------------------------------
    def reset_state(self) -> None:
        """Start a new sample (clears membranes, traces, scores, t, input slots, label)."""
        self._ack(Cmd.RESET_STATE)

    def set_label(self, label: int) -> None:
        """Set the current sample's label."""
        self._ack(Cmd.LABEL, {"label": int(label)})

    def send_events(self, t: int, spikes) -> None:
        """Load the input spikes of time step ``t`` (a boolean ``(n_in,)`` vector), in the smaller
        of the two encodings (a bitmap, or index lists of at most MAX_BATCH_EVENTS)."""
        cfg = self._need_cfg()
        s = np.asarray(spikes, bool).ravel()
        if s.size != cfg.layers[0]:
            raise ValueError(f"step {t}: {s.size} inputs, expected {cfg.layers[0]}")
        idx = np.flatnonzero(s)
        nb = (s.size + 7) // 8
        room = P.MAX_PAYLOAD - P.CMD_LAYOUTS[Cmd.EVENTS].fixed_size
        if nb <= 2 * idx.size and nb <= room:
            self._ack(Cmd.EVENTS, {"t": t, "flags": EventFlags.BITMAP},
                      tail=np.packbits(s, bitorder="little").tobytes())
            return
        per = min(P.MAX_BATCH_EVENTS, room // 2)
        for k in range(0, max(idx.size, 1), per):
            flags = EventFlags.APPEND if k else 0
            self._ack(Cmd.EVENTS, {"t": t, "flags": flags},
                      tail=idx[k:k + per].astype(">u2").tobytes())

    def run(self, n: int) -> RunResult:
        """Run ``n`` time steps from the current one; return what the device reported."""
        outputs = self._outputs

        def check(term, rest):
            v, _, _ = P.unpack(Rsp.ACK, term.payload, ack_of=Cmd.RUN)
            ns, nf = _count_reports(rest)
            if (outputs & OutputMask.FLIPS and nf != v["flips"]) or \
                    (outputs & OutputMask.SPIKES and ns != v["spikes"]):
                raise TransportFault("RUN events do not add up to the ACK's counts")
            if v["t"] == self.cfg.T and not any(f.op == Rsp.PREDICTION for f in rest):
                # the sample's last step ran: its PREDICTION frame was lost on the way
                raise TransportFault("RUN ended the sample without its PREDICTION")

        term, rest = self.tx.transact(Cmd.RUN, P.pack(Cmd.RUN, {"n": n}), Rsp.ACK, check,
                                      bound=None)
        v, _, _ = P.unpack(Rsp.ACK, term.payload, ack_of=Cmd.RUN)
        spikes, flips, pred, scores = self._decode_reports(rest)
        return RunResult(spikes, flips, pred, scores, v["t"], v["step"], v["spikes"], v["flips"])

    def _decode_reports(self, frames):
        cfg = self.cfg
        spikes, flips, pred, scores = {}, [], None, None
        sb = P.score_bytes(cfg)
        for f in frames:
            if f.op == Rsp.SPIKES:
                sv, _, data = P.unpack(Rsp.SPIKES, f.payload)
                n_post = cfg.layers[sv["layer"] + 1]
                if sv["format"] == P.SpikeFormat.BITMAP:
                    idx = np.flatnonzero(np.unpackbits(np.frombuffer(data, np.uint8),
                                                       count=n_post, bitorder="little"))
                else:
                    idx = np.frombuffer(data, ">u2").astype(np.int64)
                key = (sv["t"], sv["layer"])
                spikes[key] = np.concatenate([spikes[key], idx]) if key in spikes else idx
            elif f.op == Rsp.FLIPS:
                _, items, _ = P.unpack(Rsp.FLIPS, f.payload)
                flips.extend(items)
            elif f.op == Rsp.PREDICTION:
                pv, _, data = P.unpack(Rsp.PREDICTION, f.payload)
                if scores is None:
                    scores = np.zeros(cfg.layers[-1], np.int64)
                part = np.frombuffer(data, f">i{sb}").astype(np.int64)
                scores[pv["offset"]:pv["offset"] + part.size] = part
                pred = pv["prediction"]
        return spikes, flips, pred, scores

    def _result(self, spikes, flips, pred, scores, per_step=None) -> SampleResult:
        cfg = self.cfg
        rasters = None
        if spikes is not None:
            rasters = [np.zeros((cfg.T, n), bool) for n in cfg.layers[1:-1]]
            for (t, l), idx in spikes.items():
                rasters[l][t, idx] = True
        if flips:
            a = np.array(flips, np.int64)
            fe = FlipEvents(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
        else:
            z = np.zeros(0, np.int64)
            fe = FlipEvents(z, z.copy(), z.copy(), z.copy())
        if per_step is None:
            per_step = np.bincount(fe.t, minlength=cfg.T).astype(np.int64)
        return SampleResult(int(pred), rasters, scores, fe, np.asarray(per_step, np.int64))

    # --- samples -----------------------------------------------------------------------------
    def _check_sample(self, events, label, learn):
        cfg = self._need_cfg()
        events = np.asarray(events)
        if events.shape != (cfg.T, cfg.layers[0]):
            raise ValueError(f"events have shape {events.shape}: expected (T={cfg.T}, "
                             f"n_in={cfg.layers[0]})")
        if learn and label is None:
            raise ValueError("learn=True needs a label")
        if label is not None and not 0 <= int(label) < cfg.layers[-1]:
            raise ValueError(f"label {label} is out of range 0..{cfg.layers[-1] - 1}")
        return events

    def run_sample(self, events, label: int | None = None, learn: bool = False,
                   keep_state: bool = False) -> SampleResult:
        """Run one sample (``events`` (T, n_in) binary) like ``golden.core.Core.run_sample``
        (with the output scores). ``keep_state`` (v2): keep membranes and traces from the
        previous sample (continuous streaming, ``golden.stream.run_window``).

        ``spikes`` is ``None`` when spike reporting is off (:meth:`set_outputs`); with flip
        reporting off, ``flips`` is empty (``flips_per_step`` is still counted in v2).
        """
        labels = None if label is None else [label]
        return next(iter(self.run_samples([events], labels, learn=learn, scores=True,
                                          keep_state=keep_state)))

    def run_samples(self, samples, labels=None, *, learn: bool = False, scores: bool = False,
                    keep_state: bool = False):
        """Run ``samples`` (an iterable of (T, n_in) event arrays, ``labels`` one per sample or
        None) in order and yield one :class:`golden.core.SampleResult` each, lazily: in v2 a
        window of ``SAMPLE`` frames is in flight. ``scores``: ask for the output scores
        (``SampleResult.scores`` is None without). ``keep_state``: every sample after the first
        continues the state of the one before (the first starts from reset)."""
        labels = iter(labels) if labels is not None else None
        if self.tx.version < P.VERSION_2:
            if keep_state:
                raise ValueError(f"{self.link.name}: keep_state needs protocol version 2, the "
                                 f"device speaks version {self.tx.version}")
            for x in samples:
                yield self._run_sample_v1(x, None if labels is None else next(labels), learn,
                                          scores)
            return
        yield from self._run_samples_v2(samples, labels, learn, scores, keep_state)

    def _run_sample_v1(self, events, label, learn, scores) -> SampleResult:
        events = self._check_sample(events, label, learn)
        self.reset_state()
        self.set_learn(learn)
        if label is not None:
            self.set_label(label)
        for t in range(self.cfg.T):
            if events[t].any():
                self.send_events(t, events[t])
        r = self.run(self.cfg.T)
        spikes = r.spikes if self._outputs & OutputMask.SPIKES else None
        return self._result(spikes, r.flips, r.prediction, r.scores if scores else None)

    def _run_samples_v2(self, samples, labels, learn, scores, keep_state):
        cfg = self.cfg
        outputs = self._outputs
        base = (SampleFlags.LEARN if learn else 0) | (SampleFlags.SCORES if scores else 0) | \
            (SampleFlags.SPIKES if outputs & OutputMask.SPIKES else 0) | \
            (SampleFlags.FLIPS if outputs & OutputMask.FLIPS else 0)
        result_size = P.OVERHEAD + P.RSP_LAYOUTS[Rsp.RESULT].fixed_size + 4 * cfg.T
        if scores:
            sb = P.score_bytes(cfg)
            per = (P.MAX_PAYLOAD - P.RSP_LAYOUTS[Rsp.PREDICTION].fixed_size) // sb
            n = cfg.layers[-1]
            result_size += n * sb + -(-n // per) * (P.OVERHEAD + 4)
        reports = bool(outputs & (OutputMask.SPIKES | OutputMask.FLIPS))
        groups: deque = deque()          # the Commands of each sample in flight

        def commands():
            for k, x in enumerate(samples):
                label = None if labels is None else next(labels)
                x = self._check_sample(x, label, learn)
                flags = base | (SampleFlags.KEEP_STATE if keep_state and k else 0)
                pls = P.encode_sample(x, label=None if label is None else int(label),
                                      flags=flags)
                group = []
                for j, pl in enumerate(pls):
                    last = j == len(pls) - 1
                    c = Command(Cmd.SAMPLE, pl, Rsp.RESULT if last else Rsp.ACK,
                                bound=None if reports else (result_size if last else 16))
                    if last:
                        c.check = self._result_check(group, base)
                    group.append(c)
                groups.append(group)
                yield from group

        done = 0
        for _ in self.tx.pipeline(commands()):
            done += 1
            if done < len(groups[0]):
                continue
            group = groups.popleft()
            done = 0
            frames = [f for c in group for f in c.rest]
            v, items, _ = P.unpack(Rsp.RESULT, group[-1].term.payload)
            spikes, flips, _, sc = self._decode_reports(frames)
            yield self._result(spikes if base & SampleFlags.SPIKES else None, flips,
                               v["prediction"], sc, [n for (n,) in items])

    def _result_check(self, group, flags):
        T = self.cfg.T

        def check(term, rest):
            v, items, _ = P.unpack(Rsp.RESULT, term.payload)
            if len(items) != T or sum(n for (n,) in items) != v["flips"] or v["t"] != T:
                raise TransportFault("RESULT does not add up (flips per step, t)")
            ns, nf = _count_reports([f for c in group[:-1] for f in c.rest] + rest)
            if (flags & SampleFlags.FLIPS and nf != v["flips"]) or \
                    (flags & SampleFlags.SPIKES and ns != v["spikes"]):
                raise TransportFault("SAMPLE reports do not add up to the RESULT's counts")
            if flags & SampleFlags.SCORES and not any(f.op == Rsp.PREDICTION for f in rest):
                raise TransportFault("SAMPLE asked for scores, RESULT came without")
        return check

    def predict(self, events) -> int:
        """Inference only: the predicted class of one sample."""
        return self.run_sample(events, learn=False).prediction

    def predict_many(self, samples) -> list[int]:
        """Inference only, pipelined in v2: the predicted class of each sample."""
        return [r.prediction for r in self.run_samples(samples, learn=False)]
