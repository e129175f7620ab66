"""Version 2 ``SAMPLE`` step records: the host's encoder, the device's checked decoder
(docs/protocol.md §9.4)."""
from __future__ import annotations

from .codes import (MAX_BATCH_EVENTS, MAX_PAYLOAD, NO_LABEL, STEP_COUNT_MASK, Cmd, ErrorCode,
                    SampleFlags, StepFlags)
from .layouts import CMD_LAYOUTS, ProtocolError

__all__ = [
    "StepError", "step_record", "encode_sample", "decode_steps",
]

# --- v2 SAMPLE: step records ---------------------------------------------------------------------
class StepError(ProtocolError):
    """A ``SAMPLE`` payload the device must refuse: ``code`` and ``arg`` of its ``ERROR``."""

    def __init__(self, code: ErrorCode, arg: int, msg: str):
        super().__init__(msg)
        self.code, self.arg = ErrorCode(code), int(arg)


def step_record(t_indices, n_in: int, *, more: bool = False, bitmap: bool = False) -> bytes:
    """One step record: ``head:u16`` then the ascending indices ``t_indices`` (``u16`` each) or,
    with ``bitmap``, ``ceil(n_in/8)`` bytes (bit k of byte j = input 8j+k)."""
    idx = sorted(int(i) for i in t_indices)
    if idx and (idx[0] < 0 or idx[-1] >= n_in):
        raise ProtocolError(f"input index {idx[0] if idx[0] < 0 else idx[-1]} is outside "
                            f"0..{n_in - 1}")
    head = StepFlags.MORE if more else 0
    if bitmap:
        bits = bytearray((n_in + 7) // 8)
        for i in idx:
            bits[i >> 3] |= 1 << (i & 7)
        return (head | StepFlags.BITMAP).to_bytes(2, "big") + bytes(bits)
    if len(idx) > STEP_COUNT_MASK:
        raise ProtocolError(f"{len(idx)} indices do not fit one step record "
                            f"(at most {STEP_COUNT_MASK})")
    return (head | len(idx)).to_bytes(2, "big") + b"".join(i.to_bytes(2, "big") for i in idx)


def encode_sample(events, *, label: int | None = None, flags: int = 0,
                  max_payload: int = MAX_PAYLOAD, max_batch: int = MAX_BATCH_EVENTS) -> list:
    """The ``SAMPLE`` payloads of one sample: ``events`` is ``(T, n_in)`` binary (0/1, bool).

    Per step the host sends the shorter of the bitmap and the index list (a tie goes to the
    bitmap); a step with more than ``max_batch`` events whose bitmap is longer (or does not fit a
    frame) becomes several index records, all but the last with ``MORE``. Records are packed
    greedily into frames of at most ``max_payload`` bytes; every frame after the first has
    ``CONTINUE`` and ``t0`` = the step of its first record. ``flags`` must not hold
    ``CONTINUE`` (it is set here). Bad shapes, values, flags or labels raise
    :class:`ProtocolError`.
    """
    import numpy as np

    ev = np.asarray(events)
    if ev.ndim != 2 or not 1 <= ev.shape[0] <= 256 or not 1 <= ev.shape[1] <= 1 << 16:
        raise ProtocolError(f"events of shape {ev.shape}: need (T, n_in), T 1..256, "
                            f"n_in 1..65536")
    if ev.dtype != bool:
        if ev.dtype.kind not in "biuf" or not np.isin(ev, (0, 1)).all():
            raise ProtocolError("events must be binary (0/1)")
        ev = ev.astype(bool)
    flags = int(flags)
    if flags & ~int(SampleFlags.ALL) or flags & SampleFlags.CONTINUE:
        raise ProtocolError(f"SAMPLE flags 0x{flags:02x}: allowed "
                            f"0x{int(SampleFlags.ALL & ~SampleFlags.CONTINUE):02x}")
    if label is None:
        lab = NO_LABEL
    elif isinstance(label, bool) or not hasattr(label, "__index__") or \
            not 0 <= label.__index__() < NO_LABEL:
        raise ProtocolError(f"label {label!r} is not an integer in 0..{NO_LABEL - 1}")
    else:
        lab = label.__index__()
    if flags & SampleFlags.LEARN and label is None:
        raise ProtocolError("LEARN needs a label")
    hdr = CMD_LAYOUTS[Cmd.SAMPLE].fixed_size
    room = max_payload - hdr
    T, n_in = ev.shape
    nb = (n_in + 7) // 8
    per = min(max_batch, (room - 2) // 2, STEP_COUNT_MASK)
    if per < 1:
        raise ProtocolError(f"max_payload {max_payload} leaves no room for a step record")
    records = []                                    # (step, bytes)
    for t in range(T):
        idx = np.flatnonzero(ev[t])
        if nb <= 2 * idx.size and 2 + nb <= room:
            records.append((t, (int(StepFlags.BITMAP)).to_bytes(2, "big")
                            + np.packbits(ev[t], bitorder="little").tobytes()))
            continue
        chunks = [idx[k:k + per] for k in range(0, idx.size, per)] or [idx]
        for k, ch in enumerate(chunks):
            head = len(ch) | (int(StepFlags.MORE) if k < len(chunks) - 1 else 0)
            records.append((t, head.to_bytes(2, "big") + ch.astype(">u2").tobytes()))
    payloads, body, t0 = [], bytearray(), 0
    for t, rec in records:
        if body and len(body) + len(rec) > room:
            payloads.append((t0, bytes(body)))
            body, t0 = bytearray(), t
        body += rec
    payloads.append((t0, bytes(body)))
    lay = CMD_LAYOUTS[Cmd.SAMPLE]
    return [lay.pack({"flags": flags | (int(SampleFlags.CONTINUE) if k else 0), "label": lab,
                      "t0": t0}, tail=b) for k, (t0, b) in enumerate(payloads)]


def decode_steps(steps: bytes, n_in: int, T: int, t0: int, *,
                 max_batch: int = MAX_BATCH_EVENTS, payload_len: int | None = None) -> list:
    """Parse and check the step records of a ``SAMPLE`` (its tail), in the order a device
    checks them; return ``[(t, indices, more)]`` (indices an int64 array, ascending for a
    bitmap, as sent for a list). A bad record raises :class:`StepError` with the device's
    error code and arg (docs/protocol.md §9.4); ``payload_len`` is the arg of ``BAD_LENGTH``."""
    import numpy as np

    n = len(steps) + CMD_LAYOUTS[Cmd.SAMPLE].fixed_size if payload_len is None else payload_len
    nb = (n_in + 7) // 8
    bitmap_bit, more_bit = int(StepFlags.BITMAP), int(StepFlags.MORE)   # plain ints: fast
    out, pos, t = [], 0, t0
    if not steps:
        raise StepError(ErrorCode.BAD_LENGTH, n, "SAMPLE without a step record")
    while pos < len(steps):
        if len(steps) - pos < 2:
            raise StepError(ErrorCode.BAD_LENGTH, n, "step record cut inside its head")
        head = int.from_bytes(steps[pos:pos + 2], "big")
        pos += 2
        count = head & STEP_COUNT_MASK
        if head & bitmap_bit:
            if count:
                raise StepError(ErrorCode.RANGE, head, f"bitmap record with count {count}")
            size = nb
        else:
            if count > max_batch:
                raise StepError(ErrorCode.OVERSIZE, count, f"{count} indices > {max_batch}")
            size = 2 * count
        if len(steps) - pos < size:
            raise StepError(ErrorCode.BAD_LENGTH, n, "step record longer than the payload")
        if t >= T:
            raise StepError(ErrorCode.ADDRESS, t, f"step {t} >= T={T}")
        data = steps[pos:pos + size]
        pos += size
        if head & bitmap_bit:
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            if bits[n_in:].any():
                bad = n_in + int(np.flatnonzero(bits[n_in:])[0])
                raise StepError(ErrorCode.ADDRESS, bad, f"bitmap padding bit {bad} set")
            idx = np.flatnonzero(bits[:n_in]).astype(np.int64)
        else:
            idx = np.frombuffer(data, ">u2").astype(np.int64)
            over = np.flatnonzero(idx >= n_in)
            if over.size:
                raise StepError(ErrorCode.ADDRESS, int(idx[over[0]]),
                                f"input index {int(idx[over[0]])} >= n_in={n_in}")
        more = bool(head & more_bit)
        out.append((t, idx, more))
        if not more:
            t += 1
    return out
