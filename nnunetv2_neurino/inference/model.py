"""Build an :class:`nnUNetPredictor` for a trained run from safely loaded checkpoints.

This does what ``nnUNetPredictor.initialize_from_trained_model_folder`` does, except that checkpoints are
read with ``weights_only=True`` (:func:`run_folder.load_checkpoint`) and every problem becomes a
:class:`NeurinoError` naming the file at fault.
"""

from __future__ import annotations

import inspect
import io
from contextlib import redirect_stdout

import torch

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.run_folder import RunFolder, load_fold_checkpoints, load_json


def find_trainer_class(trainer_name: str):
    """The trainer class named ``trainer_name``.

    nnU-Net's own lookup first (its package, then the ``nnUNet_extTrainer`` folders), then this plugin's
    trainers (so a NeurINO/MedNeXt run predicts even when ``nnUNet_extTrainer`` is not set); NeurinoError
    when neither has it.
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        with redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(trainer_name)
    except (RuntimeError, AssertionError) as e:
        import nnunetv2_neurino.trainers as own

        cls = getattr(own, trainer_name, None)
        if isinstance(cls, type):
            return cls
        raise NeurinoError(f"trainer class {trainer_name!r} not found by nnU-Net (nor among this package's "
                           "trainers); if it lives in your own folder, add that folder to "
                           "nnUNet_extTrainer (this package's trainers: "
                           "`export nnUNet_extTrainer=$(neurino trainer-path)`)") from e


def load_predictor(run: RunFolder, checkpoint: str = "final", device: str = "cpu",
                   use_mirroring: bool = True, tile_step_size: float = 0.5, verbose: bool = False):
    """An initialised ``nnUNetPredictor`` holding the weights of every fold of ``run``.

    Parameters
    ----------
    run : resolved run (its ``fold_dirs`` are the folds that are ensembled).
    checkpoint : ``final``, ``best`` or ``latest``.
    device : ``cpu`` or ``cuda`` (``cuda:N``); on the CPU everything stays on the CPU.
    use_mirroring : test-time mirroring over the axes the trainer allowed.
    tile_step_size : sliding-window step as a fraction of the patch size.

    Returns
    -------
    nnunetv2.inference.predict_from_raw_data.nnUNetPredictor, network in eval mode.
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeurinoError("device cuda requested but torch sees no CUDA device")
    ckpts = load_fold_checkpoints(run, checkpoint)
    dataset_json = load_json(run.trainer_dir / "dataset.json")
    plans_manager = PlansManager(load_json(run.trainer_dir / "plans.json"))
    try:
        configuration_manager = plans_manager.get_configuration(run.configuration)
    except (KeyError, ValueError, RuntimeError) as e:
        raise NeurinoError(f"{run.trainer_dir / 'plans.json'} has no configuration "
                           f"{run.configuration!r}") from e
    trainer_class = find_trainer_class(run.trainer_name)
    n_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    if "plans_manager" not in inspect.signature(trainer_class.build_network_architecture).parameters:
        raise NeurinoError(f"trainer {run.trainer_name} uses nnU-Net's old build_network_architecture "
                           "signature")
    network = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out,
                                                       enable_deep_supervision=False)
    params = [c["network_weights"] for c in ckpts]
    try:
        network.load_state_dict(params[0])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise NeurinoError(f"weights in {run.fold_dirs[0]} do not fit the network built from plans.json: "
                           f"{first}") from e
    network.eval()
    with redirect_stdout(io.StringIO()):  # nnU-Net prints a notice about perform_everything_on_device on CPU
        predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True,
                                    use_mirroring=use_mirroring,
                                    perform_everything_on_device=dev.type == "cuda", device=dev,
                                    verbose=verbose, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, params, dataset_json,
                                    run.trainer_name, ckpts[0].get("inference_allowed_mirroring_axes"))
    network.to(dev)
    return predictor
