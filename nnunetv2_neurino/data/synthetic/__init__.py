"""Built-in realistic neuron data set: branching morphologies (or user SWCs), a light-microscopy image
model, ground-truth masks and SWCs, written as an nnU-Net raw data set.

``write_neuron_dataset(raw_root, dataset_id, ...)`` is the entry point (``neurino make-dataset``,
``neurino demo``); ``generate_case(seed, index, ...)`` gives one case in memory.
"""

from nnunetv2_neurino.data.synthetic.dataset import (
    LABEL_RADIUS_FLOOR,
    SyntheticCase,
    case_rng,
    generate_case,
    list_swc_files,
    write_neuron_dataset,
)
from nnunetv2_neurino.data.synthetic.imaging import ImagingParams, simulate_image
from nnunetv2_neurino.data.synthetic.morphology import (
    MorphologyParams,
    crop_tree_to_volume,
    fit_tree_to_volume,
    generate_fibre,
    generate_neuron,
)

__all__ = ["LABEL_RADIUS_FLOOR", "SyntheticCase", "case_rng", "generate_case", "list_swc_files",
           "write_neuron_dataset", "ImagingParams", "simulate_image", "MorphologyParams",
           "crop_tree_to_volume", "fit_tree_to_volume", "generate_fibre", "generate_neuron"]
