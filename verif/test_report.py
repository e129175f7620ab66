"""``python -m hdl_gen report`` from stored figures (no build, no simulation): the summary table
has a row per board and architecture with the provenance of its figures, the anchors in the
same table, and the JSON it writes can be read back as the next run's ``--reuse``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hdl_gen.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_report_from_stored_figures(tmp_path):
    doc, js = tmp_path / "performance.md", tmp_path / "performance.json"
    args = ["report", "--no-build", "--no-sim", "--arch", "parallel", "--out", str(tmp_path / "b"),
            "--reuse", str(ROOT / "docs" / "performance.json"), "--doc", str(doc),
            "--json", str(js)]
    assert main(args) == 0
    text = doc.read_text()
    table = text[text.index("## Summary"):text.index("## The flow")]
    stored = json.loads((ROOT / "docs" / "performance.json").read_text())["boards"]
    for key, rep in stored.items():
        board, arch = key.split("/")
        row = next(r for r in table.splitlines() if r.startswith(f"| **this work, {arch}** |")
                   and rep["config"]["layers"][0] == int(r.split("|")[4].split("-")[0]))
        assert rep["provenance"] in row
    for anchor in ("tinyODIN", "ODIN (Frenkel 2019)", "Lattice BNN accelerator IP", "Flexi-NeurA"):
        assert f"| {anchor} |" in table
    figures = json.loads(js.read_text())
    assert set(figures["boards"]) == {"icebreaker/parallel", "ulx3s-85f/parallel"}
    assert all(r["provenance"] for r in figures["boards"].values())
    # the written figures serve as the next run's stored figures and give the same document
    assert main(args[:-4] + ["--reuse", str(js), "--doc", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == text
