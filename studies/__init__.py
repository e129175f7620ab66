"""Research studies that drive the golden model (golden/, the hardware contract) without being
part of it: baselines (Bop, STE, BPTT), the accuracy / memory / momentum-bits study behind
docs/results.md (:mod:`studies.experiments`), and the digits benchmark (:mod:`studies.digits`)."""
