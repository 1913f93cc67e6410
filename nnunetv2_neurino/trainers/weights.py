"""Pretrained DINOv3 weights in the trainer life cycle.

- at the end of ``initialize()`` (the :meth:`~.base.OwnNetworkTrainer.on_network_built` hook; also run by
  ``--c``, ``--val`` and checkpoint loading) the DINOv3 file is loaded into the encoder when the environment
  variable names one; it never fails for a missing file.
- ``on_train_start`` of a FRESH run (no checkpoint loaded, no ``-pretrained_weights``) without the file
  raises the missing-weights error: a pretrained trainer never silently trains from scratch.
- ``build_network_architecture`` never loads weights (it also runs at inference).

``-pretrained_weights`` is detected without looking at the command line: nnU-Net loads that file between
``initialize()`` and ``on_train_start``, so a changed encoder stem weight means the network was replaced.
"""

from __future__ import annotations

import torch

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.deep_supervision import unwrap_network


class DINOv3WeightsMixin:
    """Loads DINOv3 weights when the network is built; refuses a fresh pretrained run without them.

    For NeurINO trainers (an :class:`~.base.OwnNetworkTrainer` whose network has a DINOv3 ``encoder`` and
    whose class attributes ``variant`` and ``inflation`` name it). Class attribute ``use_pretrained``
    (False for from-scratch variants).
    """

    use_pretrained: bool = True
    _neurino_checkpoint_loaded: bool = False
    _neurino_weights_file: str | None = None

    def on_network_built(self) -> None:
        super().on_network_built()
        self._neurino_checkpoint_loaded = False
        self._neurino_weights_file = None
        if self.use_pretrained:
            from nnunetv2_neurino.networks.inflation import load_dinov3_into_encoder, resolve_dinov3_weights

            path = resolve_dinov3_weights(self.variant)
            if path is not None:
                encoder = unwrap_network(self.network).encoder
                load_dinov3_into_encoder(encoder, path, self.variant, self.inflation)
                self._neurino_weights_file = str(path)
                self.print_to_log_file(f"Loaded DINOv3 {self.variant} weights from {path} "
                                       f"({self.inflation} inflation)")
        self._neurino_init_snapshot = self._stem_weight().detach().clone()

    def _stem_weight(self) -> torch.Tensor:
        return next(unwrap_network(self.network).parameters())

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._neurino_checkpoint_loaded = True

    def pretrained_weights_were_replaced(self) -> bool:
        """True when something (``-pretrained_weights``) overwrote the network after ``initialize``."""
        snapshot = getattr(self, "_neurino_init_snapshot", None)
        return snapshot is not None and not torch.equal(snapshot, self._stem_weight().detach())

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        fresh = not self._neurino_checkpoint_loaded and not self.pretrained_weights_were_replaced()
        if self.use_pretrained and fresh and self._neurino_weights_file is None:
            from nnunetv2_neurino.networks.inflation import missing_weights_message

            raise NeurinoError(missing_weights_message(self.variant) + (
                f"\n(Trainer {type(self).__name__}. Continuing (--c), validation (--val) and prediction do "
                f"not need the file. To fine-tune an existing NeurINO model with -pretrained_weights, or to "
                f"train from random initialisation, use nnUNetTrainerNeurINO_scratch.)"))
        super().on_train_start()
