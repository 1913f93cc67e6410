"""Sub-commands of `neurino`; each module is discovered by ``nnunetv2_neurino.cli``."""
