"""The board flow: everything between the chip's generated design and a bitstream on a board.

The chip's blocks live in :mod:`hdl_gen` (one module per block, named like its golden twin);
this subpackage imports them and is never imported by them.

* :mod:`~hdl_gen.flow.boards`: the boards (amaranth-boards platforms, PLLs, default configs);
* :mod:`~hdl_gen.flow.tops`: what goes on a board (board shell, pin harness, top factories);
* :mod:`~hdl_gen.flow.fit`: the memory budget checked before synthesis;
* :mod:`~hdl_gen.flow.spram`: what the iCE40 SPRAM inference needs;
* :mod:`~hdl_gen.flow.build`: synthesis, place and route, pack, ``report.json``;
* :mod:`~hdl_gen.flow.parse`: reading nextpnr's and Yosys' output;
* :mod:`~hdl_gen.flow.report`, :mod:`~hdl_gen.flow.summary`, :mod:`~hdl_gen.flow.throughput`,
  :mod:`~hdl_gen.flow.breakdown`: docs/performance.md (``python -m hdl_gen report``);
* :mod:`~hdl_gen.flow.cli`: the ``build`` and ``report`` subcommands of ``python -m hdl_gen``.
"""
