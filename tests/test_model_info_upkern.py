"""`neurino model-info` (JSON against the paper's table 11), MedNeXt sizes / kernels / errors, and UpKern
(`neurino upkern`, read back by nnU-Net's own ``load_pretrained_weights``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.mednext import build_mednext
from nnunetv2_neurino.networks.mednext_blocks import MedNeXtBlock, MedNeXtDownBlock
from nnunetv2_neurino.networks.neurino import build_neurino
from nnunetv2_neurino.networks.upkern import identify_mednext, upkern_state_dict

torch.set_num_threads(2)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- model-info


def test_model_info_json_matches_table_11(capsys):
    code, out, _ = run_cli(capsys, "model-info", "--json", "--no-fvcore")
    assert code == 0
    info = json.loads(out)
    t, s, m = info["NeurINO-T"], info["NeurINO-S"], info["MedNeXt-L"]
    # table 11 counts include 1 + 1,536 released parameters the 3D forward does not use (see test_networks.py)
    assert (t["params"], t["params_rgb_stem"]) == (39_194_891 - 1537, 39_207_179 - 1537)
    assert (s["params"], s["params_rgb_stem"]) == (61_506_827 - 1537, 61_519_115 - 1537)
    assert m["params"] == pytest.approx(61_971_147, rel=1e-4) and m["params_rgb_stem"] is None
    assert t["gflops"] == pytest.approx(43.49, abs=0.01)
    assert s["gflops"] == pytest.approx(54.88, abs=0.01)
    assert m["gflops"] == pytest.approx(61.05, abs=0.01)
    assert info["NeurINO-T-stride4"]["params"] == pytest.approx(39.20e6, rel=1e-3)
    assert all(v["gflops_fvcore_total"] is None for v in info.values())
    assert {"MedNeXt-S", "MedNeXt-B", "MedNeXt-M", "MedNeXt-L-k5"} <= set(info)
    sizes = [info[f"MedNeXt-{k}"]["params"] for k in "SBML"]
    assert sizes == sorted(sizes)  # S < B < M < L


def test_model_info_fvcore_total_and_patch_scaling(capsys):
    """At 32³ (8× fewer voxels than 64³) conv+linear is ~1/8 of the 64³ figure (not exactly: up-blocks work at
    2n-1 before padding); fvcore's total adds the norms on top of conv+linear."""
    code, out, _ = run_cli(capsys, "model-info", "--json", "--patch", "32", "32", "32", "--arch", "NeurINO-T")
    assert code == 0
    info = json.loads(out)
    assert list(info) == ["NeurINO-T"]
    t = info["NeurINO-T"]
    assert t["gflops"] * 8 == pytest.approx(43.49, rel=0.05)  # measured 42.36
    assert t["gflops"] < t["gflops_fvcore_total"] < t["gflops"] * 1.02


def test_model_info_table_and_errors(capsys):
    code, out, _ = run_cli(capsys, "model-info", "--no-fvcore", "--arch", "MedNeXt-L", "--arch", "neurino-t")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["model", "params"]
    row = next(line for line in lines if line.startswith("MedNeXt-L"))
    assert "61,971,402" in row and "61.05" in row and "–" in row
    assert any(line.startswith("NeurINO-T ") and "39,193,354" in line for line in lines)
    code, _, err = run_cli(capsys, "model-info", "--arch", "UNETR")
    assert code == 2 and "registered: NeurINO-T" in err
    code, _, err = run_cli(capsys, "model-info", "--no-fvcore", "--patch", "40", "64", "64",
                           "--arch", "NeurINO-T")
    assert code == 2 and "divisible" in err and "16 16 16" in err


# ---------------------------------------------------------------- MedNeXt


def dw_channels(net) -> int:
    return sum(m.weight.shape[0] for m in net.modules()
               if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d) and m.groups > 1)


def test_mednext_sizes_kernels_and_grn():
    with torch.device("meta"):
        k3, k5 = build_mednext("B", 3), build_mednext("B", 5)
        no_grn = build_mednext("B", 3, grn=False)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(k5) - n(k3) == dw_channels(k3) * (5**3 - 3**3)  # only the depthwise kernels grow
    grn_channels = sum(m.gamma.shape[1] for m in k3.modules() if type(m).__name__ == "GRN")
    assert n(k3) - n(no_grn) == 2 * grn_channels and grn_channels > 0
    # MedNeXt (Roy et al. 2023): MedNeXt-M blocks [3,4,4,4,4,4,4,4,3]; L's down block after level 0
    # uses level 1's expansion (4): conv2 32 -> 128
    with torch.device("meta"):
        m, big = build_mednext("M"), build_mednext("L")
    assert [len(s) for s in m.encoder.stages] == [3, 4, 4, 4] and len(m.decoder.bottleneck) == 4
    assert [len(m.decoder.stages[i]) for i in (3, 2, 1, 0)] == [4, 4, 4, 3]
    assert big.encoder.downs[0].conv2.out_channels == 128 and big.decoder.ups[0].conv2.out_channels == 64 * 3


def test_mednext_forward_shapes_and_strides():
    net = build_mednext("S", 5, deep_supervision=True, strides=[(1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)])
    with torch.no_grad():
        outs = net.eval()(torch.randn(1, 1, 4, 32, 16))
    assert [tuple(o.shape[1:]) for o in outs] == [(2, 4, 32, 16), (2, 4, 16, 8), (2, 2, 8, 4), (2, 1, 4, 2),
                                                  (2, 1, 2, 1)]
    assert net.output_strides[-1] == (4, 16, 16)


def test_mednext_errors_name_the_allowed_values():
    with pytest.raises(NeurinoError, match="valid: S, B, M, L"):
        build_mednext("XL")
    with pytest.raises(NeurinoError, match="valid: 3, 5"):
        build_mednext("L", kernel_size=7)
    with pytest.raises(NeurinoError, match="each 1 or 2"):
        build_mednext("S", strides=[(3, 2, 2)] * 4)


# ---------------------------------------------------------------- UpKern


def nnunet_checkpoint(net, trainer="nnUNetTrainerMedNeXt"):
    """What nnUNetTrainer.save_checkpoint writes (values of the same types)."""
    return {"network_weights": net.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
            "grad_scaler_state": None,
            "logging": {"mean_fg_dice": [0.5, 0.6], "ema_fg_dice": [np.float64(0.5)],
                        "epoch_end_timestamps": [1.0]},
            "_best_ema": np.float64(0.6), "current_epoch": 2,
            "init_args": {"plans": {"dataset_name": "Dataset1_X"}, "configuration": "3d_fullres", "fold": 0,
                          "dataset_json": {"labels": {"background": 0, "neurite": 1}},
                          "device": torch.device("cpu")},
            "trainer_name": trainer, "inference_allowed_mirroring_axes": (0, 1, 2)}


def test_upkern_resizes_only_depthwise_kernels():
    torch.manual_seed(0)
    k3 = build_mednext("S", 3, grn=True, in_channels=2, num_classes=3)
    sd3 = k3.state_dict()
    assert identify_mednext(sd3) == {"size": "S", "kernel_size": 3, "grn": True, "norm": "group",
                                     "in_channels": 2, "num_classes": 3}
    sd5, cfg = upkern_state_dict(sd3, 5)
    target = build_mednext("S", 5, grn=True, in_channels=2, num_classes=3).state_dict()
    assert {k: v.shape for k, v in sd5.items()} == {k: v.shape for k, v in target.items()}
    resized = [k for k in sd5 if sd5[k].shape != sd3[k].shape]
    assert resized and all(k.endswith("conv1.weight") and sd3[k].shape[1:] == (1, 3, 3, 3) for k in resized)
    assert len(resized) == dw_channels_count(k3)
    assert all(torch.equal(sd5[k], sd3[k]) for k in sd5 if k not in resized)
    # trilinear resizing reproduces a constant kernel exactly; corners and centre are kept
    # (align_corners=False maps output voxel 0 to input -0.2, clamped to 0, and output 2 to input 1)
    const = {**sd3, resized[0]: torch.full_like(sd3[resized[0]], 0.25)}
    assert torch.allclose(upkern_state_dict(const)[0][resized[0]], torch.tensor(0.25))
    w, w3 = sd5[resized[1]], sd3[resized[1]]
    assert torch.allclose(w[..., 2, 2, 2], w3[..., 1, 1, 1])
    assert torch.allclose(w[..., 0, 0, 0], w3[..., 0, 0, 0])
    assert torch.allclose(w[..., 4, 4, 4], w3[..., 2, 2, 2])


def dw_channels_count(net) -> int:
    return sum(1 for m in net.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
               and m.groups > 1)


def smooth_volume(n: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.arange(n, dtype=torch.float32) - n / 2
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    gen = torch.Generator().manual_seed(seed)
    amp = torch.randn(1, channels, 1, 1, 1, generator=gen)
    off = 0.1 * torch.randn(1, channels, 1, 1, 1, generator=gen)
    return torch.exp(-((z - 2) ** 2 + y**2 + (x + 3) ** 2) / (2 * (n / 5) ** 2))[None, None] * amp + off


@pytest.mark.parametrize("block_cls", [MedNeXtBlock, MedNeXtDownBlock])
def test_upkern_block_keeps_its_response_to_a_smooth_input(block_cls):
    """One block with low-pass depthwise kernels (as trained kernels mostly are): on a smooth input the k5
    block built by UpKern gives the k3 block's output within 15 % (relative L2, interior). Not exact: the
    resampled kernel filters at a 5/3 larger scale and gains ≈4.6× (GroupNorm removes the gain, not the
    scale)."""
    torch.manual_seed(3)
    c = 16
    out = c if block_cls is MedNeXtBlock else 2 * c
    b3, b5 = (block_cls(c, out, 2, k, True, "group").eval() for k in (3, 5))
    with torch.no_grad():
        g = torch.arange(3, dtype=torch.float32) - 1
        d2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
        sigma = torch.empty(c, 1, 1, 1, 1).uniform_(0.6, 1.5)
        b3.conv1.weight.copy_(torch.exp(-d2 / (2 * sigma**2)) * torch.empty(c, 1, 1, 1, 1).uniform_(0.2, 1.0))
        b3.grn.gamma.uniform_(-0.5, 0.5)
        b3.grn.beta.uniform_(-0.5, 0.5)
    sd3 = b3.state_dict()
    sd5 = {k: F.interpolate(v, size=(5, 5, 5), mode="trilinear") if v.shape != b5.state_dict()[k].shape else v
           for k, v in sd3.items()}  # the block-level UpKern rule (upkern_state_dict needs a whole MedNeXt)
    b5.load_state_dict(sd5)
    x = smooth_volume(32, c, seed=1)
    with torch.no_grad():
        o3, o5 = b3(x), b5(x)
    inner = (slice(None), slice(None)) + (slice(3, -3),) * 3
    assert float((o5 - o3)[inner].norm() / o3[inner].norm()) < 0.15


def test_upkern_cli_output_loads_with_nnunet_and_stays_close(tmp_path, capsys):
    """`neurino upkern` on an nnU-Net checkpoint → nnU-Net's load_pretrained_weights accepts the file for a
    kernel-5 MedNeXt (other label set: heads are skipped). Whole network on a smooth 32³ input: the UpKern k5
    model stays much closer to the k3 model than a k5 model with fresh weights (measured ~0.46 vs ~1.9
    relative L2). It cannot be equal: besides the larger filter scale, stride-2 transposed kernels of size 5
    split their taps 3/2 between even and odd outputs instead of 1/2, and at 32³ the deep levels (4³, 2³)
    are all border, where 2 instead of 1 zero-padded voxels enter."""
    torch.manual_seed(0)
    k3 = build_mednext("S", 3, grn=True, deep_supervision=False).eval()
    with torch.no_grad():
        for name, p in k3.named_parameters():
            if ".grn." in name:
                p.uniform_(-0.5, 0.5)  # GRN starts at 0 (identity); make it matter
    src = tmp_path / "checkpoint_final.pth"
    torch.save(nnunet_checkpoint(k3), src)
    out = tmp_path / "k5_init.pth"
    code, stdout, _ = run_cli(capsys, "upkern", str(src), "-o", str(out))
    assert code == 0 and out.is_file() and "MedNeXt-S kernel 3 -> 5" in stdout
    k5 = build_mednext("S", 5, grn=True, deep_supervision=False, num_classes=4).eval()
    fresh = {k: v.clone() for k, v in k5.state_dict().items()}
    load_pretrained_weights(k5, str(out))
    sd5, sd3 = k5.state_dict(), k3.state_dict()
    for k in sd5:
        if ".seg_layers." in k:
            assert torch.equal(sd5[k], fresh[k])
        elif sd5[k].shape == sd3[k].shape:
            assert torch.equal(sd5[k], sd3[k])
        else:
            assert torch.allclose(sd5[k], F.interpolate(sd3[k], size=(5, 5, 5), mode="trilinear"))
    same_heads = build_mednext("S", 5, grn=True, deep_supervision=False).eval()
    rand5 = build_mednext("S", 5, grn=True, deep_supervision=False).eval()
    same_heads.load_state_dict(torch.load(out, weights_only=True)["network_weights"])
    x = smooth_volume(32)
    with torch.no_grad():
        o3, o5, orand = k3(x), same_heads(x), rand5(x)
    err, err_rand = (float((o - o3).norm() / o3.norm()) for o in (o5, orand))
    assert err < 0.6 and err < 0.4 * err_rand
    # a plain state dict works too; an existing output needs --force
    plain = tmp_path / "k3_state.pth"
    torch.save(k3.state_dict(), plain)
    code, _, err_text = run_cli(capsys, "upkern", str(plain), "-o", str(out))
    assert code == 2 and "exists" in err_text
    assert run_cli(capsys, "upkern", str(plain), "-o", str(out), "--force")[0] == 0


def test_upkern_refuses_other_architectures_and_bad_files(tmp_path, capsys):
    with torch.device("meta"):
        neurino = build_neurino("tiny")
    p = tmp_path / "neurino.pth"
    torch.save(nnunet_checkpoint(neurino.to_empty(device="cpu"), "nnUNetTrainerNeurINO"), p)
    code, _, err = run_cli(capsys, "upkern", str(p), "-o", str(tmp_path / "o.pth"))
    assert code == 2 and str(p) in err and "not a MedNeXt" in err and "'encoder.downsample_layers" in err
    k5 = tmp_path / "k5.pth"
    torch.save(build_mednext("S", 5).state_dict(), k5)
    code, _, err = run_cli(capsys, "upkern", str(k5), "-o", str(tmp_path / "o.pth"))
    assert code == 2 and "already has kernel 5" in err
    sd = build_mednext("S", 3).state_dict()
    sd["decoder.stages.0.0.conv2.weight"] = torch.zeros(7, 32, 1, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(NeurinoError, match="closest MedNeXt-S .*decoder.stages.0.0.conv2.weight"):
        upkern_state_dict(torch.load(bad, weights_only=True), source=str(bad))
    code, _, err = run_cli(capsys, "upkern", str(tmp_path / "absent.pth"), "-o", str(tmp_path / "o.pth"))
    assert code == 2 and "not found" in err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    code, _, err = run_cli(capsys, "upkern", str(junk), "-o", str(tmp_path / "o.pth"))
    assert code == 2 and str(junk) in err
    assert not (tmp_path / "o.pth").exists()
