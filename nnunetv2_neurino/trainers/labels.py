"""Label-set check of the topology-loss trainers: background + exactly one foreground class.

Every topology loss of the package (official and differentiable TASL, Skeleton Recall) is defined for one
foreground structure (neurites). :func:`check_binary_labels` refuses any other ``dataset.json`` label set
when the trainer is created, before nnU-Net creates an output folder or starts training.
"""

from __future__ import annotations

from nnunetv2_neurino.errors import NeurinoError


def check_binary_labels(dataset_json: dict, trainer_name: str) -> None:
    """Refuse a data set whose labels are not background + exactly one foreground class.

    Parameters
    ----------
    dataset_json : the data set's ``dataset.json`` as a dict (its ``labels`` entry is checked).
    trainer_name : named in the message.

    Raises
    ------
    NeurinoError
        When ``labels`` is missing, declares regions (list values), or has zero or several foreground
        classes. An ``ignore`` label is allowed.
    """
    labels = dataset_json.get("labels") if isinstance(dataset_json, dict) else None
    if not isinstance(labels, dict):
        raise NeurinoError(f"{trainer_name}: dataset.json has no 'labels' dictionary")
    regions = {k: v for k, v in labels.items() if isinstance(v, (list, tuple))}
    foreground = sorted({int(v) for k, v in labels.items()
                         if k not in ("background", "ignore") and not isinstance(v, (list, tuple))} - {0})
    if regions or len(foreground) != 1:
        why = (f"regions {regions}" if regions else
               f"{len(foreground)} foreground classes {foreground}")
        raise NeurinoError(
            f"{trainer_name} trains a topology loss for one foreground structure (neurites): dataset.json "
            f"'labels' must be background + one class (optionally 'ignore'), got {labels} ({why}). "
            f"Merge the foreground labels into one class, or use a trainer without a topology loss "
            f"(e.g. nnUNetTrainer, nnUNetTrainerMedNeXt, nnUNetTrainerNeurINO_noTASL).")
