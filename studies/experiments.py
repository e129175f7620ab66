"""Reproduce the seeds' claims with the golden model; write docs/results.md and its figures.

    python -m studies.experiments [--quick] [--json FILE] [--out DIR] [--jobs N]
                                  [--sections memory,accuracy,bits,extras]
                                  [--datasets digits,mnist,mnist-full,nmnist] [--methods ...]
    python -m studies.experiments --from-json FILE --out DIR      # re-render only

Sections:

1. ``memory``   -- peak training memory vs T in {4, 8, 16, 32, 64}: online BSO / T-BSO (the
   Core's step loop) vs BPTT, by tracemalloc, plus the learning state in bits.
2. ``accuracy`` -- accuracy vs epoch and final mean +- std over seeds for BSO, T-BSO, Bop,
   STE+Adam, STE+SGD, STE+hybrid, BPTT (float) and BSO / T-BSO (int), on the digits events,
   rate-coded MNIST and converted N-MNIST-style events (:mod:`studies.datasets`; ``mnist-full``
   is all 60k/10k of MNIST); flip statistics (flip-flop ratio, correlation to initialisation).
3. ``bits``     -- int-mode accuracy vs momentum width 2..12, with / without stochastic rounding,
   BSO and T-BSO; the smallest width within 1 point of float.
4. ``extras``   -- shift-based BN folded into the Core (seed 002) and distillation from a
   full-precision teacher (seed 001).

**Fan-out.** Every section is a list of independent *tasks* -- one per method x seed x data set
(accuracy), optimizer x arithmetic x width x seed (bits), seed (extras), one for memory. They
run in ``--jobs`` worker processes (default: every core). Each finished task is written to
``--parts DIR`` (default ``out/study-parts``) as ``<index>.json`` at once, so an interrupted
study resumes where it stopped (a task whose part file exists is not run again unless
``--rerun``); the sections are assembled from the part files into ``--json`` and the report.

**Cluster (array jobs).** The task list is a pure function of the selection options, so every
array element computes the same list and runs its own index::

    python -m studies.experiments --prepare   [selection]     # once: data sets converted/cached
    N=$(python -m studies.experiments --list-tasks [selection] | wc -l)
    sbatch --array=0-$((N - 1)) --wrap \\
        "python -m studies.experiments --task \\$SLURM_ARRAY_TASK_ID --parts $PWD/parts [selection]"
    python -m studies.experiments --merge --parts $PWD/parts --json docs/results.json --out docs/

(``[selection]`` = the same ``--quick / --sections / --datasets / --methods / --seeds``; with
PBS/Torque use ``$PBS_ARRAY_INDEX``, with SGE ``$((SGE_TASK_ID - 1))``.)

Everything reported is measured by this script; nothing is copied from a paper.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from golden.config import NetConfig

from . import bits as B
from .common import BASE_OVERRIDES, METHODS, base_config, run_method
from .datasets import CACHE, DATASETS, load_dataset, source_of
from .extras import extras_task
from .memory import measure_memory
from .report import write_report

__all__ = ["SECTIONS", "plan", "run_task", "assemble", "main"]

SECTIONS = ("memory", "accuracy", "bits", "extras")
T = NetConfig().T
DESC = {"digits": "scikit-learn digits, ON/OFF sigma-delta events (golden.data);",
        "mnist": "MNIST ({src}), rate-coded Bernoulli(pixel/255) per step;",
        "mnist-full": "all of MNIST ({src}), rate-coded Bernoulli(pixel/255) per step;",
        "nmnist": "MNIST converted to N-MNIST-style events (converted, not recorded; {src});"}
# data set: (epochs, training samples per epoch or None = all), full and --quick
EPOCHS = {"digits": (3, None), "mnist": (3, None), "mnist-full": (1, None), "nmnist": (2, None)}
QUICK_EPOCHS = {"digits": (2, 600)}


def _settings(quick: bool) -> dict:
    if quick:
        return {"seeds": [0, 1], "bits": ([2, 4, 6, 8, 10, 12], [0], 1, 300),
                "extras": ([0], 2, 500)}
    return {"seeds": [0, 1, 2], "bits": (list(range(2, 13)), [0, 1, 2], 2, None),
            "extras": ([0, 1, 2], 4, None)}


def plan(sections, quick: bool, datasets, methods, seeds=None) -> list[dict]:
    """The study's independent tasks, in a fixed order (array jobs index into it); ``seeds``
    replaces the accuracy section's seeds."""
    st = _settings(quick)
    if seeds is not None:
        st["seeds"] = list(seeds)
    tasks = []
    if "memory" in sections:
        tasks.append({"id": "memory", "section": "memory"})
    if "accuracy" in sections:
        for ds in datasets:
            ep, samples = (QUICK_EPOCHS if quick else EPOCHS).get(ds, EPOCHS[ds])
            for m in methods:
                for s in st["seeds"]:
                    tasks.append({"id": f"accuracy/{ds}/{m}/{s}", "section": "accuracy",
                                  "data": ds, "method": m, "seed": s, "epochs": ep,
                                  "samples": samples, "seeds": st["seeds"]})
    if "bits" in sections:
        widths, seeds, ep, samples = st["bits"]
        for t in B.bits_tasks(widths, seeds):
            tasks.append({"id": B.task_key(t["opt"], t["arith"], t["width"], t["seed"]),
                          "section": "bits", "data": "digits", **t, "epochs": ep,
                          "samples": samples, "widths": widths, "seeds": seeds})
    if "extras" in sections:
        seeds, ep, samples = st["extras"]
        for s in seeds:
            tasks.append({"id": f"extras/{s}", "section": "extras", "data": "digits",
                          "seed": s, "epochs": ep, "samples": samples, "seeds": seeds})
    return tasks


def run_task(task: dict, cache: str | None = None) -> dict:
    """Run one task in this process; return ``{"task", "result", "seconds"}`` (JSON-able)."""
    t0 = time.perf_counter()
    sec = task["section"]

    def log(s):
        print(f"[{task['id']}] {s.strip()}", flush=True)

    if sec == "memory":
        out = measure_memory(n_in=784)
    else:
        D = load_dataset(task["data"], T, Path(cache) if cache else None)
        if sec == "accuracy":
            out = run_method(task["method"], D, task["seed"], task["epochs"], task["samples"],
                             log)
            out["data"] = {"n_train": len(D.y_train), "n_test": len(D.y_test), "T": D.T,
                           "n_in": D.n_in, "source": source_of(task["data"], T, cache)}
        elif sec == "bits":
            out = B.bits_task(D, task["opt"], task["arith"], task["width"], task["seed"],
                              task["epochs"], task["samples"])
        elif sec == "extras":
            out = extras_task(D, task["seed"], task["epochs"], task["samples"])
        else:
            raise ValueError(f"unknown section {sec!r}")
    return {"task": task, "result": out, "seconds": time.perf_counter() - t0}


def assemble(res: dict, pieces: dict) -> dict:
    """Fold finished tasks (``{id: run_task output}``) into the report's sections of ``res``.

    A section (or, for accuracy, a data set x method row) is replaced only when all of its
    seeds are done; what ``res`` already held is kept otherwise.
    """
    by = {}
    for p in pieces.values():
        by.setdefault(p["task"]["section"], []).append(p)
    secs = res["meta"].setdefault("section_seconds", {})
    for sec, ps in by.items():
        key = sec if sec != "accuracy" else None
        if key:
            secs[key] = sum(p["seconds"] for p in ps)
    if "memory" in by:
        res["memory"] = by["memory"][0]["result"]
    if "accuracy" in by:
        seeds = by["accuracy"][0]["task"]["seeds"]
        acc = res.get("accuracy")
        if not acc or acc.get("seeds") != seeds:
            acc = {"seeds": seeds, "epochs": 0, "runs": {}, "data": {}}
        rows = {}
        for p in by["accuracy"]:
            t = p["task"]
            rows.setdefault((t["data"], t["method"]), {})[t["seed"]] = p
        for (ds, m), got in rows.items():
            if sorted(got) != sorted(seeds):
                continue
            acc["runs"].setdefault(ds, {})[m] = [got[s]["result"] for s in seeds]
            t, info = got[seeds[0]]["task"], got[seeds[0]]["result"]["data"]
            acc["data"][ds] = {k: info[k] for k in ("n_train", "n_test", "T", "n_in")}
            acc["data"][ds].update(samples=t["samples"], epochs=t["epochs"],
                                   desc=DESC[ds].format(src=info["source"]))
            secs[f"accuracy/{ds}"] = sum(p["seconds"] for p in by["accuracy"]
                                         if p["task"]["data"] == ds)
        acc["runs"] = {ds: {m: r[m] for m in METHODS if m in r} for ds, r in acc["runs"].items()}
        acc["epochs"] = max([0] + [d["epochs"] for d in acc["data"].values()])
        res["accuracy"] = acc
    if "bits" in by:
        t0 = by["bits"][0]["task"]
        got = {p["task"]["id"]: p["result"] for p in by["bits"]}
        want = {B.task_key(t["opt"], t["arith"], t["width"], t["seed"])
                for t in B.bits_tasks(t0["widths"], t0["seeds"])}
        if want <= set(got):
            res["bits"] = B.assemble_bits(got, t0["widths"], t0["seeds"], t0["epochs"],
                                          t0["samples"])
    if "extras" in by:
        seeds = by["extras"][0]["task"]["seeds"]
        got = {p["task"]["seed"]: p["result"] for p in by["extras"]}
        if set(seeds) <= set(got):
            res["extras"] = {"bn": [got[s]["bn"] for s in seeds],
                             "kd": [got[s]["kd"] for s in seeds]}
    return res


def _git_config_commit() -> str:
    try:
        import subprocess
        root = Path(__file__).resolve().parent.parent
        r = subprocess.run(["git", "log", "-1", "--format=%h", "--", "golden/"],
                           capture_output=True, text=True, cwd=root, timeout=10)
        dirty = subprocess.run(["git", "diff", "--quiet", "--", "golden/"], cwd=root,
                               timeout=10).returncode
        return (r.stdout.strip() or "?") + (" + uncommitted changes" if dirty else "")
    except Exception:
        return "?"


def _csv(value, allowed, name, ap):
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        ap.error(f"--{name} {value!r}: allowed a comma list of {', '.join(allowed)}")
    return items


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m studies.experiments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits only, few seeds/epochs")
    ap.add_argument("--json", default=None, help="the assembled results (merged, kept up to date)")
    ap.add_argument("--out", default=None,
                    help="where results.md and figures/ go (default docs/, out/quick with --quick)")
    ap.add_argument("--from-json", default=None, help="only re-render the report from a JSON")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--datasets", default=None,
                    help="comma list of " + ",".join(DATASETS) + " (default digits,mnist,nmnist; "
                         "--quick: digits)")
    ap.add_argument("--methods", default=None, help="comma list (default: all): " + ", ".join(METHODS))
    ap.add_argument("--seeds", default=None,
                    help="comma list of accuracy seeds (default 0,1,2; --quick: 0,1)")
    ap.add_argument("--cache", default=None, help=f"converted event files (default {CACHE})")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: every core)")
    ap.add_argument("--parts", default="out/study-parts", help="one JSON file per finished task")
    ap.add_argument("--rerun", action="store_true", help="run tasks whose part file exists again")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--list-tasks", action="store_true", help="print 'index id' per task, exit")
    g.add_argument("--task", type=int, default=None, help="run only task INDEX (array jobs)")
    g.add_argument("--merge", action="store_true", help="only assemble --parts and render")
    g.add_argument("--prepare", action="store_true", help="only load / convert the data sets")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    out = Path(a.out or ("out/quick" if a.quick else "docs"))
    if a.from_json:
        print(write_report(json.loads(Path(a.from_json).read_text()), out))
        return 0
    if a.jobs < 1:
        ap.error(f"--jobs {a.jobs}: must be >= 1")
    sections = _csv(a.sections, SECTIONS, "sections", ap)
    dsn = (_csv(a.datasets, DATASETS, "datasets", ap) if a.datasets else
           (["digits"] if a.quick else ["digits", "mnist", "nmnist"]))
    methods = _csv(a.methods, METHODS, "methods", ap) if a.methods else METHODS
    try:
        seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else None
    except ValueError:
        ap.error(f"--seeds {a.seeds!r}: allowed a comma list of integers")
    if seeds is not None and (not seeds or min(seeds) < 0):
        ap.error(f"--seeds {a.seeds!r}: allowed a comma list of integers >= 0")
    tasks = plan(sections, a.quick, dsn, methods, seeds)
    if a.list_tasks:
        for i, t in enumerate(tasks):
            print(i, t["id"])
        return 0
    if a.task is not None and not 0 <= a.task < len(tasks):
        ap.error(f"--task {a.task}: the selection has tasks 0..{len(tasks) - 1}")
    parts = Path(a.parts)
    parts.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, flush=True)     # noqa: E731
    if a.prepare or (a.task is None and not a.merge):
        needed = sorted({t["data"] for t in tasks if "data" in t}, key=DATASETS.index)
        for ds in needed:                      # converts nmnist once, before any worker
            t0 = time.perf_counter()
            load_dataset(ds, T, Path(a.cache) if a.cache else None)
            log(f"{ds} ready in {time.perf_counter() - t0:.0f} s")
        if a.prepare:
            return 0
    todo = [i for i, t in enumerate(tasks)
            if a.rerun or not (parts / f"{i}.json").exists()] if not a.merge else []
    if a.task is not None:
        todo = [a.task]

    def save_part(i, piece):
        tmp = parts / f".{i}.json.tmp"
        tmp.write_text(json.dumps(piece))
        tmp.replace(parts / f"{i}.json")

    t_start = time.perf_counter()
    if todo:
        log(f"{len(todo)} of {len(tasks)} task(s) to run, {min(a.jobs, len(todo))} process(es)")
    if a.task is not None or a.jobs == 1:
        for i in todo:
            save_part(i, run_task(tasks[i], a.cache))
            log(f"done {i} {tasks[i]['id']}")
    elif todo:
        with ProcessPoolExecutor(max_workers=min(a.jobs, len(todo))) as ex:
            futs = {ex.submit(run_task, tasks[i], a.cache): i for i in todo}
            for f in as_completed(futs):
                i = futs[f]
                save_part(i, f.result())
                log(f"done {i} {tasks[i]['id']} ({time.perf_counter() - t_start:.0f} s)")
    if a.task is not None:
        return 0
    pieces = {}
    for i, t in enumerate(tasks):
        p = parts / f"{i}.json"
        if p.exists():
            piece = json.loads(p.read_text())
            if piece["task"] == t:                 # a part of another selection is ignored
                pieces[t["id"]] = piece
    res = json.loads(Path(a.json).read_text()) if a.json and Path(a.json).exists() else {}
    res["meta"] = dict(res.get("meta", {}))
    res["meta"].update({
        "quick": a.quick, "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}",
        "overrides": BASE_OVERRIDES, "config_commit": _git_config_commit(), "jobs": a.jobs,
        "configs": {o: base_config(128, optimizer=o).to_dict() for o in ("bso", "tbso")}})
    res["meta"].pop("section_config", None)
    assemble(res, pieces)
    missing = len(tasks) - len(pieces)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    write_report(res, out)
    log(f"{len(pieces)} of {len(tasks)} task(s) assembled"
        + (f" ({missing} missing: rerun to complete)" if missing else "")
        + f" in {(time.perf_counter() - t_start) / 60:.1f} min -> {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
