"""JSON configs of the paper's training setups, each reachable as a trainer subclass."""
