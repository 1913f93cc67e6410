"""After nnU-Net's final validation, write the topology summary of ``neurino evaluate`` beside its summary.

nnU-Net's evaluation has no hook for custom metrics. :class:`TopologySummaryMixin` extends
``perform_actual_validation`` — run at the end of ``nnUNetv2_train`` and by ``nnUNetv2_train … --val`` —
so that, next to nnU-Net's ``fold_N/validation/summary.json``, a ``summary_topology.json`` holds voxel F1 /
HD95 and the tracing metrics ESA / DSA / PDS of every validation case
(:func:`nnunetv2_neurino.evaluation.evaluate.write_topology_summary`). Ground truth: the masks nnU-Net
keeps in ``nnUNet_preprocessed/DatasetXXX_NAME/gt_segmentations`` and, when the raw data set has them,
the gold SWCs of ``nnUNet_raw/DatasetXXX_NAME/swcTr`` (otherwise the ground-truth masks are traced).

The summary is an extra: any failure is logged to nnU-Net's training log and training/validation carry on.
Usable with any ``nnUNetTrainer`` subclass (put the mixin before ``nnUNetTrainer`` in the bases).
"""

from __future__ import annotations

import traceback
from pathlib import Path


class TopologySummaryMixin:
    """Write ``validation/summary_topology.json`` after nnU-Net's final validation (rank 0 only).

    Class attributes
    ----------------
    topology_summary : set False to skip the summary.
    topology_summary_tracers : tracer names of ``neurino evaluate`` (default the built-in tracer).
    topology_summary_threshold : ESA/DSA/PDS distance threshold, voxels.
    """

    topology_summary: bool = True
    topology_summary_tracers: tuple[str, ...] = ("builtin",)
    topology_summary_threshold: float = 2.0

    def perform_actual_validation(self, save_probabilities: bool = False):
        super().perform_actual_validation(save_probabilities)
        if self.topology_summary and self.local_rank == 0:
            self.write_topology_summary()

    def write_topology_summary(self) -> Path | None:
        """Score ``fold_N/validation`` against the ground truth; log and return None on any error."""
        validation_dir = Path(self.output_folder) / "validation"
        try:
            from nnunetv2_neurino.evaluation.evaluate import write_topology_summary
            from nnunetv2_neurino.nnunet_layout import raw_swc_dir

            gt_dir = Path(self.preprocessed_dataset_folder_base) / "gt_segmentations"
            path = write_topology_summary(validation_dir, gt_dir=gt_dir,
                                          gt_swc_dir=raw_swc_dir(self.plans_manager.dataset_name),
                                          tracers=self.topology_summary_tracers,
                                          threshold=self.topology_summary_threshold)
        except Exception as e:  # an extra must never break training or validation
            self.print_to_log_file(f"Topology summary NOT written ({type(e).__name__}: {e}); nnU-Net's "
                                   f"validation is complete. Run `neurino evaluate --pred {validation_dir} "
                                   f"--gt <labels>` to retry.\n{traceback.format_exc()}",
                                   also_print_to_console=True)
            return None
        self.print_to_log_file(f"Topology summary (F1, HD95, ESA/DSA/PDS): {path}",
                               also_print_to_console=True)
        return path
