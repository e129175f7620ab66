"""cocotb drivers for Amaranth ``stream.Signature`` ports (``<name>__valid/ready/payload``).

``StreamSource`` inserts random idle cycles between transfers; ``StreamSink`` applies random
back-pressure. Both sample valid/ready at the rising edge, the way cocotbext-axi does, so they
behave the same on Icarus and Verilator.
"""
from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.triggers import Event, RisingEdge

__all__ = ["StreamSource", "StreamSink", "reset_dut"]


async def reset_dut(dut, cycles: int = 3):
    """Hold ``rst`` high for a few cycles of ``clk``."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class StreamSource:
    """Drive ``<name>__valid`` / ``__payload``; idle with probability ``idle`` between items."""

    def __init__(self, dut, name: str, *, idle: float = 0.0, rng: random.Random | None = None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload", None)
        self.idle = idle
        self.rng = rng or random.Random(0)
        self.queue: deque[int] = deque()
        self.sent = 0
        self._empty = Event()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, payload: int) -> None:
        self.queue.append(int(payload))
        self._empty.clear()

    async def wait_empty(self):
        """Wait until every queued item has been transferred."""
        while self.queue or int(self.valid.value):
            await RisingEdge(self.clk)

    async def _run(self):
        driving = False
        while True:
            await RisingEdge(self.clk)
            if driving and int(self.ready.value):
                self.queue.popleft()
                self.sent += 1
                driving = False
            if not driving:
                if self.queue and self.rng.random() >= self.idle:
                    if self.payload is not None:
                        self.payload.value = self.queue[0]
                    self.valid.value = 1
                    driving = True
                else:
                    self.valid.value = 0


class StreamSink:
    """Accept ``<name>__payload`` into ``items``; deassert ready with probability ``backpressure``."""

    def __init__(self, dut, name: str, *, backpressure: float = 0.0,
                 rng: random.Random | None = None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload", None)
        self.backpressure = backpressure
        self.rng = rng or random.Random(1)
        self.items: list[int] = []
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        ready = False
        while True:
            await RisingEdge(self.clk)
            if ready and int(self.valid.value):
                self.items.append(int(self.payload.value) if self.payload is not None else 1)
            ready = self.rng.random() >= self.backpressure
            self.ready.value = int(ready)
