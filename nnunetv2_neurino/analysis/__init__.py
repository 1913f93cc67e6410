"""Run-level analysis: training curves of several runs,
PCA maps of encoder features (the paper's figs 7–8)."""
