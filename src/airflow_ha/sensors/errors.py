"""Errors a DAG author sees at parse or defer time; each message names what is wrong."""

from __future__ import annotations


class SensorConfigError(ValueError):
    """A smart sensor was given a value that cannot work (unknown kind, bad target, bad shard count)."""
