"""``neurino demo``: the whole pipeline on the built-in data set through nnU-Net's own CLIs (pipeline.py)."""

from nnunetv2_neurino.demo.pipeline import DemoPlan, demo_plan, run_demo

__all__ = ["DemoPlan", "demo_plan", "run_demo"]
