"""Figures of a training run, drawn with matplotlib's object API (no pyplot, no display needed:
``Figure.savefig`` renders with Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_accuracy", "plot_flips_per_step", "plot_raster", "plot_event_rate",
           "plot_predictions"]


def plot_accuracy(history, path: str | Path) -> Path:
    """Train and held-out accuracy per epoch."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ep = np.arange(1, len(history.train_accuracy) + 1)
    ax.plot(ep, history.train_accuracy, "o-", label="train (while learning)")
    if history.test_accuracy:
        ax.plot(ep, history.test_accuracy, "s-", label="held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_xticks(ep)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("accuracy per epoch")
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_flips_per_step(history, path: str | Path) -> Path:
    """Weight flips per time step index, one line per epoch."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for e, per in enumerate(history.flips_per_step):
        ax.plot(np.arange(len(per)), per, "o-", label=f"epoch {e + 1}")
    ax.set_xlabel("time step t")
    ax.set_ylabel("flips (sum over the epoch)")
    ax.grid(alpha=0.3)
    if history.flips_per_step:
        ax.legend(fontsize="small")
    ax.set_title("weight flips per time step")
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_raster(events, spikes, path: str | Path, title: str = "") -> Path:
    """Input events ``(T, n_in)`` and hidden spikes (a list of ``(T, n)``) of one sample."""
    layers = [("input", np.asarray(events, bool))] + \
        [(f"hidden {l}", np.asarray(s, bool)) for l, s in enumerate(spikes or [])]
    fig = Figure(figsize=(6, 1.8 + 1.6 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, r) in zip(axes, layers):
        ax.imshow(r.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                  vmin=0, vmax=1, extent=(-0.5, r.shape[0] - 0.5, -0.5, r.shape[1] - 0.5))
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_xticks(np.arange(r.shape[0]))
        ax.set_title(f"{name}: {int(r.sum())} spikes", fontsize="small")
    axes[-1].set_xlabel("time step t")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_event_rate(t_us, path: str | Path, title: str = "", bin_ms: float | None = None,
                    windows_us=None) -> Path:
    """Events per second over time (``t_us``: event timestamps), in bins of ``bin_ms`` (default:
    about 200 bins over the span); ``windows_us``: optional window start times, drawn as ticks."""
    t = np.asarray(t_us, np.int64)
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    if t.size:
        t0 = int(t[0])
        span = max(int(t[-1]) - t0 + 1, 1)
        width = int(bin_ms * 1000) if bin_ms else max(span // 200, 1)
        n = -(-span // width)
        counts = np.bincount((t - t0) // width, minlength=n)
        widths = np.minimum(width, span - np.arange(n) * width)     # the last bin may be short
        centers = (np.arange(n) * width + widths / 2) / 1e6
        ax.plot(centers, counts / (widths / 1e6), lw=1)
        if windows_us is not None and len(windows_us) <= 400:
            for w in windows_us:
                ax.axvline((int(w) - t0) / 1e6, color="0.85", lw=0.5, zorder=0)
        ax.set_title(title or f"{t.size} events over {span / 1e6:.3f} s "
                              f"({width / 1000:g} ms bins)", fontsize="small")
    ax.set_xlabel("time since the first event (s)")
    ax.set_ylabel("events / s")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_predictions(times_s, predictions, path: str | Path, n_classes: int,
                     title: str = "") -> Path:
    """The predicted class of each window over time."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.step(np.asarray(times_s), np.asarray(predictions), where="post")
    ax.set_ylim(-0.5, n_classes - 0.5)
    ax.set_yticks(np.arange(n_classes))
    ax.set_xlabel("window start (s since the first event)")
    ax.set_ylabel("predicted class")
    ax.grid(alpha=0.3)
    ax.set_title(title or "prediction per window", fontsize="small")
    fig.savefig(path, dpi=120)
    return Path(path)
