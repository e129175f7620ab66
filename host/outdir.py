"""Output folders of the CLI: checked before any work, written atomically.

:func:`check_out` tells at once whether ``--out`` can be created (not an existing file, under a
writable folder) -- before a device is opened or data is loaded. :func:`staged` gives a
temporary folder next to the nearest existing ancestor of ``--out``; everything is written
there and moved into ``--out`` (each file by one ``os.replace``) only when the run succeeded, so
a failed or interrupted run leaves ``--out`` as it was and nothing half-written behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutError", "check_out", "staged"]


class OutError(ValueError):
    """``--out`` cannot be written."""


def _ancestor(out: Path) -> Path:
    a = out.absolute()
    while not a.exists():
        a = a.parent
    return a


def check_out(out, flag: str = "--out") -> Path:
    """Raise :class:`OutError` unless ``out`` is (or can be created as) a writable folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutError(f"{flag} {out}: exists and is not a folder")
    anc = _ancestor(out)
    if not anc.is_dir():
        raise OutError(f"{flag} {out}: {anc} is a file, not a folder")
    try:                                   # os.access says yes to root on read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=anc))
    except OSError as e:
        raise OutError(f"{flag} {out}: cannot write in {anc} ({e.strerror})") from None
    return out


@contextmanager
def staged(out):
    """Yield a temporary folder; on success move its files into ``out`` (created), on any
    error remove it and leave ``out`` untouched."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=_ancestor(out)))
    try:
        yield tmp
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
