"""Synthetic phantoms shared by the test suite and the benchmarks; not part of the user-facing API."""
