"""Whole-brain volumes: lazy readers, block-wise prediction and tracing on dask.distributed."""
