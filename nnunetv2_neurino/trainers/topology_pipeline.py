"""Ground truth of the topology losses from nnU-Net's training data pipeline.

nnU-Net's loader keeps only ``image`` and ``segmentation``, so what a topology loss needs from the label is
computed in the trainer's own data pipeline and carried as extra integer ``segmentation`` channels:

- the differentiable TASL: :class:`~nnunetv2_neurino.losses.transforms.TopologyGraphTransform` (GT node
  ids, branch ids → target ``[label, nodes, branches]``);
- Skeleton Recall: :class:`~nnunetv2_neurino.losses.transforms.SkeletonRecallTubeTransform` (target
  ``[label, tube]``).

The transform is inserted into nnU-Net's own training pipeline **after** the spatial augmentation,
mirroring and ``RemoveLabelTansform(-1, 0)`` and **before** ``DownsampleSegForDSTransform``, so the
channels follow every augmentation of the label and are downsampled with it for deep supervision. The
validation pipeline is left as nnU-Net builds it (label only): the logged validation loss is Dice + CE, as
for every other trainer, and nnU-Net's pseudo-Dice code sees the single label channel it expects.
"""

from __future__ import annotations

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform


def topology_transform(topology_loss: str, ignore_label: int | None = None) -> BasicTransform | None:
    """The transform appending the ground-truth channels a topology loss reads (None: it reads none)."""
    from nnunetv2_neurino.losses.transforms import SkeletonRecallTubeTransform, TopologyGraphTransform

    if topology_loss == "differentiable":
        return TopologyGraphTransform(ignore_label=ignore_label)
    if topology_loss == "skeleton_recall":
        return SkeletonRecallTubeTransform(ignore_label=ignore_label)
    return None


def insert_before_ds_downsampling(pipeline: BasicTransform, transform: BasicTransform) -> ComposeTransforms:
    """Insert ``transform`` into nnU-Net's composed pipeline just before ``DownsampleSegForDSTransform``.

    Without deep supervision (no downsampling transform) it is appended at the end. Returns the same
    ``ComposeTransforms`` object, modified.
    """
    if not isinstance(pipeline, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms pipeline, got {type(pipeline).__name__}")
    steps = list(pipeline.transforms)
    where = next((i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)), len(steps))
    steps.insert(where, transform)
    pipeline.transforms = steps
    return pipeline
