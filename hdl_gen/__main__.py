"""``python -m hdl_gen``: generate the core's Verilog and its JSON manifest (and, as subcommands,
the FPGA flow).

::

    python -m hdl_gen [--out DIR] [--config FILE] [--lanes P] [--arch A]   # rtl/core.{v,json}
    python -m hdl_gen generate [--out DIR] [--config FILE] [--lanes P] [--arch A]
    python -m hdl_gen build --board ... [--arch A]                         # hdl_gen.flow
    python -m hdl_gen report ...

``--arch`` picks the core architecture (:mod:`hdl_gen.architectures`: ``parallel`` or
``compact``; default :data:`hdl_gen.architectures.DEFAULT_ARCH`). The default architecture is
written to rtl/, another one to rtl/<arch>/ (so the committed rtl/ stays the default's).

Generation is deterministic: the same config and lanes give byte-identical files on every host
(no source paths, no timestamps). The manifest holds the config, the derived constants, the
top's ports, the stream payload layouts, the control operations, the memory map and the list of
Verilog modules; verif/test_generated_rtl.py checks the committed rtl/ against a fresh run and
against a pyverilog parse of the Verilog.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["generate", "manifest", "main", "TOP_NAME"]

from .architectures import ARCHITECTURES, DEFAULT_ARCH

ROOT = Path(__file__).resolve().parent.parent
TOP_NAME = "core"


def _layout_fields(layout) -> list[dict]:
    out = []
    for name, f in layout:
        item = {"name": name, "offset": f.offset, "width": f.width}
        shape = f.shape
        members = getattr(shape, "__members__", None)
        if members:
            item["enum"] = {k: int(v.value) for k, v in members.items()}
        out.append(item)
    return out


def _ports(core) -> list[dict]:
    from amaranth.hdl import Value
    from amaranth.lib import wiring

    ports = [{"name": "clk", "dir": "input", "width": 1},
             {"name": "rst", "dir": "input", "width": 1}]
    for path, member, value in core.signature.flatten(core):
        ports.append({"name": "__".join(str(p) for p in path),
                      "dir": "input" if member.flow == wiring.In else "output",
                      "width": len(Value.cast(value))})
    return ports


def manifest(core, verilog: str) -> dict:
    """The JSON manifest of ``core`` (a :class:`hdl_gen.core.Core`) and its Verilog text."""
    import amaranth

    from . import core as core_mod
    from .common import words

    from .architectures import arch_of

    cfg, P = core.cfg, core.lanes
    L = cfg.n_layers
    d = cfg.derived()
    streams = {}
    for name in core.signature.members:
        iface = getattr(core, name)
        if hasattr(iface, "payload") and hasattr(iface, "valid"):
            shape = iface.payload.shape()
            streams[name] = {"direction": "input" if name.startswith("i_") else "output",
                             "payload_width": shape.size, "fields": _layout_fields(shape)}
    layers = []
    for l in range(L):
        n_pre, n_post = cfg.layers[l], cfg.layers[l + 1]
        C = words(n_post, P)
        ent = {
            "layer": l, "n_pre": n_pre, "n_post": n_post, "words_per_row": C,
            "spiking": l < L - 1,
            "weight": {"depth": n_pre * C, "width": P,
                       "layout": "word i*C+c, bit k = weight(pre=i, post=c*P+k), 1 = +1"},
            "momentum": {"depth": n_pre * C, "width": P * cfg.momentum_bits,
                         "layout": "word i*C+c, lane k (bits k*momentum_bits..) = post c*P+k"},
            "neuron_words": {"depth": C, "width": P * cfg.membrane_bits,
                             "memories": ["z", "v", "u", "bias"] + (
                                 ["theta"] if l < L - 1 else ["score"])},
            "trace_words": {"depth": words(n_pre, P), "width": P * cfg.trace_bits},
            "delta_words": {"depth": C, "width": P * cfg.delta_bits},
        }
        if cfg.optimizer == "tbso":
            ent["v"] = {"depth": cfg.T, "width": cfg.v_bits}
        layers.append(ent)
    modules = re.findall(r"^module\s+(\\?\S+?)\s*\(", verilog, flags=re.M)
    return {
        "top": TOP_NAME,
        "arch": arch_of(core),
        "generator": {"module": "hdl_gen", "amaranth": amaranth.__version__},
        "lanes": P,
        "config": cfg.to_dict(),
        "derived": dataclasses.asdict(d),
        "ports": _ports(core),
        "streams": streams,
        "status": {"width": core_mod.STATUS_LAYOUT.size,
                   "fields": _layout_fields(core_mod.STATUS_LAYOUT)},
        "ctrl_ops": {op.name: op.value for op in core_mod.CtrlOp},
        "result_kinds": {k.name: k.value for k in core_mod.ResultKind},
        "mem_spaces": {s.name: s.value for s in core_mod.MemSpace},
        "regs": {r.name: int(r) for r in core_mod.Reg},
        "mem_data_width": core_mod.data_width(cfg, P),
        "mem_addr": "synapse spaces: (pre << 14) | post; others: index",
        "layers": layers,
        "modules": modules,
    }


def generate(cfg=None, out=None, lanes: int | None = None,
             arch: str | None = None) -> tuple[Path, Path]:
    """Write ``<out>/core.v`` and ``<out>/core.json`` for the ``arch`` core; return their paths.

    Raises :class:`hdl_gen.architectures.ArchitectureError` (before writing anything) when
    ``arch`` is unknown or not in this tree.
    """
    from golden.config import DEFAULT

    from .architectures import DEFAULT_ARCH, core_class, default_lanes
    from .emit import to_verilog

    arch = arch or DEFAULT_ARCH
    cls = core_class(arch)
    cfg = cfg if cfg is not None else DEFAULT
    if out is None:
        out = ROOT / "rtl" if arch == DEFAULT_ARCH else ROOT / "rtl" / arch
    out = Path(out)
    check_lanes_for(cfg, lanes, getattr(cls, "MIN_LANES", 2))
    core = cls(cfg, lanes=default_lanes(cls) if lanes is None else lanes)
    text = to_verilog(core, TOP_NAME)
    man = json.dumps(manifest(core, text), indent=1, sort_keys=True) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    v_path, j_path = out / f"{TOP_NAME}.v", out / f"{TOP_NAME}.json"
    for path, t in ((v_path, text), (j_path, man)):      # each file whole or not at all
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(t)
        tmp.replace(path)
    return v_path, j_path


def check_lanes_for(cfg, lanes: int | None, min_lanes: int = 2) -> None:
    """Raise ValueError unless ``lanes`` (None: the architecture's default) is a power of two
    >= ``min_lanes`` (the core class's ``MIN_LANES``: 2, or 1 for the compact core) and not
    above the widest layer (rounded up to a power of two): more lanes than neurons only
    replicate idle hardware."""
    if lanes is None:
        return
    from .common import check_lanes

    if not (min_lanes == 1 and lanes == 1):
        check_lanes(lanes)
    widest = max(cfg.layers[1:])
    top = 1 << (widest - 1).bit_length()
    if lanes > max(top, 2):
        raise ValueError(f"lanes={lanes} is invalid: allowed at most {max(top, 2)} for layers "
                         f"{list(cfg.layers)} (widest {widest} neurons)")


def _cmd_generate(args) -> int:
    from golden.config import NetConfig

    from .architectures import ArchitectureError

    def fail(msg) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    cfg = None
    if args.config:
        if not Path(args.config).is_file():
            return fail(f"--config {args.config}: file not found")
        try:
            cfg = NetConfig.from_json(Path(args.config))
        except (ValueError, TypeError, KeyError, OSError) as e:   # JSON, fields, types
            return fail(f"--config {args.config}: {e}")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            return fail(f"--out {out}: exists and is not a folder")
        anc = out.absolute()
        while not anc.exists():
            anc = anc.parent
        try:                                   # os.access says yes to root on /proc
            os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=anc))
        except OSError as e:
            return fail(f"--out {out}: cannot write in {anc} ({e.strerror})")
    try:
        v, j = generate(cfg, args.out, args.lanes, args.arch)
    except (ArchitectureError, ValueError) as e:      # bad --arch / --lanes: nothing written
        return fail(e)
    except OSError as e:                              # e.g. a read-only folder
        return fail(f"--out {args.out}: {e}")
    print(f"wrote {v} and {j}")
    return 0


def _add_generate_options(p) -> None:
    p.add_argument("--out", help="output folder (default: rtl/)")
    p.add_argument("--config", help="NetConfig JSON file (or an hdl_gen manifest); "
                                    "default: golden.config.DEFAULT")
    p.add_argument("--lanes", type=int, help="lanes P (default: the architecture's; parallel "
                                            "8, 16, 32, 64, default 32)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default=None,
                   help=f"core architecture (default {DEFAULT_ARCH})")


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line ``error: ...`` (exit code 2)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    p = _Parser(
        prog="python -m hdl_gen",
        description="Generate the core's Verilog and manifest (default), or run the FPGA flow.")
    _add_generate_options(p)
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    g = sub.add_parser("generate", help="write core.v and core.json (the default command)")
    _add_generate_options(g)
    g.set_defaults(func=_cmd_generate)
    try:
        from .flow.cli import add_subcommands
    except ImportError as e:                     # the FPGA flow is optional for generation
        err = str(e)

        def _missing(args):
            print(f"the FPGA flow is unavailable: {err}", file=sys.stderr)
            return 2
        for name in ("build", "report"):
            sub.add_parser(name, help="(unavailable)").set_defaults(func=_missing)
    else:
        add_subcommands(sub)
    args = p.parse_args(argv)
    if args.cmd is None:
        return _cmd_generate(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
