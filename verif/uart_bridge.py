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
  ``rx_truncate`` per chunk) injects bit errors and truncations into the UART byte stream.
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

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

CLK_NS = 10


def uart_models(dut, divisor: int):
    """cocotbext-uart source on ``dut.rx`` and sink on ``dut.tx`` at ``divisor`` clocks per bit."""
    bit_ns = CLK_NS * divisor
    baud = 1e9 / bit_ns
    if int(1e9 / baud) != bit_ns:
        raise ValueError(f"divisor {divisor}: bit time {bit_ns} ns not exact for cocotbext-uart")
    src = UartSource(dut.rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=baud, bits=8, stop_bits=1)
    for x in (src, sink):
        x.log.setLevel(logging.WARNING)
    return src, sink


async def start_board(dut):
    """Clock, reset, and wait until the board has finished its power-up initialisation."""
    dut.rx.value = 1
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(10_000_000):
        await RisingEdge(dut.clk)
        if int(dut.idle.value):
            return
    raise AssertionError("board never became idle after reset")


class Faults:
    """Seeded fault injector on a byte stream (see module docstring)."""

    def __init__(self, spec: dict):
        self.rng = random.Random(spec.get("seed", 0))
        self.p = {k: float(spec.get(k, 0.0)) for k in
                  ("tx_flip", "rx_flip", "tx_truncate", "rx_truncate")}
        self.count = {k: 0 for k in self.p}
        self.enabled = any(self.p.values())

    def __call__(self, data: bytes, d: str) -> bytes:
        if not self.enabled:
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
    blocked_s = 0.0
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
        while pending and src.count() < 2 and int(dut.cts.value):
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
        if (not pending and src.idle() and sink.empty() and sink.idle()
                and int(dut.idle.value)):
            select.select([conn], [], [], 0.25)     # the board is idle: wait for the host
            continue
        await Timer(byte_ns, unit="ns")
    conn.close()

    stats_path = os.environ.get("BSNN_STATSFILE")
    if stats_path:
        cycles = (get_sim_time("ns") - t0) / CLK_NS
        with open(stats_path, "w") as f:
            json.dump({"cycles": cycles, "core_busy_cycles": int(dut.core_cycles.value) - busy0,
                       "divisor": divisor, "bytes_to_device": n_in, "bytes_from_device": n_out,
                       "faults": faults.count}, f, indent=1)
