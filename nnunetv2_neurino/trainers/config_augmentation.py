"""Set the probabilities and ranges of nnU-Net's own training transforms from a trainer config.

nnU-Net's ``get_training_transforms`` builds a fixed pipeline; :func:`apply_augmentation_config` edits the
transforms it contains in place (rotation, scaling, elastic deformation, gamma, brightness, contrast,
Gaussian noise and blur, low resolution). Transforms added by other parts of a trainer (e.g. the
topology-loss channels) are left untouched.
"""

from __future__ import annotations

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.config_schema import TrainerConfig


def apply_augmentation_config(pipeline, config: TrainerConfig):
    """Set the probabilities/ranges of nnU-Net's training transforms in ``pipeline`` from ``config``.

    ``pipeline`` is the ``ComposeTransforms`` that ``nnUNetTrainer.get_training_transforms`` returns; it is
    changed in place and returned. Every transform kind the config describes must be present (else nnU-Net's
    pipeline changed and the config could not be honoured: an error).
    """
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
    from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    aug = config.augmentation
    found: dict[str, int] = {}

    def hit(kind: str) -> None:
        found[kind] = found.get(kind, 0) + 1

    for t in pipeline.transforms:
        if isinstance(t, SpatialTransform):
            t.p_rotation, t.rotation = aug["rotation"]["p"], config.rotation_radians
            t.p_scaling, t.scaling = aug["scaling"]["p"], tuple(aug["scaling"]["range"])
            t.p_elastic_deform = aug["elastic"]["p"]
            t.elastic_deform_scale = tuple(aug["elastic"]["scale"])
            t.elastic_deform_magnitude = tuple(aug["elastic"]["magnitude"])
            hit("spatial")
            continue
        if not isinstance(t, RandomTransform):
            continue
        inner = t.transform
        if isinstance(inner, GaussianNoiseTransform):
            t.apply_probability = aug["gaussian_noise"]["p"]
            inner.noise_variance = aug["gaussian_noise"]["variance"]
            hit("gaussian_noise")
        elif isinstance(inner, GaussianBlurTransform):
            t.apply_probability, inner.blur_sigma = aug["gaussian_blur"]["p"], aug["gaussian_blur"]["sigma"]
            hit("gaussian_blur")
        elif isinstance(inner, MultiplicativeBrightnessTransform):
            t.apply_probability = aug["brightness"]["p"]
            inner.multiplier_range = BGContrast(aug["brightness"]["range"])
            hit("brightness")
        elif isinstance(inner, ContrastTransform):
            t.apply_probability = aug["contrast"]["p"]
            inner.contrast_range = BGContrast(aug["contrast"]["range"])
            hit("contrast")
        elif isinstance(inner, SimulateLowResolutionTransform):
            t.apply_probability, inner.scale = aug["low_resolution"]["p"], aug["low_resolution"]["scale"]
            hit("low_resolution")
        elif isinstance(inner, GammaTransform):
            inverted = inner.p_invert_image >= 0.5
            t.apply_probability = aug["gamma"]["p_inverted" if inverted else "p"]
            inner.gamma = BGContrast(aug["gamma"]["range"])
            hit("gamma_inverted" if inverted else "gamma")
    expected = ("spatial", "gaussian_noise", "gaussian_blur", "brightness", "contrast", "low_resolution",
                "gamma_inverted", "gamma")
    wrong = [k for k in expected if found.get(k) != 1]
    if wrong:
        raise NeurinoError(f"{config.source}: cannot apply the config to nnU-Net's training transforms: "
                           f"expected exactly one '{wrong[0]}' transform, found {found.get(wrong[0], 0)} "
                           f"(nnU-Net's pipeline differs from nnunetv2 2.8)")
    return pipeline
