"""TbsoUnit: the T-BSO second-moment EMA ``V[layer][t]`` and the adaptive flip threshold.

The RTL twin of :func:`golden.flip_unit.tbso_update` in int mode. Once per layer and learning
step (before the layer's FlipUnit pass), from ``S_d = sum(delta^2)`` and ``S_a = sum(a^2)``::

    q    = (S_d * S_a * recip) >> 32               recip = cfg.derived().tbso_recip[layer]
    V[t] = sat(V[t] + ((q - V[t]) >> v_rate_shift), 0, v_max)    (counted in n_v_sat)
    thr  = (gamma_q * isqrt(V[t])) >> (tbso_gamma_frac + v_frac // 2)

Multi-cycle and small: one multiplier ``S_d * S_a``, a shift-and-add multiply by the constant
``recip`` (one bit of the product per cycle), one adder for the EMA and a restoring bit-by-bit
square root (one root bit per cycle).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["TbsoUnit", "GAMMA_Q_BITS"]

#: Width of ``gamma_q``. ``NetConfig.validate`` keeps the configured ``tbso_gamma_q`` below 2^16,
#: but the schedule multiplies it by ``schedule_gamma_num / schedule_gamma_den`` every
#: ``schedule_every`` epochs (T-BSO defaults: 3/2 every 3 epochs, 2^16 after ~48 epochs), so the
#: port has room up to 2^32 - 1 (~120 epochs of that schedule).
GAMMA_Q_BITS = 32


class TbsoUnit(wiring.Component):
    """T-BSO threshold of one layer: owns ``V[0..T-1]`` (``v_bits`` unsigned, reset value 0).

    Parameters
    ----------
    cfg : golden.config.NetConfig
        Network and fixed-point parameters.
    layer : int
        Weight layer, ``0 .. cfg.n_layers - 1``.

    Members
    -------
    start : In(1)
        Pulse while idle (``busy`` low): latch ``t``, ``s_d``, ``s_a``, ``gamma_q``; ignored
        while busy.
    t : In(t_bits)
        Time-step index, ``0 .. T-1``.
    s_d : In(sd_bits)
        ``sum(delta^2)`` over the layer's posts, ``sd_bits = bits_for(n_post * delta_max^2)``.
    s_a : In(sa_bits)
        ``sum(a^2)`` over the layer's pres, ``sa_bits = bits_for(n_pre * trace_max^2)``.
    gamma_q : In(GAMMA_Q_BITS)
        ``tbso_gamma * 2^tbso_gamma_frac`` after the schedule, 0 .. 2^32 - 1.
    busy, done : Out(1)
        Update in progress; one-cycle pulse when ``thr`` and ``V[t]`` are updated.
    thr : Out(thr_bits)
        The golden threshold (unsigned), held from ``done`` until the next ``done``.
    thr_flip : Out(signed(momentum_bits + 1))
        ``min(thr, mom_max)``: the value for :class:`~hdl_gen.flip_unit.FlipUnit`'s ``thr`` (the
        same flip decisions, since ``|w * M| <= mom_max``).
    n_v_sat : Out(32)
        Number of saturated ``V`` updates (``IntArith.counters['v']``) since reset/``cnt_clear``.
    cnt_clear : In(1)
        Zero ``n_v_sat``.
    v_addr, v_wdata, v_we, v_re : In(t_bits), In(v_bits), In(1), In(1)
        Host access to ``V`` while idle (checkpoints); ignored while busy.
    v_rdata, v_rvalid : Out(v_bits), Out(1)
        Read data, valid (``v_rvalid`` high) the cycle after ``v_re``.
    """

    def __init__(self, cfg, layer: int):
        if not 0 <= layer < cfg.n_layers:
            raise ValueError(f"layer={layer} is invalid: allowed 0..{cfg.n_layers - 1}")
        self._cfg = cfg
        self._layer = layer
        d = cfg.derived()
        n_pre, n_post = cfg.layers[layer], cfg.layers[layer + 1]
        self._recip = d.tbso_recip[layer]
        self._sd_bits = bits_for(n_post * d.delta_max ** 2)
        self._sa_bits = bits_for(n_pre * d.trace_max ** 2)
        self._t_bits = max(1, bits_for(cfg.T - 1))
        self._root_bits = (cfg.v_bits + 1) // 2
        self._thr_shift = cfg.tbso_gamma_frac + cfg.v_frac // 2
        thr_max = (((1 << GAMMA_Q_BITS) - 1) * ((1 << self._root_bits) - 1)) >> self._thr_shift
        self._thr_bits = max(1, bits_for(thr_max))
        super().__init__({
            "start": In(1),
            "t": In(self._t_bits),
            "s_d": In(self._sd_bits),
            "s_a": In(self._sa_bits),
            "gamma_q": In(GAMMA_Q_BITS),
            "busy": Out(1),
            "done": Out(1),
            "thr": Out(self._thr_bits),
            "thr_flip": Out(signed(cfg.momentum_bits + 1)),
            "n_v_sat": Out(32),
            "cnt_clear": In(1),
            "v_addr": In(self._t_bits),
            "v_wdata": In(cfg.v_bits),
            "v_we": In(1),
            "v_re": In(1),
            "v_rdata": Out(cfg.v_bits),
            "v_rvalid": Out(1),
        })

    @property
    def cfg(self):
        """The :class:`~golden.config.NetConfig`."""
        return self._cfg

    @property
    def layer(self) -> int:
        """Weight layer index."""
        return self._layer

    def cycles(self, s_d: int, s_a: int) -> int:
        """Cycles from the ``start`` cycle to the ``done`` cycle, both included, for these sums."""
        return 5 + (s_d * s_a).bit_length() + self._root_bits

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        d = cfg.derived()
        vb, rb = cfg.v_bits, self._root_bits
        p_bits = self._sd_bits + self._sa_bits
        r_bits = max(1, self._recip.bit_length())
        q_max = (((1 << self._sd_bits) - 1) * ((1 << self._sa_bits) - 1) * self._recip) >> 32
        q_bits = max(1, bits_for(q_max))
        w_bits = max(q_bits, vb) + 1                 # EMA sum before saturation

        m.submodules.vmem = vmem = Memory(shape=vb, depth=cfg.T, init=[])
        rd, wr = vmem.read_port(), vmem.write_port()

        busy = Signal()
        t_r = Signal(self._t_bits)
        gq = Signal(GAMMA_Q_BITS)
        mul_a = Signal(p_bits)                      # remaining multiplier bits (S_d * S_a)
        mul_b = Signal(p_bits + r_bits)             # recip << i
        acc = Signal(p_bits + r_bits)
        v_new = Signal(vb)
        sq_v = Signal(2 * rb)                       # radicand, shifted left 2 bits per step
        rem = Signal(rb + 2)
        root = Signal(rb)
        n_it = Signal(range(rb + 1))
        thr = Signal(self._thr_bits)
        n_sat = Signal(32)
        m.d.comb += [
            self.busy.eq(busy),
            self.thr.eq(thr),
            self.thr_flip.eq(Mux(thr > d.mom_max, d.mom_max, thr)),
            self.n_v_sat.eq(n_sat),
            rd.addr.eq(Mux(busy, t_r, self.v_addr)),
            self.v_rdata.eq(rd.data),
            wr.addr.eq(Mux(busy, t_r, self.v_addr)),
            wr.data.eq(Mux(busy, v_new, self.v_wdata)),
        ]
        m.d.sync += self.v_rvalid.eq(self.v_re & ~busy)
        with m.If(self.cnt_clear):
            m.d.sync += n_sat.eq(0)

        with m.FSM(name="tbso"):
            with m.State("Idle"):
                m.d.comb += wr.en.eq(self.v_we)
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), t_r.eq(self.t), gq.eq(self.gamma_q),
                                 mul_a.eq(self.s_d * self.s_a), mul_b.eq(self._recip),
                                 acc.eq(0)]
                    m.next = "Multiply"
            with m.State("Multiply"):
                # acc = (S_d * S_a) * recip, LSB first; ends when no multiplier bit is left
                with m.If(mul_a == 0):
                    m.next = "Update"
                with m.Else():
                    with m.If(mul_a[0]):
                        m.d.sync += acc.eq(acc + mul_b)
                    m.d.sync += [mul_a.eq(mul_a >> 1), mul_b.eq(mul_b << 1)]
            with m.State("Update"):
                # V[t] was read at t_r since the Multiply state began
                q = Signal(q_bits)
                diff = Signal(signed(w_bits + 1))
                ema = Signal(signed(w_bits + 2))
                m.d.comb += [q.eq(acc >> 32), diff.eq(q - rd.data),
                             ema.eq(rd.data + (diff >> cfg.v_rate_shift))]
                over = ema > d.v_max
                m.d.comb += [v_new.eq(Mux(over, d.v_max, ema)), wr.en.eq(1)]
                with m.If(over & ~self.cnt_clear):
                    m.d.sync += n_sat.eq(n_sat + 1)
                m.d.sync += [sq_v.eq(v_new), rem.eq(0), root.eq(0), n_it.eq(0)]
                m.next = "Sqrt"
            with m.State("Sqrt"):
                # restoring square root: one root bit per cycle, radicand MSB pair first
                cur = Signal(rb + 3)
                trial = Signal(rb + 2)
                m.d.comb += [cur.eq((rem << 2) | sq_v[2 * rb - 2:]),
                             trial.eq((root << 2) | 1)]
                with m.If(cur >= trial):
                    m.d.sync += [rem.eq(cur - trial), root.eq((root << 1) | 1)]
                with m.Else():
                    m.d.sync += [rem.eq(cur), root.eq(root << 1)]
                m.d.sync += [sq_v.eq(sq_v << 2), n_it.eq(n_it + 1)]
                with m.If(n_it == rb - 1):
                    m.next = "Threshold"
            with m.State("Threshold"):
                m.d.sync += thr.eq((gq * root) >> self._thr_shift)
                m.next = "Done"
            with m.State("Done"):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "Idle"
        return m
