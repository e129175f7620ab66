"""The RTL in simulation behind the protocol: :class:`SimLink`.

``SimLink(simulator="verilator"|"icarus", cfg=...)`` generates the board top
(:class:`hdl_gen.board_top.BoardTop`: UART -> deframer -> executor -> Core -> framer -> UART),
builds it with the cocotb runner (``verif.uart_bridge.build_board``: one build per design hash,
so a second start skips the compile; the clock toggles inside the simulator) and runs the cocotb bench :mod:`verif.uart_bridge` in a child
process (``python -m host.link.sim SPEC``). The bench bridges a TCP socket on 127.0.0.1 to the
UART pins through cocotbext-uart models; SimLink is a :class:`SocketLink` to it. ``close()``
closes the socket, which ends the bench and the simulator (killed if it does not stop).

The simulation runs at ``baud_divisor`` clocks per UART bit (default 8; a board at 115200 baud
and 12 MHz has 104), so simulated transfers are 13x faster per cycle than on the board while the
core cycles are the same. After ``close()``, :attr:`stats` holds the bench's counts (cycles, core
busy cycles, bytes each way, injected faults).

Waiting for an answer is measured in the simulation, not on the wall clock (a loaded machine
makes a simulated device slow, not lost). The bench keeps a heartbeat file (its pid, simulated
cycles, bytes each way, whether it is blocked waiting for the host; ``verif.uart_bridge``), and
:meth:`SimLink.recv` waits while the simulator is alive and its simulated time advances:

* the simulator process died: :class:`LinkError` at once, with its exit status and the last
  lines of its output;
* the board is idle, has taken every byte sent and delivered every byte it produced: nothing
  more can come, :class:`LinkTimeout` at once (a frame lost on the line);
* ``timeout_cycles`` simulated cycles passed without an answer: :class:`LinkTimeout`;
* simulated time stood still for ``timeout`` wall seconds while the simulator was runnable:
  :class:`LinkTimeout` (a hung simulator). Time in which the process is stopped (``SIGSTOP``,
  a debugger) does not count.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import struct
import tempfile
import time
from pathlib import Path

from .base import LinkError, LinkTimeout
from .socket_link import SocketLink

__all__ = ["SimLink", "SIMULATORS", "DEFAULT_DIVISOR", "DEFAULT_TIMEOUT_CYCLES"]

SIMULATORS = ("verilator", "icarus")
DEFAULT_DIVISOR = 8
#: simulated cycles a busy device may stay silent (100x a default-network learning sample)
DEFAULT_TIMEOUT_CYCLES = 20_000_000
_HEARTBEAT = struct.Struct("<qqqqq")     # verif.uart_bridge.HEARTBEAT (no cocotb import here)
_POLL_S = 0.05
ROOT = Path(__file__).resolve().parents[2]


class SimLink(SocketLink):
    """A :class:`~host.link.Link` to the board top simulated by Verilator or Icarus.

    Parameters
    ----------
    simulator : "verilator" (default) or "icarus"
    cfg : golden.config.NetConfig, optional
        The configuration the RTL is generated for (default: ``NetConfig()``); the host must
        ``configure`` the same one (the RTL is a fixed-config device).
    lanes : int, optional
        Core lanes (default: the Core's default, clamped to what the config needs).
    baud_divisor : int
        Clocks per UART bit in the simulation.
    timeout : float
        Wall seconds simulated time may stand still (the simulator runnable, not stopped)
        before a wait fails; not a limit on a slow simulation (see the module docstring).
    timeout_cycles : int
        Simulated clock cycles a busy device may stay silent before a wait fails.
    startup_timeout : float
        Seconds to wait for the build and the simulator to listen.
    faults : dict, optional
        Fault injection in the UART stream (see :mod:`verif.uart_bridge`).
    arch : str, optional
        Core architecture of the board top (:mod:`hdl_gen.architectures`; default: the
        generator's default).
    log : path, optional
        Where the build and simulator output goes (default: a temporary file, removed on a
        clean close).
    netlist : path, optional
        Simulate a gate-level netlist of the board top instead of the RTL: a
        ``python -m hdl_gen build --netlist`` folder (:mod:`verif.netlist_sim`); ``cfg`` must
        be the one it was built for; the baud divisor is the netlist's.
    netlist_kind : "synth" (default) or "pnr"
        Which netlist: after synthesis, or after place and route.
    """

    def __init__(self, simulator: str | None = "verilator", cfg=None, *, lanes: int | None = None,
                 baud_divisor: int = DEFAULT_DIVISOR, timeout: float = 20.0,
                 timeout_cycles: int = DEFAULT_TIMEOUT_CYCLES, startup_timeout: float = 900.0, faults: dict | None = None,
                 replay_bytes: int | None = None, log: str | os.PathLike | None = None,
                 arch: str | None = None, netlist: str | os.PathLike | None = None,
                 netlist_kind: str = "synth"):
        simulator = simulator or "verilator"
        if simulator not in SIMULATORS:
            self.closed = True
            raise LinkError(f"SimLink: simulator {simulator!r} is invalid: allowed {SIMULATORS}")
        if cfg is None:
            from golden.config import NetConfig
            cfg = NetConfig()
        if netlist is not None:
            info = Path(netlist) / "netlist.json"
            try:
                built = json.loads(info.read_text())["config"]
            except (OSError, ValueError, KeyError) as e:
                self.closed = True
                raise LinkError(f"SimLink: netlist={str(netlist)!r} is invalid: {e}") from None
            if built != cfg.to_dict():
                self.closed = True
                raise LinkError(f"SimLink: the netlist in {netlist} was built for another "
                                f"config ({built['layers']}); pass that one as cfg")
        self.simulator = simulator
        self.cfg = cfg
        self.stats: dict = {}
        self.timeout_cycles = int(timeout_cycles)
        self._dir = Path(tempfile.mkdtemp(prefix="simlink-"))
        self._beat_path = self._dir / "heartbeat"
        self._log_path = Path(log) if log else self._dir / "sim.log"
        portfile = self._dir / "port"
        self._statsfile = self._dir / "stats.json"
        spec = {"simulator": simulator, "cfg": cfg.to_dict(), "lanes": lanes,
                "baud_divisor": baud_divisor, "portfile": str(portfile),
                "statsfile": str(self._statsfile), "faults": faults or {},
                "replay_bytes": replay_bytes, "accept_timeout": startup_timeout,
                "heartbeat": str(self._beat_path), "arch": arch,
                "netlist": None if netlist is None else str(Path(netlist).resolve()),
                "netlist_kind": netlist_kind}
        env = dict(os.environ)
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.setdefault("AMARANTH_USE_YOSYS", "builtin")
        if "OBJCACHE" not in env and shutil.which("ccache"):
            env["OBJCACHE"] = "ccache"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._logf = open(self._log_path, "w")
        self._proc = subprocess.Popen([sys.executable, "-m", "host.link.sim", json.dumps(spec)],
                                      cwd=ROOT, env=env, stdout=self._logf,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        t_end = time.monotonic() + startup_timeout
        port = None
        while time.monotonic() < t_end:
            if portfile.exists():
                port = int(portfile.read_text())
                break
            if self._proc.poll() is not None:
                self._fail(f"the {simulator} simulation exited (code {self._proc.returncode}) "
                           f"before it listened")
            time.sleep(0.05)
        if port is None:
            self._fail(f"the {simulator} simulation did not listen within {startup_timeout:g} s")
        try:
            super().__init__("127.0.0.1", port, timeout=timeout)
        except LinkError:
            self._stop()
            raise
        self.name = f"sim:{simulator} (127.0.0.1:{port})"
        self._sock.settimeout(None)

    # --- waiting on simulated time -------------------------------------------------------------
    def heartbeat(self) -> dict | None:
        """The bench's last heartbeat (``pid``, ``cycles``, ``bytes_in``, ``bytes_out``,
        ``idle``), or ``None`` before the first one."""
        try:
            with open(self._beat_path, "rb") as f:
                raw = f.read(_HEARTBEAT.size)
        except OSError:
            return None
        if len(raw) < _HEARTBEAT.size:
            return None
        return dict(zip(("pid", "cycles", "bytes_in", "bytes_out", "idle"),
                        _HEARTBEAT.unpack(raw)))

    @staticmethod
    def _proc_state(pid: int) -> str | None:
        """Linux process state letter (R, S, T, Z, ...), ``None`` when there is no such process."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return None

    def _died(self, why: str):
        """The simulation is gone: raise LinkError with its exit status and last output."""
        try:
            code = self._proc.wait(timeout=10)         # let the runner print its message
        except subprocess.TimeoutExpired:
            code = None
        self.closed = True
        tail = self._tail(15)
        try:
            super()._close()
        except OSError:
            pass
        self._stop(wait=1.0)
        raise LinkError(f"{self.name}: the {self.simulator} simulation died ({why}; exit code "
                        f"{code}); log {self._log_path}:\n{tail}")

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)        # blocks while a stopped simulator's buffer is full
        except OSError as e:
            self._died(f"send failed: {e}")

    def _recv(self, timeout: float) -> bytes:
        beat = self.heartbeat()
        c0 = beat["cycles"] if beat else 0
        last_cycles, last_move = c0, time.monotonic()
        while True:
            try:
                data = super()._recv(_POLL_S)
            except LinkError as e:
                self._died(str(e).removeprefix(f"{self.name}: "))
            if data:
                return data
            beat = self.heartbeat()
            pid = beat["pid"] if beat else None
            state = self._proc_state(pid) if pid else None
            if self._proc.poll() is not None or (pid and state in (None, "Z", "X")):
                self._died("the simulator process is gone" if pid and state in (None, "Z", "X")
                           else "the bench process exited")
            now = time.monotonic()
            if beat is None:
                continue
            if beat["cycles"] != last_cycles or state in ("T", "t"):
                last_cycles, last_move = beat["cycles"], now      # advancing, or suspended
            if (beat["idle"] and beat["bytes_in"] == self.bytes_sent
                    and beat["bytes_out"] == self.bytes_received):
                raise LinkTimeout(f"{self.name}: no answer: the simulated board is idle, took "
                                  f"all {self.bytes_sent} bytes sent and has nothing more to "
                                  f"send ({beat['cycles'] - c0} cycles waited)")
            if beat["cycles"] - c0 > self.timeout_cycles:
                raise LinkTimeout(f"{self.name}: no data within {self.timeout_cycles} simulated "
                                  f"cycles")
            if now - last_move > self.timeout:
                raise LinkTimeout(f"{self.name}: simulated time stood still for "
                                  f"{self.timeout:g} s (simulator state {state})")

    def _tail(self, n=40) -> str:
        try:
            self._logf.flush()
            lines = self._log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _fail(self, msg):
        tail = self._tail()
        self._stop()
        self.closed = True
        raise LinkError(f"SimLink: {msg}; log {self._log_path}:\n{tail}")

    def _stop(self, wait: float = 30.0) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
        self._logf.close()

    def _close(self) -> None:
        super()._close()
        self._stop()
        try:
            self.stats = json.loads(self._statsfile.read_text())
        except (OSError, ValueError):
            self.stats = {}
        if self._proc.returncode == 0 and self._log_path.parent == self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def _serve(spec: dict) -> None:
    """Child process: build the board top and run the bridge bench until the host closes."""
    import verif.rtl_util  # noqa: F401  (Verilator PCH workaround in MAKEFLAGS)
    from golden.config import NetConfig
    from hdl_gen.board_top import BoardTop
    from hdl_gen.core import DEFAULT_LANES
    from verif.uart_bridge import build_board

    env = {"BSNN_DIVISOR": spec["baud_divisor"], "BSNN_PORTFILE": spec["portfile"],
           "BSNN_STATSFILE": spec["statsfile"], "BSNN_FAULTS": spec["faults"],
           "BSNN_ACCEPT_TIMEOUT": spec["accept_timeout"],
           "BSNN_HEARTBEAT": spec.get("heartbeat") or ""}
    if spec.get("netlist"):
        from verif.netlist_sim import serve
        serve(spec["simulator"], spec["netlist"], spec.get("netlist_kind") or "synth", env)
        return
    cfg = NetConfig.from_dict(spec["cfg"])
    lanes = spec.get("lanes") or DEFAULT_LANES
    kw = {}
    if spec.get("replay_bytes"):
        kw["replay_bytes"] = spec["replay_bytes"]
    if spec.get("arch"):
        kw["arch"] = spec["arch"]
    top = BoardTop(cfg, lanes=lanes, baud_divisor=spec["baud_divisor"], **kw)
    build_board(spec["simulator"], top, "verif.uart_bridge", testcase="uart_bridge", name="bridge",
                env=env)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
