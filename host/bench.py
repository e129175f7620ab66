"""``python -m host bench``: the link benchmark (docs/link.md), not a timed test.

    python -m host bench --link emulator|sim[:verilator|:icarus] --data digits --samples N
                         [--board icebreaker|ulx3s-85f|all] [--config CFG] [--lanes P]
                         [--usb-rtt-ms MS] [--json FILE]

It trains N samples (learning on, the first N of the training split, as ``train`` does with no
spikes or flips reported) and reports:

* ``emulator_samples_per_s``: the emulator on this host's CPU (wall time, protocol v2,
  pipelined, over max(N, 200) samples); always measured, also for ``--link sim`` (the same
  run's reference; the simulated board's predictions must equal the emulator's);
* ``golden_samples_per_s``: ``golden.core.Core.run_sample`` alone on the same samples (what
  the emulator's protocol handling costs on top);
* ``bytes_per_sample``: link bytes per sample each way, the frames in flight;
* per board (iCEBreaker at 12 Mbaud, ULX3S at 3 Mbaud, at the board's core clock):
  with ``--link sim`` the **simulated board time** per sample -- board-top cycles while the
  board works (the bench stops simulated time while the board is idle and the host thinks),
  the UART at the board's real divisor, converted at the board clock -- and, for either link,
  the **USB model**: every exchange the protocol waits for costs ``--usb-rtt-ms`` (2 ms,
  FTDI on Linux). Stop-and-wait (v1) pays it per command; a window of W samples in flight
  (v2) hides it when W samples take longer than one round trip:
  ``t = max(S, (S1 + rtt) / W)``, ``S`` the steady-state time per sample (the busier of the
  two line directions and the core), ``S1`` one sample's latency (up + core + down).
  That gives ``board_samples_per_s`` and the line utilisation.

Until the RTL speaks v2 the simulation runs v1; its core cycles per sample (simulated cycles
minus the UART's) then also give the projection with v2's bytes and window (``v2_projected``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import datasets

__all__ = ["add_parser", "cmd_bench", "BOARD_LINKS", "board_link", "line_model"]

#: the boards the bench models; their baud and board-top clock are the board definitions'
#: (hdl_gen.flow.boards: ``Board.link.baud``, ``Board.f_core``), read by :func:`board_link`
BOARD_LINKS = ("icebreaker", "ulx3s-85f")
USB_RTT_S = 2e-3
EMULATOR_MIN_SAMPLES = 200      # the emulator's figure is taken over at least this many samples


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="link benchmark: samples/s on the emulator, simulated "
                                     "board time per sample, bytes per sample")
    b.add_argument("--link", default="emulator", help="emulator | sim[:verilator|:icarus]")
    datasets.add_data_args(b)
    b.add_argument("--samples", type=int, default=None,
                   help="training samples (default 200 on the emulator, 8 on sim)")
    b.add_argument("--emulator-samples", type=int, default=None,
                   help=f"samples for the emulator's figure (default max(N, "
                        f"{EMULATOR_MIN_SAMPLES}))")
    b.add_argument("--board", default="all", choices=[*BOARD_LINKS, "all"],
                   help="the board(s) whose clock and baud the model (and sim) use")
    b.add_argument("--config", type=Path, default=None, help="NetConfig JSON")
    b.add_argument("--lanes", type=int, default=None,
                   help="core lanes of the simulated RTL (default: the board's, 8)")
    b.add_argument("--usb-rtt-ms", type=float, default=USB_RTT_S * 1e3,
                   help="USB round trip per exchange the protocol waits for (2)")
    b.add_argument("--timeout", type=float, default=None,
                   help="sim: wall seconds simulated time may stand still (20)")
    b.add_argument("--json", type=Path, default=None, help="also write the figures here")
    b.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


def board_link(name: str) -> dict:
    """Baud, clock and UART divisor of board ``name``'s top (ValueError when they do not fit)."""
    from hdl_gen.flow.boards import get_board

    b = get_board(name)
    return {"baud": b.link.baud, "clk_hz": b.f_core, "divisor": b.uart_divisor(),
            "lanes": b.default_lanes}             # the board's parallel-core build


def line_model(up: float, down: float, core_s: float, exchanges: float, window: int,
               baud: float, rtt: float, pipelined: bool) -> dict:
    """Time per sample on a board: ``up``/``down`` bytes per sample, ``core_s`` core seconds
    per sample, ``exchanges`` round trips per sample (v1), ``window`` samples in flight (v2)."""
    t_up, t_down = 10 * up / baud, 10 * down / baud          # 8N1: 10 bits per byte
    if pipelined:
        s = max(t_up, t_down, core_s)
        s1 = t_up + core_s + t_down
        t = max(s, (s1 + rtt) / max(window, 1))
    else:
        t = t_up + t_down + core_s + exchanges * rtt
    return {"s_per_sample": t, "samples_per_s": 1 / t, "line_up_s": t_up, "line_down_s": t_down,
            "core_s": core_s, "usb_s": t - (max(t_up, t_down, core_s) if pipelined
                                            else t_up + t_down + core_s),
            "line_utilisation": {"to_device": t_up / t, "from_device": t_down / t}}


def _train(acc, data, n) -> dict:
    """Learn the first ``n`` training samples; wall time, bytes and exchanges per sample."""
    link = acc.link
    acc.set_outputs(spikes=False, flips=False)
    xs, ys = data.x_train[:n], [int(y) for y in data.y_train[:n]]
    b0, r0, c0 = link.bytes_sent, link.bytes_received, acc.stats["commands"]
    beat0 = link.heartbeat() if hasattr(link, "heartbeat") else None
    t0 = time.perf_counter()
    preds = [r.prediction for r in acc.run_samples(xs, ys, learn=True)]
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "samples_per_s": n / wall, "protocol": acc.version,
           "window": acc.tx.window, "max_in_flight": acc.stats["max_in_flight"],
           "bytes_per_sample": {"to_device": (link.bytes_sent - b0) / n,
                                "from_device": (link.bytes_received - r0) / n},
           "commands_per_sample": (acc.stats["commands"] - c0) / n,
           "train_accuracy": float(np.mean(np.array(preds) == np.array(ys))),
           "predictions": preds}
    out["bytes_per_sample"]["total"] = sum(out["bytes_per_sample"].values())
    if beat0 is not None:
        out["sim_cycles"] = _idle_beat(link)["cycles"] - beat0["cycles"]
    return out


def _idle_beat(link, wait_s: float = 30.0) -> dict:
    """The heartbeat once the simulated board is idle with every byte delivered."""
    t_end = time.monotonic() + wait_s
    while True:
        beat = link.heartbeat()
        if beat and beat["idle"] and beat["bytes_out"] == link.bytes_received:
            return beat
        if time.monotonic() > t_end:
            return beat
        time.sleep(0.02)


def cmd_bench(args) -> dict:
    """Run ``bench``; return the figures (also written to ``--json``)."""
    from .accelerator import Accelerator
    from .link import EmulatorLink, parse_link

    try:
        kind, kw = parse_link(args.link)
    except ValueError as e:
        raise datasets.DataError(f"--{e}") from None
    if kind not in ("emulator", "sim"):
        raise datasets.DataError(f"--link {args.link}: bench runs on emulator or sim[:...]")
    n = args.samples if args.samples is not None else (200 if kind == "emulator" else 8)
    if n < 1:
        raise datasets.DataError(f"--samples must be >= 1, got {n}")
    if not args.usb_rtt_ms >= 0:
        raise datasets.DataError(f"--usb-rtt-ms must be >= 0, got {args.usb_rtt_ms}")
    if args.lanes is not None and args.lanes < 1:
        raise datasets.DataError(f"--lanes must be >= 1, got {args.lanes}")
    boards = list(BOARD_LINKS) if args.board == "all" else [args.board]
    try:
        links = {b: board_link(b) for b in boards}
    except ValueError as e:
        raise datasets.DataError(f"--board: {e}") from None
    cfg = datasets.load_config(args.config)
    plan = datasets.plan(args, cfg.T)
    if not plan.labelled:
        raise datasets.DataError(f"--data {plan.spec}: bench trains: it needs labelled data")
    datasets.check_size(plan)
    if args.config is None:
        cfg = cfg.replace(layers=(plan.n_in, *cfg.layers[1:]), T=plan.T)
    datasets.check_network(plan, cfg, f"the network ({args.config or 'default'})")
    data = datasets.load_labelled(plan, None)
    for w in plan.warnings:
        print(f"warning: {w}")
    if n > len(data.x_train):
        raise datasets.DataError(f"--samples {n}: the training split has {len(data.x_train)}")
    rtt = args.usb_rtt_ms / 1e3
    print(f"bench: {plan.describe()}; layers {cfg.layers}, T {cfg.T}; {n} samples, learning "
          f"on; USB {args.usb_rtt_ms:g} ms per exchange", flush=True)

    n_emu = args.emulator_samples or min(max(n, EMULATOR_MIN_SAMPLES), len(data.x_train))
    if n_emu < n or n_emu > len(data.x_train):
        raise datasets.DataError(f"--emulator-samples {n_emu}: allowed {n}.."
                                 f"{len(data.x_train)} (at least --samples)")
    with Accelerator(EmulatorLink()) as acc:
        acc.configure(cfg)
        emu = _train(acc, data, n_emu)
    from golden.core import Core

    core = Core(cfg, "int")                   # the model alone: what the link costs on top
    t0 = time.perf_counter()
    for x, y in zip(data.x_train[:n_emu], data.y_train[:n_emu]):
        core.run_sample(x, int(y), learn=True)
    golden_rate = n_emu / (time.perf_counter() - t0)
    out = {"link": args.link, "data": plan.spec, "config": cfg.to_dict(), "samples": n,
           "emulator_samples": n_emu, "golden_samples_per_s": golden_rate,
           "learn": True, "usb_round_trip_s": rtt,
           "emulator_samples_per_s": emu["samples_per_s"], "emulator": emu,
           "bytes_per_sample": emu["bytes_per_sample"], "boards": {}}
    print(f"emulator: {emu['samples_per_s']:.1f} samples/s (host CPU wall, protocol "
          f"v{emu['protocol']}, up to {emu['max_in_flight']} in flight); "
          f"{emu['bytes_per_sample']['to_device']:.0f} B up, "
          f"{emu['bytes_per_sample']['from_device']:.0f} B down per sample; golden.core "
          f"alone {golden_rate:.1f} samples/s")
    core_est = None
    for b in boards:
        bl = links[b]
        rec = {"baud": bl["baud"], "clk_hz": bl["clk_hz"], "divisor": bl["divisor"],
               "lanes": args.lanes or bl["lanes"]}
        if kind == "sim":
            rec["sim"] = _sim_run(args, kw, cfg, data, n, bl, emu)
            core_est = rec["sim"]["core_s_per_sample"]
        bp = emu["bytes_per_sample"]
        model = line_model(bp["to_device"], bp["from_device"], core_est or 0.0, 0,
                           emu["max_in_flight"], bl["baud"], rtt, pipelined=True)
        model["core_time"] = ("from the simulation" if core_est is not None else
                              "not included (the emulator has no cycles: use --link sim)")
        rec["v2_model"] = model
        if kind == "sim" and rec["sim"]["protocol"] < 2:
            rec["v2_projected"] = model
            s = rec["sim"]
            rec["board_samples_per_s_v1"] = s["board_samples_per_s"]
        rec["board_samples_per_s"] = (rec["sim"]["board_samples_per_s"]
                                      if kind == "sim" and rec["sim"]["protocol"] >= 2
                                      else model["samples_per_s"])
        rec["line_utilisation"] = model["line_utilisation"]
        rec["speedup_vs_emulator"] = rec["board_samples_per_s"] / emu["samples_per_s"]
        out["boards"][b] = rec
        print(f"{b} at {bl['baud'] / 1e6:g} Mbaud, {bl['clk_hz'] / 1e6:g} MHz (divisor "
              f"{bl['divisor']}): {rec['board_samples_per_s']:.0f} board samples/s "
              f"({rec['speedup_vs_emulator']:.1f}x the emulator); line "
              f"{model['line_utilisation']['to_device']:.0%} up / "
              f"{model['line_utilisation']['from_device']:.0%} down"
              + ("" if core_est is not None else "; core time not included"))
    first = out["boards"][boards[0]]
    out["board_samples_per_s"] = first["board_samples_per_s"]
    out["target"] = {"board": boards[0], "ratio": first["speedup_vs_emulator"], "need": 10.0,
                     "met": first["speedup_vs_emulator"] >= 10.0,
                     "core_time_included": core_est is not None}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return out


def _sim_run(args, kw, cfg, data, n, bl, emu) -> dict:
    """Train ``n`` samples on the simulated board top at the board's divisor."""
    from .accelerator import Accelerator
    from .link import SimLink

    extra = {} if args.timeout is None else {"timeout": args.timeout}
    link = SimLink(kw["simulator"], cfg, lanes=args.lanes or bl["lanes"],
                   baud_divisor=bl["divisor"], **extra)
    with Accelerator(link) as acc:
        acc.configure(cfg)
        r = _train(acc, data, n)
    if r["predictions"] != emu["predictions"][:n]:
        raise AssertionError("the simulated board's predictions differ from the emulator's")
    cycles = r["sim_cycles"] / n
    bp = r["bytes_per_sample"]
    uart = 10 * bl["divisor"] * bp["total"]
    sim_s = cycles / bl["clk_hz"]
    rtt = args.usb_rtt_ms / 1e3
    busy = link.stats.get("core_busy_cycles")        # the whole session, set-up included
    busy_s = busy / n / bl["clk_hz"] if busy is not None else None
    if r["protocol"] >= 2:
        # pipelined: line and core overlap in the simulated time; one sample's latency takes
        # the core's busy cycles (an upper bound: they include the set-up)
        core_s = busy_s if busy_s is not None else sim_s
        t = line_model(bp["to_device"], bp["from_device"], core_s, 0, r["max_in_flight"],
                       bl["baud"], rtt, pipelined=True)["s_per_sample"]
        t = max(t, sim_s)
    else:
        core_s = max(0.0, (cycles - uart) / bl["clk_hz"])   # stop-and-wait: no overlap
        t = sim_s + r["commands_per_sample"] * rtt
    r.pop("predictions")
    r.update(simulator=link.simulator, cycles_per_sample=cycles, uart_cycles_per_sample=uart,
             core_s_per_sample=core_s, core_busy_s_per_sample_incl_setup=busy_s,
             sim_s_per_sample=sim_s, board_s_per_sample=t,
             board_samples_per_s=1 / t, exchanges_per_sample=r["commands_per_sample"]
             if r["protocol"] < 2 else None, bridge=link.stats)
    print(f"  sim:{link.simulator} v{r['protocol']}: {cycles:.0f} cycles per sample "
          f"({uart:.0f} UART, core ~{core_s * 1e6:.0f} us) = {sim_s * 1e3:.3f} ms simulated; "
          f"with USB {t * 1e3:.2f} ms -> {1 / t:.0f} samples/s; wall {r['wall_s']:.0f} s")
    return r
