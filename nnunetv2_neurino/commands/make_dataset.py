"""`neurino make-dataset -d ID`: the built-in synthetic light-microscopy neuron data set → nnU-Net raw."""

from __future__ import annotations

import argparse

NAME = "make-dataset"
HELP = ("generate the built-in synthetic neuron data set (generated or user-SWC morphologies, realistic "
        "microscopy images, masks and SWCs) as an nnU-Net raw data set")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    p.add_argument("--name", default="NeurinoSynthetic", help="dataset name (default NeurinoSynthetic)")
    p.add_argument("--n-train", type=int, default=8, help="training cases (default 8)")
    p.add_argument("--n-test", type=int, default=2, help="test cases, imagesTs/labelsTs/swcTs (default 2)")
    p.add_argument("--shape", type=int, nargs=3, default=(64, 64, 64), metavar=("Z", "Y", "X"),
                   help="volume size in voxels (default 64 64 64)")
    p.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
                   help="voxel size, e.g. 2 1 1 for a coarser z (default 1 1 1)")
    p.add_argument("--seed", type=int, default=0, help="seed: the data set is a deterministic function of it")
    p.add_argument("--swc-dir", default=None,
                   help="folder of SWC files to use as morphologies (rotated and scaled into the volume) "
                        "instead of the branching generator")
    p.add_argument("--swc-mode", choices=("fit", "crop"), default="fit",
                   help="with --swc-dir: 'fit' rotates each SWC at random and scales it to fit the volume "
                        "(default); 'crop' takes a random native-scale window of it, cut at the faces")
    p.add_argument("--swc-scale", type=float, default=1.0,
                   help="with --swc-mode crop: physical size of one SWC unit (default 1)")
    p.add_argument("--dtype", choices=("uint16", "float32"), default="uint16",
                   help="image type (default uint16)")
    p.add_argument("--force", action="store_true", help="replace an existing data set folder")
    p.add_argument("--preview", action="store_true",
                   help="also write maximum-intensity-projection PNGs (image, label, SWC) into "
                        "DATASET/preview/")


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"swc_mode": "--swc-mode", "swc_dir": "--swc-dir", "swc_scale": "--swc-scale",
         "test_fraction": "--test-fraction"}


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.data.nnunet_raw import LOG_NAME
    from nnunetv2_neurino.data.synthetic import write_neuron_dataset
    from nnunetv2_neurino.io_utils import check_output_folder, check_output_paths
    from nnunetv2_neurino.nnunet_layout import dataset_folder_name, resolve_raw_root

    target = resolve_raw_root(args.output) / dataset_folder_name(args.dataset_id, args.name)
    check_output_paths([target], [args.swc_dir])
    check_output_folder(target, args.force)
    folder = write_neuron_dataset(args.output, args.dataset_id, name=args.name, n_train=args.n_train,
                                  n_test=args.n_test, shape=tuple(args.shape), seed=args.seed,
                                  swc_dir=args.swc_dir, force=args.force, progress=True,
                                  spacing=tuple(args.spacing), dtype=args.dtype, swc_mode=args.swc_mode,
                                  swc_scale=args.swc_scale)
    print(f"wrote {folder} (log: {folder / LOG_NAME})")
    if args.preview:
        from nnunetv2_neurino.data.preview import preview_dataset

        pngs = preview_dataset(folder, progress=True)
        print(f"previews: {len(pngs)} PNG files in {pngs[0].parent}")
    return 0
