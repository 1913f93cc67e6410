"""Reliability of the library readers against hostile, truncated and extreme inputs (issue 11 §2–§4, §6).

* Checkpoints: a pickle whose ``__reduce__`` would run a shell command is refused with one message by every
  reader (``io_utils.safe_torch_load``, DINOv3 ``read_checkpoint``, MedNeXt ``upkern``), whatever torch's
  wording or the pickle protocol, and never runs; torch's advice to retry with ``weights_only=False`` is
  never repeated.
* Images: a truncated ``.nii.gz`` / ``.nii`` / TIFF / ``.v3draw`` (cut at several points) or a gzip with a
  bad CRC is refused naming the file, never read with zeros in place of the missing voxels.
* SWC: a UTF-8 BOM is dropped; negative ids, coordinates beyond ±1e9 or not finite, and ids beyond int64
  are refused naming file and line.
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np
import pytest
import torch

from nnunetv2_neurino.data import v3d
from nnunetv2_neurino.data.readers import read_image, write_nifti, write_tiff
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import safe_torch_load
from nnunetv2_neurino.networks.inflation import read_checkpoint
from nnunetv2_neurino.networks.upkern import load_mednext_weights
from nnunetv2_neurino.swc import read_swc


class _RunsAShellCommand:
    """Unpickling this calls ``os.system("touch MARKER")``: the attack a malicious checkpoint carries."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


READERS = {"safe_torch_load": safe_torch_load, "read_checkpoint": read_checkpoint,
           "load_mednext_weights": load_mednext_weights}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_pickled_code_is_refused_with_one_message_and_never_runs(reader, tmp_path):
    marker = tmp_path / "code_ran"
    p = tmp_path / "evil.pth"
    torch.save({"network_weights": {"w": torch.zeros(2)}, "payload": _RunsAShellCommand(str(marker))}, p)
    with pytest.raises(NeurinoError) as e:
        reader(p)
    msg = str(e.value)
    # torch >= 2.6 names it "unsupported GLOBAL posix.system whose module posix is blocked"
    expected = (rf"refused: {re.escape(str(p))} contains pickled objects \(GLOBAL (posix|nt)\.system\), "
                "which this tool never unpickles; re-save the state dict as plain tensors or safetensors")
    assert re.fullmatch(expected, msg), msg
    assert "weights_only" not in msg and "likely succeed" not in msg and "safe_globals" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__   # torch's advice is not chained either
    assert not marker.exists()


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_old_torch_wording_of_an_unsafe_global_gives_the_same_message(reader, tmp_path):
    # torch words an allow-listable class as "Unsupported global: GLOBAL argparse.Namespace was not an allowed
    # global by default" (the only wording before 2.6).
    p = tmp_path / "namespace.pth"
    torch.save({"args": argparse.Namespace(lr=1.0), "network_weights": {"w": torch.zeros(2)}}, p)
    with pytest.raises(NeurinoError) as e:
        reader(p)
    assert str(e.value) == (f"refused: {p} contains pickled objects (GLOBAL argparse.Namespace), which this "
                            "tool never unpickles; re-save the state dict as plain tensors or safetensors")


def test_pickled_code_behind_protocol_4_opcodes_is_recognised(tmp_path):
    # with protocol 4 torch's weights-only unpickler stops at FRAME ("Unsupported operand 149") before the
    # GLOBAL; the file still carries code and must get the refusal, not "corrupt".
    import pickle

    marker = tmp_path / "code_ran"
    p = tmp_path / "evil4.pth"
    torch.save({"w": torch.zeros(2), "payload": _RunsAShellCommand(str(marker))}, p, pickle_protocol=4)
    with pytest.raises(NeurinoError, match=r"^refused: .* contains pickled objects \(GLOBAL (posix|nt)\.sys"):
        safe_torch_load(p)
    p.write_bytes(pickle.dumps({"payload": _RunsAShellCommand(str(marker))}, protocol=4))   # legacy, no zip
    with pytest.raises(NeurinoError, match=r"^refused: .* \(GLOBAL (posix|nt)\.system\)"):
        safe_torch_load(p)
    assert not marker.exists()


def test_corrupt_checkpoints_name_the_file_without_torchs_unsafe_advice(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(1000.0)}, good)
    assert torch.equal(safe_torch_load(good)["w"], torch.arange(1000.0))
    data = good.read_bytes()
    for name, payload in (("truncated.pth", data[: len(data) // 2]), ("garbage.pth", b"not a checkpoint")):
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(NeurinoError) as e:
            safe_torch_load(p)
        msg = str(e.value)
        assert msg.startswith(f"{p}: corrupt") and "weights_only" not in msg and "likely succeed" not in msg


# ------------------------------------------------------------------------------------ truncated images
def _stack() -> np.ndarray:
    """(z, y, x) = (12, 32, 32) uint8 noise: hardly compressible, so a cut always falls inside the data."""
    return np.random.default_rng(0).integers(1, 255, size=(12, 32, 32), dtype=np.uint8)


def _write_tiff_plain(path, image):
    import tifffile

    tifffile.imwrite(path, image)          # multi-page, not ImageJ: one page per z slice


WRITERS = {"nii.gz": write_nifti, "nii": write_nifti, "tif": write_tiff, "plain.tif": _write_tiff_plain,
           "v3draw": lambda p, a: v3d.write_v3draw(p, a)}


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.98])
@pytest.mark.parametrize("kind", WRITERS)
def test_truncated_image_is_refused_naming_the_file(kind, fraction, tmp_path):
    image = _stack()
    full = tmp_path / f"full.{kind}"
    WRITERS[kind](full, image)
    np.testing.assert_array_equal(read_image(full)[0], image)      # the intact file reads back exactly
    data = full.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(NeurinoError, match=re.escape(str(cut))):
        read_image(cut)


def test_gzip_with_an_altered_byte_is_refused(tmp_path):
    p = tmp_path / "img.nii.gz"
    write_nifti(p, _stack())
    data = bytearray(p.read_bytes())
    data[-6] ^= 0xFF      # inside the CRC-32 of the gzip trailer: the data decompress, the check fails
    p.write_bytes(bytes(data))
    with pytest.raises(NeurinoError, match=re.escape(str(p)) + ".*gzip"):
        read_image(p)


# ------------------------------------------------------------------------------------------------ SWC
_CHAIN = "1 3 0 0 0 1 -1\n2 3 1 0 0 1 1\n3 3 2 0 0 1 2\n"


def test_swc_with_a_byte_order_mark_reads_like_without(tmp_path):
    p = tmp_path / "bom.swc"
    p.write_bytes(b"\xef\xbb\xbf" + _CHAIN.encode())
    tree, plain = read_swc(p), read_swc(_CHAIN)
    np.testing.assert_array_equal(tree.ids, plain.ids)
    np.testing.assert_array_equal(tree.parent_index, [-1, 0, 1])   # the first row is not lost to the BOM
    np.testing.assert_array_equal(tree.xyz, plain.xyz)


@pytest.mark.parametrize("row, match", [
    ("-4 3 3 0 0 1 3", r"bad\.swc:4: negative node id -4"),
    ("4 3 3 0 0 1 -2", r"bad\.swc:4: negative parent id -2"),
    ("4 3 1e200 0 0 1 3", r"bad\.swc:4: column 'x' = 1e200 is beyond ±1e\+09"),
    ("4 3 0 -2e9 0 1 3", r"bad\.swc:4: column 'y' = -2e9 is beyond"),
    ("4 3 0 0 nan 1 3", r"bad\.swc:4: column 'z' is not finite"),
    ("4 3 0 0 0 inf 3", r"bad\.swc:4: column 'radius' is not finite"),
    ("99999999999999999999 3 3 0 0 1 3", r"bad\.swc:4: column 'n' = 99999999999999999999 does not fit a 64"),
    ("4 3 3 0 0 1 1e30", r"bad\.swc:4: column 'parent' = 1e30 does not fit a 64-bit integer"),
])
def test_swc_rows_out_of_range_are_refused_naming_file_and_line(row, match, tmp_path):
    p = tmp_path / "bad.swc"
    p.write_text(_CHAIN + row + "\n")
    with pytest.raises(NeurinoError, match=match):
        read_swc(p)


def test_swc_at_the_stated_limits_is_read(tmp_path):
    tree = read_swc(_CHAIN + f"{2 ** 63 - 1} 3 1e9 -1e9 0 1 3\n")
    assert int(tree.ids[-1]) == 2 ** 63 - 1 and tree.parent_index[-1] == 2
    np.testing.assert_array_equal(tree.xyz[-1], [1e9, -1e9, 0])
