"""Not in the default suite (``python -m pytest verif/netlist_case.py`` runs it): on a fresh
machine it costs ~10 minutes (synthesis plus the C++ compile of a 21k-cell netlist), and it
does not pass yet — it is ``xfail(strict)`` on the known difference of docs/netlist.md
(sample 0's flips), so it fails the day the netlist starts matching and the mark must go.

The board top's gate-level netlist learns like golden: the post-synthesis netlist (vendor cells
after ``synth_ecp5``, with Yosys' ``ecp5/cells_sim.v`` models) of the small configuration on
the ULX3S, driven by the host's own code through the UART bridge, gives the same predictions,
output scores, spikes, flips per step, final memory words and status counters as golden's
emulator (:func:`verif.test_system_link.training_run` / ``assert_same``, unchanged).

What keeps it near a minute: the small configuration (:data:`NETLIST_CFG`, 16-8-4, P = 2), a
few learning samples, Verilator without ``--public-flat-rw`` (only the wrapper's ports are
visible, :mod:`verif.netlist_sim`), and a board top whose UART runs at :data:`SUITE_BAUD`
(8 clocks per bit at 80 MHz instead of 694 at 115200: the same logic with another divisor
constant). The builds are cached (``build/netlist-cache/``, :func:`hdl_gen.flow.netlist.
cached_build`) and the Verilator model too (``sim_build/``): a fresh machine pays the synthesis
(~2 CPU-minutes) and the C++ compile once. The post-place-and-route netlists, Icarus, T-BSO, the
real 115200 baud and the board defaults are run by ``python -m verif.netlist_check``
(docs/netlist.md).
"""
from __future__ import annotations

import pytest

from hdl_gen.architectures import available
from hdl_gen.flow.netlist import cached_build
from verif.netlist_sim import NETLIST_CFG, run_netlist
from verif.test_system_link import assert_same

SUITE_BAUD = 10_000_000
#: per architecture: (board, lanes). The compact core (landed in main at the end of this
#: session, not yet run on its netlist) joins with ("icebreaker", 4) once it has been run:
#: python -m verif.netlist_check --arch compact --board icebreaker --lanes 4 --kind synth
SUITE_CASES = {"parallel": ("ulx3s-85f", 2)}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the synthesis netlist differs from golden (measured "
                   "2026-12-03: sample 0 has 2 extra layer-1 flips at t = 3, then diverges; the "
                   "RTL of the same top equals golden): netlist or cell model, docs/netlist.md")
@pytest.mark.parametrize("arch", [a for a in SUITE_CASES if a in available()])
def test_netlist_learns_like_golden(arch):
    board, lanes = SUITE_CASES[arch]
    d = cached_build(board, NETLIST_CFG, arch, lanes, synth_only=True, baud=SUITE_BAUD,
                     log=lambda *a: None)
    k = 2
    got, ref, stats = run_netlist(d, NETLIST_CFG, k, "verilator", "synth")
    assert_same(got, ref)
    assert sum(len(r.flips) for r in ref["samples"]) > 0          # it did learn
    assert got["state"]["step"] == k * NETLIST_CFG.T
    assert stats.get("cycles", 0) > 0
