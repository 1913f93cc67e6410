"""DINOv3 ConvNeXt 2D checkpoints → the inflated 3D encoder (the paper's supplement §9).

* Inflation equivalence against timm's 2D ``convnext_tiny`` (random weights, no hub access): a volume that
  is constant along depth gives, in every depth slice of every stage output, timm's 2D stage output.
* Meta, timm and HF transformers key layouts (the renamings below are written from the three
  projects' published key names, not from the package), as
  ``.pth`` and ``.safetensors``, load to identical 3D weights.
* Bad files: errors name the file and the first offending key; pickles of non-tensors are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.convnext3d import ConvNeXt3DEncoder
from nnunetv2_neurino.networks.inflation import (
    inflate_conv2d_to_3d,
    load_dinov3_into_encoder,
    load_dinov3_state_dict,
)

timm = pytest.importorskip("timm")
torch.set_num_threads(2)
REL_TOL = 1e-5  # float32 sums in a different order: observed ~1e-6


@pytest.fixture(scope="module")
def model2d():
    """timm ConvNeXt-T with random weights; layer scales, norm affines and biases randomised so every block,
    norm and bias changes the result (timm initialises gamma to 1e-6, which would make blocks
    near-identities, and biases to 0, under which LayerNorm hides a rescaled depthwise response)."""
    torch.manual_seed(0)
    m = timm.create_model("convnext_tiny", pretrained=False, num_classes=0).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.2, 0.6)
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
    return m


@pytest.fixture(scope="module")
def timm_sd(model2d):
    return {k: v.detach().clone() for k, v in model2d.state_dict().items()}


def to_meta_layout(sd: dict) -> dict:
    """timm → Meta names (as in Meta's DINOv3 release), with Meta's ``norms.3`` alias of the final norm."""
    out = {}
    for k, v in sd.items():
        k2 = re.sub(r"^stem\.(\d)\.", r"downsample_layers.0.\1.", k)
        k2 = re.sub(r"^stages\.(\d)\.downsample\.(\d)\.", r"downsample_layers.\1.\2.", k2)
        k2 = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", r"stages.\1.\2.", k2)
        k2 = (k2.replace(".conv_dw.", ".dwconv.").replace(".mlp.fc1.", ".pwconv1.")
              .replace(".mlp.fc2.", ".pwconv2."))
        k2 = re.sub(r"^head\.norm\.", "norm.", k2)
        out[k2] = v
        if k2.startswith("norm."):
            out["norms.3." + k2[5:]] = v
    return out


def to_hf_layout(sd: dict) -> dict:
    """timm → HF transformers DINOv3 ConvNeXt names (as in transformers' DINOv3 ConvNeXt)."""
    out = {}
    for k, v in sd.items():
        k2 = re.sub(r"^head\.norm\.", "layer_norm.", k)
        k2 = re.sub(r"^stem\.(\d)\.", r"stages.0.downsample_layers.\1.", k2)
        k2 = re.sub(r"^stages\.(\d)\.downsample\.(\d)\.", r"stages.\1.downsample_layers.\2.", k2)
        k2 = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", r"stages.\1.layers.\2.", k2)
        k2 = (k2.replace(".conv_dw.", ".depthwise_conv.").replace(".norm.", ".layer_norm.")
              .replace(".mlp.fc1.", ".pointwise_conv1.").replace(".mlp.fc2.", ".pointwise_conv2."))
        out[k2] = v
    return out


def save(sd: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def timm_file(timm_sd, tmp_path_factory):
    return save(timm_sd, tmp_path_factory.mktemp("w") / "convnext_tiny_timm.pth")


def timm_stage_outputs(model2d, image: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        x = model2d.stem(image)
        outs = []
        for stage in model2d.stages:
            x = stage(x)
            outs.append(x)
    return outs


def encoder_3d(path: Path, in_channels: int, inflation: str) -> ConvNeXt3DEncoder:
    enc = ConvNeXt3DEncoder("tiny", in_channels=in_channels, stem_stride=4).eval()
    load_dinov3_into_encoder(enc, path, "tiny", inflation)
    return enc


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


DEPTH, SIZE = 32, 32


@pytest.mark.parametrize("in_channels", [3, 1])
def test_center_inflation_equals_2d_model_on_every_slice(model2d, timm_file, in_channels):
    """I3D-inflation property: stride-4 stem, centre inflation, volume constant along depth (depth 32):
    every depth slice of each of the 4 stage outputs equals timm's 2D stage output. in_channels=1: the 2D
    model sees the slice divided by 3 in each RGB channel."""
    torch.manual_seed(1)
    image = torch.randn(1, in_channels, SIZE, SIZE)
    volume = image[:, :, None].expand(-1, -1, DEPTH, -1, -1).contiguous()
    ref = timm_stage_outputs(model2d, image if in_channels == 3 else (image / 3).expand(-1, 3, -1, -1))
    enc = encoder_3d(timm_file, in_channels, "center")
    with torch.no_grad():
        feats = enc(volume)
    assert len(feats) == 4
    for i, (f3, f2) in enumerate(zip(feats, ref)):
        assert f3.shape[2] == DEPTH // (4 * 2**i) and f3.shape[3:] == f2.shape[2:]
        for z in range(f3.shape[2]):
            assert rel_err(f3[:, :, z], f2) < REL_TOL, (i, z)
    assert ref[3].abs().max() > 0.1  # the comparison is not between near-zero maps


def test_average_inflation_matches_in_the_interior_of_stage_0(model2d, timm_file):
    """I3D averaging: the stem (depth 4, stride 4) sees 4 equal slices, so it matches everywhere; the 3-deep
    depthwise convs see zero padding at the depth borders, so after stage 0's 3 blocks only slices ≥ 3 away
    from a border match."""
    torch.manual_seed(2)
    depth = 64
    image = torch.randn(1, 3, SIZE, SIZE)
    volume = image[:, :, None].expand(-1, -1, depth, -1, -1).contiguous()
    ref = timm_stage_outputs(model2d, image)[0]
    enc = encoder_3d(timm_file, 3, "average")
    with torch.no_grad():
        stem = enc.downsample_layers[0](volume)
        s0 = enc.stages[0](stem)
    ref_stem = model2d.stem(image).detach()
    for z in range(stem.shape[2]):
        assert rel_err(stem[:, :, z], ref_stem) < REL_TOL
    n = s0.shape[2]
    blocks = len(enc.stages[0])
    for z in range(blocks, n - blocks):
        assert rel_err(s0[:, :, z], ref) < REL_TOL, z
    for z in (0, n - 1):
        assert rel_err(s0[:, :, z], ref) > 1e-3  # the border effect is real


def test_inflation_modes_analytic():
    w = torch.randn(5, 2, 3, 3)
    avg = inflate_conv2d_to_3d(w, 4, "average")
    assert avg.shape == (5, 2, 4, 3, 3) and torch.allclose(avg.sum(2), w)
    cen = inflate_conv2d_to_3d(w, 3, "center")
    assert torch.equal(cen[:, :, 1], w) and not cen[:, :, [0, 2]].any()
    with pytest.raises(NeurinoError, match="valid: average, center"):
        inflate_conv2d_to_3d(w, 3, "nearest")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_all_layouts_load_to_identical_3d_weights(timm_sd, tmp_path, suffix):
    files = {name: save(conv(timm_sd), tmp_path / f"convnext_tiny_{name}{suffix}")
             for name, conv in (("timm", dict), ("meta", to_meta_layout), ("hf", to_hf_layout))}
    canon = {name: load_dinov3_state_dict(p, "tiny") for name, p in files.items()}
    for name in ("meta", "hf"):
        assert canon[name].keys() == canon["timm"].keys()
        assert all(torch.equal(canon[name][k], canon["timm"][k]) for k in canon["timm"])
    encs = {}
    for name, p in files.items():
        encs[name] = ConvNeXt3DEncoder("tiny", in_channels=1)
        load_dinov3_into_encoder(encs[name], p, "tiny", "average")
    ref = encs["timm"].state_dict()
    for name in ("meta", "hf"):
        sd = encs[name].state_dict()
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
    # spot checks against the 2D tensors: stem (RGB mean, depth-averaged, k4 s2 p1), a depthwise kernel,
    # a pointwise linear and the layer scale
    stem2d = timm_sd["stem.0.weight"]
    assert torch.allclose(ref["downsample_layers.0.0.weight"],
                          (stem2d.mean(1, keepdim=True) / 4)[:, :, None].expand(-1, -1, 4, -1, -1))
    dw2d = timm_sd["stages.2.blocks.5.conv_dw.weight"]
    assert torch.allclose(ref["stages.2.5.dwconv.weight"], (dw2d / 3)[:, :, None].expand(-1, -1, 3, -1, -1))
    assert torch.equal(ref["stages.1.2.pwconv1.weight"], timm_sd["stages.1.blocks.2.mlp.fc1.weight"])
    assert torch.equal(ref["stages.3.2.gamma"], timm_sd["stages.3.blocks.2.gamma"])
    # the same result through a wrapper ({"model": {"module.<key>": ...}}) as training scripts save
    wrapped = save({"model": {"module." + k: v for k, v in timm_sd.items()}}, tmp_path / "wrapped.pth")
    canon_w = load_dinov3_state_dict(wrapped, "tiny")
    assert all(torch.equal(canon_w[k], canon["timm"][k]) for k in canon["timm"])


def small_like(sd: dict) -> dict:
    """A ConvNeXt-S-shaped timm state dict (27 blocks in stage 2) whose extra blocks share block 8's
    tensors, so torch.save stores them once and the file stays small."""
    out = dict(sd)
    for j in range(9, 27):
        for k, v in sd.items():
            if k.startswith("stages.2.blocks.8."):
                out[k.replace("blocks.8.", f"blocks.{j}.")] = v
    return out


def test_wrong_variant_names_file_and_key(timm_sd, tmp_path):
    small = save(to_meta_layout(small_like(timm_sd)), tmp_path / "dinov3_convnext_small.pth")
    with pytest.raises(NeurinoError) as e:
        load_dinov3_state_dict(small, "tiny")
    msg = str(e.value)
    assert str(small) in msg and "ConvNeXt-Small" in msg and "'stages.2.9." in msg
    tiny = save(to_hf_layout(timm_sd), tmp_path / "dinov3_convnext_tiny_hf.safetensors")
    with pytest.raises(NeurinoError) as e:
        load_dinov3_state_dict(tiny, "small")
    msg = str(e.value)
    assert str(tiny) in msg and "ConvNeXt-Tiny" in msg and "stages.2.layers.9.depthwise_conv" in msg


def test_missing_key_and_shape_mismatch_name_the_key(timm_sd, tmp_path):
    sd = dict(timm_sd)
    del sd["stages.1.blocks.2.mlp.fc1.bias"]
    p = save(sd, tmp_path / "missing.pth")
    with pytest.raises(NeurinoError, match=re.escape(f"{p}: missing key 'stages.1.blocks.2.mlp.fc1.bias'")):
        load_dinov3_state_dict(p, "tiny")
    sd = to_hf_layout(timm_sd)
    sd["stages.2.layers.4.depthwise_conv.weight"] = torch.zeros(384, 1, 5, 5)
    p = save(sd, tmp_path / "shape.safetensors")
    with pytest.raises(NeurinoError) as e:
        load_dinov3_state_dict(p, "tiny")
    msg = str(e.value)
    assert str(p) in msg and "'stages.2.layers.4.depthwise_conv.weight'" in msg and "(384, 1, 5, 5)" in msg


def test_corrupt_and_missing_files(timm_file, tmp_path):
    data = timm_file.read_bytes()
    for name, payload in (("truncated.pth", data[: len(data) // 3]), ("garbage.pth", b"not a checkpoint"),
                          ("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")):
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(NeurinoError, match=re.escape(str(p))):
            load_dinov3_state_dict(p, "tiny")
    with pytest.raises(NeurinoError, match="not found"):
        load_dinov3_state_dict(tmp_path / "absent.pth", "tiny")


class _OpensAFile:
    """Unpickling this would call ``open(path, "w")``: a stand-in for arbitrary code in a pickle."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_with_objects_is_refused_without_running_it(timm_sd, tmp_path):
    marker = tmp_path / "code_ran"
    p = tmp_path / "evil.pth"
    torch.save({"state_dict": dict(timm_sd), "extra": _OpensAFile(str(marker))}, p)
    with pytest.raises(NeurinoError) as e:
        load_dinov3_state_dict(p, "tiny")
    msg = str(e.value)
    assert msg.startswith(f"refused: {p} contains pickled objects (GLOBAL io.open)")
    assert "weights_only=False" not in msg
    assert not marker.exists()
    import argparse

    p2 = tmp_path / "namespace.pth"
    torch.save({"args": argparse.Namespace(lr=1.0), "model": dict(timm_sd)}, p2)
    with pytest.raises(NeurinoError, match="argparse.Namespace"):
        load_dinov3_state_dict(p2, "tiny")


def test_unknown_layout_and_non_tensor_entries(tmp_path):
    p = save({"backbone_conv1.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / "resnet.pth")
    with pytest.raises(NeurinoError, match=re.escape(f"{p}: unknown checkpoint layout (first key "
                                                     "'backbone_conv1.weight')")):
        load_dinov3_state_dict(p, "tiny")
    p2 = tmp_path / "mixed.pth"
    torch.save({"stem.0.weight": torch.zeros(96, 3, 4, 4), "epoch": 3}, p2)
    with pytest.raises(NeurinoError, match="'epoch' is a int, not a tensor"):
        load_dinov3_state_dict(p2, "tiny")


def test_unstrided_depth_keeps_slices_independent(model2d, timm_file):
    """Anisotropic plan with no striding along z (a stride-1 axis → kernel depth 1 in the stem and the
    downsamplings) and centre inflation (depthwise kernels only in the middle depth slot): every z slice is
    processed on its own: each slice of a volume of *different* slices gives timm's output on that slice."""
    torch.manual_seed(4)
    enc = ConvNeXt3DEncoder("tiny", in_channels=3, strides=[(1, 4, 4)] + [(1, 2, 2)] * 3).eval()
    assert enc.downsample_layers[0][0].kernel_size == (1, 4, 4)
    assert enc.downsample_layers[2][1].kernel_size == (1, 2, 2)
    load_dinov3_into_encoder(enc, timm_file, "tiny", "center")
    volume = torch.randn(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = enc(volume)
    for z in range(3):
        ref = timm_stage_outputs(model2d, volume[:, :, z])
        for f3, f2 in zip(feats, ref):
            assert f3.shape[2] == 3 and rel_err(f3[:, :, z], f2) < REL_TOL
