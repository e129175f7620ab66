"""Netlist check: the board builds' own netlists, simulated, against golden (figures + ``--json``).

``python -m verif.netlist_check [--board B ...] [--arch A] [--config small|small-tbso|board|FILE
...] [--lanes P] [--baud N] [--kind synth|pnr ...] [--sim verilator|icarus ...] [--samples K]
[--json FILE]``

For every board x config: the ``build --netlist`` of that design (cached in
``build/netlist-cache/``, :func:`hdl_gen.flow.netlist.cached_build`: synthesis, place and
route, pack, both netlists); then for every netlist kind x simulator: ``K`` learning samples and
one inference through :class:`host.link.SimLink` on the netlist (:mod:`verif.netlist_sim`)
against golden's emulator, compared by ``verif.test_system_link.assert_same`` (predictions,
scores, spikes, flips per step, final memory words, status). One row per run::

    {"board", "arch", "config" (name), "layers", "lanes", "baud", "baud_divisor", "kind",
     "simulator", "samples", "flips", "cycles" (simulated clock cycles), "wall_s" (simulation,
     including the simulator's compile unless cached), "build_s" (the flow's timings), "equal",
     "first_difference" (assert_same's message, or null), "error" (a run that failed, or null)}

Defaults: the ULX3S, the parallel core, the small configuration with BSO and T-BSO at P = 2 and
the board's real 115200 baud (694 clocks per bit at 80 MHz), both netlists, Verilator, 2
samples. ``--config board`` is the board's default network (docs/netlist.md has what that
costs). Exit status 1 when a run differs or fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from golden.config import NetConfig

__all__ = ["main", "check"]

CONFIGS = ("small", "small-tbso", "board")


def _config(name: str, board):
    from verif.netlist_sim import NETLIST_CFG, NETLIST_CFG_TBSO
    if name == "small":
        return NETLIST_CFG
    if name == "small-tbso":
        return NETLIST_CFG_TBSO
    if name == "board":
        return board.default_config()
    return NetConfig.from_json(name)


def check(board: str, arch: str, cfg_name: str, cfg, lanes: int, baud: int | None, kinds,
          sims, samples: int, log=print) -> list[dict]:
    """Build (cached) and run every kind x simulator; the rows of the module docstring."""
    from hdl_gen.flow.netlist import cached_build, netlist_info
    from verif.netlist_sim import run_netlist

    t0 = time.monotonic()
    d = cached_build(board, cfg, arch, lanes, synth_only=kinds == ["synth"], baud=baud,
                     log=log)
    info = netlist_info(d)
    rep = d / "report.json"
    build_s = (json.loads(rep.read_text()).get("timings_s") if rep.exists()
               else json.loads((d / "synth_report.json").read_text()).get("timings_s"))
    log(f"[netlist] {board} {cfg_name}: build ready in {time.monotonic() - t0:.0f} s ({d})")
    rows = []
    for kind in kinds:
        for sim in sims:
            row = {"board": board, "arch": arch, "config": cfg_name, "layers": list(cfg.layers),
                   "lanes": lanes, "baud": baud or 115200,
                   "baud_divisor": info["baud_divisor"], "kind": kind, "simulator": sim,
                   "samples": samples, "build_s": build_s, "equal": False,
                   "first_difference": None, "error": None, "dir": str(d)}
            t1 = time.monotonic()
            try:
                if not info["netlists"].get(kind):
                    raise RuntimeError(f"no {kind} netlist: {info.get('pnr_error')}")
                got, ref, stats = run_netlist(d, cfg, samples, sim, kind)
                row["cycles"] = stats.get("cycles")
                row["flips"] = sum(len(r.flips) for r in ref["samples"])
                from verif.test_system_link import assert_same
                try:
                    assert_same(got, ref)
                    row["equal"] = True
                except AssertionError as e:
                    row["first_difference"] = str(e).splitlines()[0]
            except Exception as e:           # a failed run is a row, the others still run
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row["wall_s"] = round(time.monotonic() - t1, 1)
            log(f"[netlist] {board} {cfg_name} {kind} {sim}: "
                f"{'EQUAL' if row['equal'] else row['first_difference'] or row['error']} "
                f"({row.get('cycles')} cycles, {row['wall_s']} s)")
            rows.append(row)
    return rows


def main(argv=None) -> int:
    from hdl_gen.architectures import ARCHITECTURES, available
    from hdl_gen.flow.boards import BOARDS
    from verif.netlist_sim import KINDS
    from verif.simulate import SIMULATORS

    p = argparse.ArgumentParser(prog="python -m verif.netlist_check",
                                description=__doc__.split("\n")[0])
    p.add_argument("--board", nargs="+", default=["ulx3s-85f"], choices=sorted(BOARDS))
    p.add_argument("--arch", default="parallel", choices=list(ARCHITECTURES))
    p.add_argument("--config", nargs="+", default=["small", "small-tbso"],
                   help=f"{' | '.join(CONFIGS)} | a NetConfig JSON file")
    p.add_argument("--lanes", type=int, help="core lanes P (default 2 for the small configs, "
                   "the board's default for 'board')")
    p.add_argument("--baud", type=int, help="board top UART baud (default 115200)")
    p.add_argument("--kind", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--sim", nargs="+", default=["verilator"], choices=SIMULATORS)
    p.add_argument("--samples", type=int, default=2, help="learning samples (default 2)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)

    def fail(msg):
        print(f"error: {msg}", file=sys.stderr)
        return 2

    if args.arch not in available():
        return fail(f"--arch {args.arch}: not in this tree yet (available: "
                    f"{', '.join(available())})")
    if args.samples < 1:
        return fail(f"--samples {args.samples} is invalid: allowed >= 1")
    if args.lanes is not None and args.lanes < 1:
        return fail(f"--lanes {args.lanes} is invalid: allowed >= 1")
    if args.baud is not None and args.baud < 1:
        return fail(f"--baud {args.baud} is invalid: allowed >= 1")
    cases = []
    for b in args.board:
        board = BOARDS[b]
        for name in args.config:
            if name not in CONFIGS and not Path(name).is_file():
                return fail(f"--config {name!r} is invalid: allowed {', '.join(CONFIGS)} or a "
                            "NetConfig JSON file")
            try:
                cfg = _config(name, board)
            except (ValueError, OSError) as e:
                return fail(f"--config {name}: {e}")
            lanes = args.lanes or (board.lanes_for(args.arch) if name == "board" else 2)
            cases.append((b, name, cfg, lanes))
    if args.json:
        out = Path(args.json)
        if not out.parent.is_dir():
            return fail(f"--json {args.json}: folder {out.parent} does not exist")
    rows = []
    for b, name, cfg, lanes in cases:
        try:
            rows += check(b, args.arch, name, cfg, lanes, args.baud, args.kind, args.sim,
                          args.samples)
        except Exception as e:               # the build failed: a row, then the next case
            rows.append({"board": b, "arch": args.arch, "config": name,
                         "layers": list(cfg.layers), "lanes": lanes, "equal": False,
                         "error": f"build: {type(e).__name__}: {str(e).splitlines()[0]}"})
            print(f"[netlist] {b} {name}: {rows[-1]['error']}")
        if args.json:                        # after every case: a long run keeps its rows
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(json.dumps({k: r.get(k) for k in ("board", "config", "kind", "simulator",
                                                 "cycles", "wall_s", "equal",
                                                 "first_difference", "error")}))
    return 0 if rows and all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
