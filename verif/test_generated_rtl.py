"""The committed rtl/ is what ``python -m hdl_gen`` generates, and its Verilog matches the manifest.

* regenerate into a temporary folder: ``core.v`` and ``core.json`` must be byte-identical to
  rtl/ (run ``python -m hdl_gen`` and commit after any change to hdl_gen/ or golden/config.py);
* parse rtl/core.v with pyverilog (after removing ``(* ... *)`` attributes, which pyverilog
  cannot parse; toolchain reference section 5): the module list and the top's ports (name,
  direction, width) must equal the manifest's.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL = ROOT / "rtl"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    from hdl_gen.__main__ import main

    out = tmp_path_factory.mktemp("rtl")
    assert main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["core.v", "core.json"])
def test_rtl_is_regenerated_identically(regenerated, name):
    committed = (RTL / name).read_bytes()
    fresh = (regenerated / name).read_bytes()
    assert committed == fresh, (f"rtl/{name} differs from `python -m hdl_gen` output: "
                                "regenerate it and commit")


def test_verilog_matches_manifest(tmp_path):
    from pyverilog.vparser import ast as vast
    from pyverilog.vparser.parser import parse

    man = json.loads((RTL / "core.json").read_text())
    text = re.sub(r"\(\*.*?\*\)", "", (RTL / "core.v").read_text(), flags=re.S)
    src = tmp_path / "core_noattr.v"
    src.write_text(text)
    tree, _ = parse([str(src)], debug=False, outputdir=str(tmp_path))
    mods = {m.name: m for m in tree.description.definitions if isinstance(m, vast.ModuleDef)}
    assert sorted(mods) == sorted(man["modules"])
    top = mods[man["top"]]
    ports = {}
    for item in top.items:
        if isinstance(item, vast.Decl):
            for dcl in item.list:
                if isinstance(dcl, (vast.Input, vast.Output)):
                    w = dcl.width
                    width = 1 if w is None else int(w.msb.value) - int(w.lsb.value) + 1
                    ports[dcl.name] = {"name": dcl.name, "width": width,
                                       "dir": "input" if isinstance(dcl, vast.Input)
                                       else "output"}
    listed = [p.name for p in top.portlist.ports]
    assert sorted(listed) == sorted(ports), "port list and port declarations disagree"
    expect = {p["name"]: p for p in man["ports"]}
    assert ports == expect
