"""Session-scoped end-to-end nnU-Net run (filled in by the trainer work)."""
