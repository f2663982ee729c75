"""Benchmarks: each prints its numbers and the ratio against the stock alternative, measured in the same run."""
