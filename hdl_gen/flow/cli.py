"""The flow's command line: ``python -m hdl_gen build ...`` and ``python -m hdl_gen report ...``.

:func:`add_subcommands` registers ``build`` and ``report`` on an argparse sub-parser set, for
``hdl_gen/__main__.py``; ``python -m hdl_gen.flow ...`` runs the same commands stand-alone.
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

from amaranth.hdl import UnusedElaboratable

from golden.config import NetConfig
from hdl_gen.architectures import ARCHITECTURES, DEFAULT_ARCH, ArchitectureError
from hdl_gen.flow.boards import BOARDS
from hdl_gen.flow.build import BuildError, build
from hdl_gen.flow.tops import TOPS

__all__ = ["add_subcommands", "main"]

ROOT = Path(__file__).resolve().parents[2]


def _fail(e: Exception, code: int) -> int:
    """One ``error:`` line; the half-built design's "created but never used" warnings would
    bury it, so they are silenced (amaranth does the same when the interpreter crashes)."""
    warnings.simplefilter("ignore", UnusedElaboratable)
    print(f"error: {e}", file=sys.stderr)
    return code


def _cmd_build(args) -> int:
    kw = {}
    if getattr(args, "lanes", None):
        kw["lanes"] = args.lanes
    if getattr(args, "baud", None) is not None:
        kw["baud"] = args.baud
    try:
        cfg = NetConfig.from_json(args.config) if args.config else None
        rep = build(args.board, args.top, cfg, args.out, freq_mhz=args.freq, seed=args.seed,
                    program=args.program, pll=args.pll, design_kw=kw,
                    lut_mapper=args.lut_mapper, nextpnr_extra=args.nextpnr_opt or (),
                    synth_only=args.synth_only, arch=args.arch,
                    fit_check=not args.no_fit_check, netlist=args.netlist)
    except BuildError as e:                # the tools failed (after the checks): exit 1
        return _fail(e, 1)
    except (ArchitectureError, ValueError, OSError) as e:  # bad input, does not fit (FitError):
        return _fail(e, 2)                                 # raised before any file write
    print(json.dumps({k: rep.get(k) for k in ("board", "top", "arch", "fmax_mhz", "clock_mhz",
                                              "meets_target", "synth_cells", "timings_s")}))
    return 0


def _cmd_report(args) -> int:
    from hdl_gen.architectures import available
    from hdl_gen.flow import report
    missing = [a for a in (args.arch or []) if a not in available()]
    if missing:
        return _fail(ArchitectureError(f"--arch {missing[0]}: not in this tree yet (available: "
                                       f"{', '.join(available())})"), 2)
    return report.main(args)


def add_subcommands(subparsers) -> None:
    """Register ``build`` and ``report`` on an ``argparse`` sub-parser set (for ``__main__``)."""
    b = subparsers.add_parser("build", help="FPGA bitstream + report.json for a board")
    b.add_argument("--board", required=True, choices=sorted(BOARDS))
    b.add_argument("--config", help="NetConfig JSON (default: the board's default config)")
    b.add_argument("--out", help="output folder (default: build/<board>-<arch>)")
    b.add_argument("--arch", choices=list(ARCHITECTURES), default=DEFAULT_ARCH,
                   help=f"core architecture (default {DEFAULT_ARCH})")
    b.add_argument("--program", action="store_true", help="program the board with openFPGALoader")
    b.add_argument("--top", default="auto", choices=TOPS,
                   help="design under the board top (default auto: board > core > loopback)")
    b.add_argument("--freq", type=float, help="core clock in MHz (default: the board's)")
    b.add_argument("--baud", type=int, help="host link UART rate (default: the board's)")
    b.add_argument("--seed", type=int, help="nextpnr placer seed")
    b.add_argument("--lanes", type=int, help="core lane count P, passed to the core")
    b.add_argument("--pll", choices=("pad", "core"), help="iCE40 PLL primitive (default pad)")
    b.add_argument("--no-fit-check", action="store_true",
                   help="build even when the memory estimate says it cannot fit")
    b.add_argument("--netlist", action="store_true",
                   help="also write the post-synthesis and post-place-and-route netlists "
                        "(<name>.synth.v, <name>.pnr.v, netlist.json) for gate-level simulation")
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
    r.add_argument("--boards", nargs="*", default=sorted(BOARDS), choices=sorted(BOARDS))
    r.add_argument("--arch", nargs="*", choices=list(ARCHITECTURES), default=None,
                   help="core architectures to build and report (default: every one in the "
                        "tree)")
    r.add_argument("--no-build", action="store_true",
                   help="reuse existing report.json files instead of building")
    r.add_argument("--lanes", type=int, nargs="*", default=[8, 16, 32, 64])
    r.add_argument("--no-sim", action="store_true",
                   help="reuse the throughput measured last time (build/perf_data.json)")
    r.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    r.add_argument("--reuse", metavar="FILE",
                   help="figures for what is not rebuilt here (default docs/performance.json)")
    r.add_argument("--core-perf", nargs="*", metavar="DIR",
                   help="more folders with verif/test_core.py's core_perf_*.json (besides out/)")
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
