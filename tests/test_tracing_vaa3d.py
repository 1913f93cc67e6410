"""Vaa3D adapter, exercised with a stand-in `vaa3d` executable that records its argv and writes an SWC."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.v3d import read_v3draw
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import read_swc
from nnunetv2_neurino.tracing.vaa3d import DEFAULT_TEMPLATES, build_command, trace_with_vaa3d

STAND_IN = """#!{python}
import json, os, sys
argv = sys.argv[1:]
with open({log!r}, "w") as f:
    json.dump(argv, f)
inp = argv[argv.index("-i") + 1]
out = argv[argv.index("-o") + 1] if "-o" in argv else inp + "_neutube.swc"
with open(out, "w") as f:
    f.write("# stand-in\\n1 3 1 2 3 1 -1\\n2 3 4 2 3 1 1\\n")
sys.exit(int(os.environ.get("FAKE_VAA3D_STATUS", "0")))
"""


@pytest.fixture()
def fake_vaa3d(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "vaa3d"
    exe.parent.mkdir()
    log = tmp_path / "argv.json"
    exe.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("VAA3D_BIN", str(exe))
    for k in ("APP2", "NEUTUBE", "SMARTTRACING"):
        monkeypatch.delenv(f"NEURINO_VAA3D_{k}_CMD", raising=False)
    return exe, log


def test_app2_command_line_and_input_image(fake_vaa3d, tmp_path):
    exe, log = fake_vaa3d
    mask = np.zeros((5, 6, 7), bool)
    mask[2, 3, 1:6] = True
    work = tmp_path / "work"
    tree = trace_with_vaa3d(mask, "vaa3d-app2", workdir=work)
    argv = json.loads(log.read_text())
    inp, out = str(work / "input.v3draw"), str(work / "output.swc")
    # vaa3d -x vn2 -f app2 -i IMAGE -o OUT.swc -p NULL 0 <bg> 1 1 0 0 <len>, 1 and 1 on masks
    assert argv == ["-x", "vn2", "-f", "app2", "-i", inp, "-o", out, "-p", "NULL", "0", "1", "1", "1", "0",
                    "0", "1"]
    img = read_v3draw(work / "input.v3draw")
    np.testing.assert_array_equal(img.reshape(mask.shape), np.where(mask, 255, 0))
    np.testing.assert_allclose(tree.xyz, [[1, 2, 3], [4, 2, 3]])


def test_probability_threshold_and_template_override(fake_vaa3d, tmp_path, monkeypatch):
    exe, log = fake_vaa3d
    prob = np.full((4, 4, 4), 0.25, np.float32)
    trace_with_vaa3d(prob, "vaa3d-app2", is_probability=True, threshold=0.3, length_threshold=5)
    argv = json.loads(log.read_text())
    assert argv[-6] == str(round(0.3 * 255)) and argv[-1] == "5"
    # NeuTube build whose plugin ignores -o and names its own output: the newest .swc is taken
    monkeypatch.setenv("NEURINO_VAA3D_NEUTUBE_CMD", "{vaa3d} -x neuTube -f neutube_trace -i '{input}'")
    tree = trace_with_vaa3d(prob > 0.1, "vaa3d-neutube")
    assert json.loads(log.read_text())[:4] == ["-x", "neuTube", "-f", "neutube_trace"]
    assert tree.n == 2
    cmd = build_command("vaa3d-smarttracing", "V", "in put.v3draw", "o.swc")
    assert DEFAULT_TEMPLATES["vaa3d-smarttracing"].startswith("{vaa3d} -x SmartTracing")
    # a path with a space stays one argument: templates are split before filling, never run by a shell
    assert cmd == ["V", "-x", "SmartTracing", "-f", "smartTrace", "-i", "in put.v3draw", "-o", "o.swc"]


def test_failures_are_neurino_errors(fake_vaa3d, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_VAA3D_STATUS", "3")
    with pytest.raises(NeurinoError, match="exited with status 3"):
        trace_with_vaa3d(np.ones((3, 3, 3), bool), "vaa3d-app2")
    monkeypatch.delenv("FAKE_VAA3D_STATUS")
    monkeypatch.setenv("NEURINO_VAA3D_APP2_CMD", "{vaa3d} -i {input} -o {nonsense}")
    with pytest.raises(NeurinoError, match="NEURINO_VAA3D_APP2_CMD"):
        trace_with_vaa3d(np.ones((3, 3, 3), bool), "vaa3d-app2")


def test_missing_vaa3d_explains_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("VAA3D_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))                       # no vaa3d anywhere
    with pytest.raises(NeurinoError, match=r"vaa3d\.org.*VAA3D_BIN"):
        trace_with_vaa3d(np.ones((3, 3, 3), bool), "vaa3d-app2")
    np.save(tmp_path / "m.npy", np.ones((3, 3, 3), np.uint8))
    args = ["trace", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.swc"), "--tracer", "vaa3d-app2"]
    assert main(args) == 2
    assert not (tmp_path / "m.swc").exists()


def test_cli_runs_vaa3d_tracer(fake_vaa3d, tmp_path):
    np.save(tmp_path / "m.npy", np.ones((3, 3, 3), np.uint8))
    args = ["trace", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.swc"), "--tracer", "vaa3d-app2"]
    assert main(args) == 0
    np.testing.assert_allclose(read_swc(tmp_path / "m.swc").xyz, [[1, 2, 3], [4, 2, 3]])
    assert os.path.exists(fake_vaa3d[1])


def test_cli_vaa3d_refuses_root_and_applies_step(fake_vaa3d, tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.ones((3, 3, 3), np.uint8))
    base = ["trace", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.swc"), "--tracer", "vaa3d-app2"]
    assert main(base + ["--root", "1", "1", "1"]) == 2
    assert "built-in tracer only" in capsys.readouterr().err and not (tmp_path / "m.swc").exists()
    assert main(base + ["--step", "5", "--prune", "10"]) == 0
    # a two-node chain: root and tip are always kept; prune never removes a whole unbranched tree
    np.testing.assert_allclose(read_swc(tmp_path / "m.swc").xyz, [[1, 2, 3], [4, 2, 3]])
