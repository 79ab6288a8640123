"""Configuration checks shared by the plugin's modules, built on the core's one scalar check."""
from __future__ import annotations

from typing import Any

from smcflow.validation import real_scalar

__all__ = ["positive"]


def positive(value: Any, name: str) -> float | None:
    """``value`` as a float after checking it is a real scalar > 0 (NaN refused); None when traced."""
    v = real_scalar(value, name, "a number > 0")
    if v is not None and not v > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return v
