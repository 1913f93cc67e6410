"""nnunetv2-neurino: NeurINO (DINOv3-inflated 3D ConvNeXt), TASL, tracing and neuron metrics for
nnU-Net v2."""

__version__ = "0.1.0"


def build_neurino(*args, **kwargs):
    """Build a NeurINO network; see :func:`nnunetv2_neurino.networks.neurino.build_neurino`."""
    from nnunetv2_neurino.networks.neurino import build_neurino as _build

    return _build(*args, **kwargs)
