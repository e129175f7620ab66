"""The compact core's parts (:class:`hdl_gen.compact_core.CompactCore` is the top).

One time-multiplexed datapath for every layer and phase; all state in deep, narrow memories.

* :mod:`.memmap` -- the memory map: which memory holds what, at which address, and the
  memories' read/write port signals;
* :mod:`.forward` -- the forward sequencer: input accumulation, LIF, output error, traces;
* :mod:`.learning` -- the learning sequencer: hidden errors, T-BSO thresholds, momentum
  updates and flips;
* :mod:`.hostmem` -- the host's memory and register access through ``i_mem`` / ``o_mem``.

Each sequencer adds its states to the core's one FSM (``add_states(ctx)`` inside
``with m.FSM()``); ``ctx`` (:class:`hdl_gen.compact_core.Ctx`) holds the module, the memories
and the shared registers.
"""
