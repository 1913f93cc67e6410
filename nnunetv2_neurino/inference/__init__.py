"""Inference on trained nnU-Net runs: safe run/checkpoint loading,
``neurino predict`` (stack → mask + SWC)."""
