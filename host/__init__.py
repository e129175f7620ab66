"""Host side: the wire protocol, links to a device, the Accelerator driver and the CLI.

* :mod:`host.protocol` -- frames, opcodes, layouts, CRC (stdlib only; the gateware imports it);
* :mod:`host.link` -- ``EmulatorLink`` (golden int mode behind the protocol), ``SerialLink``,
  ``SocketLink``, ``SimLink`` (not built yet);
* :mod:`host.accelerator` -- ``Accelerator``: configure, memories, run_sample, checkpoints;
* ``python -m host train|eval|status`` -- the command line (:mod:`host.__main__`).

Nothing is imported here, so ``import host.protocol`` stays free of NumPy.
"""
