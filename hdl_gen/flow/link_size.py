"""What the link costs on a board: the board top with the core replaced by a small stub.

``python -m hdl_gen.flow.link_size [--board icebreaker] [--config F] [--pnr] [--json FILE]``

* **synthesis** (always, a few minutes): the hierarchical Yosys breakdown of
  :func:`hdl_gen.flow.breakdown.board_breakdown` -- LUT4 / FF / EBR of the deframer, the
  executor, the framer (+ replay store) and the UART + RX FIFO, each on its own;
* **place and route** (``--pnr``): the whole link-only board top (PLL, UART pins, link, stub)
  through the board flow, the placed logic cells and block RAMs as nextpnr counts them.

:class:`StubCore` has the core's wiring signature and attributes (``lanes``,
``words_per_row``), so the link is elaborated exactly as on the board; its outputs come from a
32-bit LFSR whose feedback takes the XOR of all its inputs, so nothing the link drives or reads
can be optimised away. The stub itself is about 32 FF and a LUT4 per three input bits (it is the
``top.core`` line of the breakdown, not counted as link).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl_gen.architectures import DEFAULT_ARCH, core_class

__all__ = ["StubCore", "link_top", "link_size", "main"]

ROOT = Path(__file__).resolve().parents[2]
LINK_BLOCKS = ("link: CommandExecutor", "link: Deframer", "link: Framer + replay store",
               "link: UART, RX FIFO")


class StubCore(wiring.Component):
    """The core's ports, driven from an LFSR that hashes the core's inputs (see module doc)."""

    def __init__(self, cfg, lanes: int, arch: str = DEFAULT_ARCH):
        self._real = core_class(arch)(cfg, lanes=lanes)     # constructed, never elaborated
        self._real._MustUse__used = True                    # (no "never used" warning)
        super().__init__(self._real.signature)

    @property
    def lanes(self) -> int:
        return self._real.lanes

    def words_per_row(self, layer: int) -> int:
        return self._real.words_per_row(layer)

    def elaborate(self, platform):
        m = Module()
        ins, outs = [], []
        for _path, member, value in self.signature.flatten(self):
            (ins if member.flow == In else outs).append(Value.cast(value))
        lfsr = Signal(32, init=1)
        fb = lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]
        if ins:
            fb = fb ^ Cat(*ins).xor()
        m.d.sync += lfsr.eq(Cat(fb, lfsr[:31]))
        bits = Cat(*outs)
        for i in range(len(bits)):
            m.d.comb += bits[i].eq(lfsr[(7 * i) % 32])
        return m


def link_top(cfg, lanes: int, *, clk_hz: float, arch: str = DEFAULT_ARCH, **kw):
    """The :class:`hdl_gen.board_top.BoardTop` of ``cfg`` with a :class:`StubCore`."""
    from hdl_gen.board_top import BoardTop

    top = BoardTop(cfg, lanes=lanes, clk_hz=clk_hz, arch=arch, **kw)
    top.core_cls = lambda cfg, lanes: StubCore(cfg, lanes, arch)
    return top


def link_size(board_name: str = "icebreaker", cfg=None, *, lanes: int | None = None,
              arch: str = DEFAULT_ARCH, pnr: bool = False, out_dir: Path | None = None,
              top_kw: dict | None = None, log=print) -> dict:
    """Synthesis breakdown (and with ``pnr`` the placed totals) of the link on ``board_name``."""
    from hdl_gen.flow.boards import get_board
    from hdl_gen.flow.breakdown import board_breakdown

    board = get_board(board_name)
    cfg = board.default_config() if cfg is None else cfg
    lanes = board.lanes_for(arch) if lanes is None else lanes
    top_kw = dict(board.link.top_kw() if top_kw is None else top_kw)
    bd = board_breakdown(cfg, lanes, board.family, clk_hz=board.f_core, log=log,
                         top=link_top(cfg, lanes, clk_hz=board.f_core, arch=arch, **top_kw))
    blocks = {b: bd["blocks"].get(b, {}) for b in LINK_BLOCKS}
    link_total = {}
    for cells in blocks.values():
        for k, v in cells.items():
            link_total[k] = link_total.get(k, 0) + v
    res = {"board": board.name, "config": cfg.to_dict(), "lanes": lanes, "arch": arch,
           "top_kw": top_kw, "synth": {"blocks": blocks, "link_total": link_total,
                                       "stub_core": bd["blocks"].get(
                                           "Core control, status, FIFOs", {})}}
    for b, cells in blocks.items():
        log(f"[link_size] {b:32s} " + ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
    log("[link_size] link total (synth)        " +
        ", ".join(f"{k} {v}" for k, v in sorted(link_total.items())))
    if pnr:
        from hdl_gen.flow.build import BuildError, build

        def link_only(cfg, clk_hz):
            return link_top(cfg, lanes, clk_hz=clk_hz, arch=arch, **top_kw)
        out = out_dir or ROOT / "build" / f"{board.name}-link"
        try:
            rep = build(board, top=link_only, cfg=cfg, out_dir=out, log=log)
        except BuildError as e:
            rep = e.report or {"error": str(e)}
        res["pnr"] = {k: rep.get(k) for k in ("utilization", "fmax_mhz", "clock_mhz", "fits",
                                               "error")}
        used = {k: v["used"] for k, v in (rep.get("utilization") or {}).items() if v["used"]}
        log(f"[link_size] placed (link + stub + PLL): {used}, Fmax {rep.get('fmax_mhz')} MHz")
    return res


def main(argv=None) -> int:
    from hdl_gen.flow.boards import BOARDS

    p = argparse.ArgumentParser(prog="python -m hdl_gen.flow.link_size", description=__doc__
                                .split("\n\n")[0])
    p.add_argument("--board", default="icebreaker", choices=sorted(BOARDS))
    p.add_argument("--config", help="NetConfig JSON (default: the board's default config)")
    p.add_argument("--lanes", type=int, help="core lanes P (the stub only takes the sizes)")
    p.add_argument("--pnr", action="store_true", help="also place and route the link-only top")
    p.add_argument("--replay-bytes", type=int, help="replay store (default: the board's)")
    p.add_argument("--rx-fifo", type=int, help="RX FIFO bytes (default: the board's)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    cfg = None
    try:
        if args.config:
            from golden.config import NetConfig
            cfg = NetConfig.from_json(args.config)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    top_kw = BOARDS[args.board].link.top_kw()
    for k in ("replay_bytes", "rx_fifo"):
        if getattr(args, k) is not None:
            top_kw[k] = getattr(args, k)
    try:
        res = link_size(args.board, cfg, lanes=args.lanes, pnr=args.pnr, top_kw=top_kw)
    except ValueError as e:             # e.g. a replay store or FIFO size the link refuses
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
