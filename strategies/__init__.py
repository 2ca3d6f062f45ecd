"""Search strategies over a `SearchSpace` (installed as `automoe.strategies`)."""
