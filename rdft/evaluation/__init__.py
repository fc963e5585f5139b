"""Scoring: the benchmark table, `rdft benchmarks list` and `rdft score` (scorers run in the eval env)."""
