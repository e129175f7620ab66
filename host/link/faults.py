"""Fault injection: a Link wrapper that flips bits, truncates and drops chunks either way."""
from __future__ import annotations

import random

from .base import Link, LinkTimeout

__all__ = ["FaultyLink"]


class FaultyLink(Link):
    """Wrap ``inner`` and corrupt the byte stream with a seeded RNG.

    ``*_flip``: probability per byte of flipping one random bit; ``*_truncate``: probability per
    chunk (one ``send`` call is one frame) of losing a random non-empty tail; ``*_drop``:
    probability per chunk of losing all of it. ``tx`` is host to device, ``rx`` device to host.
    ``injected`` counts faults by kind.
    """

    def __init__(self, inner: Link, *, seed: int = 0, tx_flip: float = 0.0,
                 tx_truncate: float = 0.0, rx_flip: float = 0.0, rx_truncate: float = 0.0,
                 tx_drop: float = 0.0, rx_drop: float = 0.0):
        super().__init__(inner.name, inner.timeout)
        self.inner = inner
        self.rng = random.Random(seed)
        self.tx_flip, self.tx_truncate, self.tx_drop = tx_flip, tx_truncate, tx_drop
        self.rx_flip, self.rx_truncate, self.rx_drop = rx_flip, rx_truncate, rx_drop
        self.injected = {f"{d}_{k}": 0 for d in ("tx", "rx") for k in ("flip", "truncate", "drop")}
        self.enabled = True

    def _corrupt(self, data: bytes, flip: float, truncate: float, d: str) -> bytes:
        if not self.enabled:
            return data
        if data and self.rng.random() < getattr(self, f"{d}_drop"):
            self.injected[f"{d}_drop"] += 1
            return b""
        b = bytearray(data)
        if len(b) > 1 and self.rng.random() < truncate:
            del b[self.rng.randrange(1, len(b)):]
            self.injected[f"{d}_truncate"] += 1
        if flip:
            for i in range(len(b)):
                if self.rng.random() < flip:
                    b[i] ^= 1 << self.rng.randrange(8)
                    self.injected[f"{d}_flip"] += 1
        return bytes(b)

    def _send(self, data: bytes) -> None:
        data = self._corrupt(data, self.tx_flip, self.tx_truncate, "tx")
        if data:
            self.inner.send(data)

    def _recv(self, timeout: float) -> bytes:
        try:
            data = self.inner.recv(timeout)
        except LinkTimeout:
            return b""
        return self._corrupt(data, self.rx_flip, self.rx_truncate, "rx")

    def _close(self) -> None:
        self.inner.close()
