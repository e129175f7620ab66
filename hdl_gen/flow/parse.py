"""Reading the tools' output: nextpnr's ``--report`` JSON and log, and Yosys' ``stat``."""
import json
import re
from pathlib import Path

__all__ = ["parse_nextpnr_report", "log_utilisation", "first_error", "yosys_stat", "luts", "ffs",
           "tail"]

ROOT = Path(__file__).resolve().parents[2]


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



def yosys_stat(rpt: Path) -> dict:
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



def log_utilisation(tim: Path) -> dict:
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


def first_error(tim: Path) -> str | None:
    try:
        for line in tim.read_text(errors="replace").splitlines():
            if line.startswith("ERROR:"):
                return line[6:].strip()[:300]
    except OSError:
        pass
    return None



def tail(path: Path, n=30) -> str:
    """The last ``n`` lines of a log file ("" if it is missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def luts(cells: dict) -> int:
    """LUT4 equivalents: ECP5 LUT4 + 2 per CCU2C; iCE40 SB_LUT4."""
    return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + cells.get("SB_LUT4", 0)


def ffs(cells: dict) -> int:
    return sum(v for k, v in cells.items() if k == "TRELLIS_FF" or k.startswith("SB_DFF"))


