"""Policies over beliefs: ``policy.probs(beliefs (..., S)) -> action probabilities (..., A)``.

Policies are pytrees whose numbers (thresholds, exploration rates) are leaves, so the same compiled
simulation serves every threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from .models import LISTEN, OPEN_LEFT, OPEN_RIGHT, TIGER_LEFT, TIGER_RIGHT

__all__ = ["TigerThreshold", "Softened"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TigerThreshold:
    """Tiger: listen until one side's probability reaches ``threshold`` (> 1/2), then open the other door."""

    threshold: Any = 0.9

    def __post_init__(self):
        if isinstance(self.threshold, (int, float)) and not 0.5 < self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in (1/2, 1], got {self.threshold}")

    def probs(self, beliefs: jax.Array) -> jax.Array:
        left = beliefs[..., TIGER_LEFT] >= self.threshold
        right = beliefs[..., TIGER_RIGHT] >= self.threshold
        action = jnp.where(left, OPEN_RIGHT, jnp.where(right, OPEN_LEFT, LISTEN))
        return jax.nn.one_hot(action, 3, dtype=beliefs.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Softened:
    """``(1 - exploration) base.probs(b) + exploration / A``: every action keeps probability ``>= exploration / A``."""

    base: Any
    exploration: Any = 0.2

    def __post_init__(self):
        if isinstance(self.exploration, (int, float)) and not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must lie in [0, 1], got {self.exploration}")

    def probs(self, beliefs: jax.Array) -> jax.Array:
        base = self.base.probs(beliefs)
        return (1.0 - self.exploration) * base + self.exploration / base.shape[-1]
