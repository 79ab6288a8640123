"""Closed-form rewards: linear, quadratic, half-space indicator, and weighted sums of rewards.

A reward maps a batch ``x`` of shape ``(n, *event)`` to ``(n,)`` and has the attribute
``differentiable``. Samples are flattened to ``(n, d)`` before the formulas below are applied, so a
vector ``b`` of length ``d = prod(event)`` works for images too. All rewards here are registered
pytrees: their arrays are traced, so new coefficients do not recompile a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import jax
import jax.numpy as jnp

__all__ = ["LinearReward", "QuadraticReward", "HalfspaceIndicator", "WeightedSum", "linear", "quadratic",
           "indicator", "weighted_sum"]


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _vector(v, name: str) -> jax.Array:
    arr = jnp.atleast_1d(jnp.asarray(v, dtype=jnp.zeros(()).dtype))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a vector, got shape {arr.shape}")
    return arr


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class LinearReward:
    """``r(x) = b'x``."""

    b: jax.Array
    differentiable: bool = field(default=True, metadata=dict(static=True))
    name: str = field(default="linear", metadata=dict(static=True))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _flat(x) @ self.b


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class QuadraticReward:
    """``r(x) = -x'Ax/2 + b'x`` (``A`` symmetric ``(d, d)``)."""

    A: jax.Array
    b: jax.Array
    differentiable: bool = field(default=True, metadata=dict(static=True))
    name: str = field(default="quadratic", metadata=dict(static=True))

    def __call__(self, x: jax.Array) -> jax.Array:
        f = _flat(x)
        return -0.5 * jnp.einsum("ni,ij,nj->n", f, self.A, f) + f @ self.b


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class HalfspaceIndicator:
    """``r(x) = 1{a'x > c}``: piecewise constant, so not usable for gradient guidance."""

    a: jax.Array
    c: jax.Array
    differentiable: bool = field(default=False, metadata=dict(static=True))
    name: str = field(default="indicator", metadata=dict(static=True))

    def __call__(self, x: jax.Array) -> jax.Array:
        return (_flat(x) @ self.a > self.c).astype(x.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class WeightedSum:
    """``r(x) = sum_i c_i r_i(x)``; differentiable when every term is."""

    coefficients: jax.Array
    terms: tuple[Any, ...]
    name: str = field(default="weighted_sum", metadata=dict(static=True))

    @property
    def differentiable(self) -> bool:
        return all(bool(getattr(t, "differentiable", False)) for t in self.terms)

    def __call__(self, x: jax.Array) -> jax.Array:
        return sum(c * term(x) for c, term in zip(self.coefficients, self.terms))


def linear(b=(1.0,)) -> LinearReward:
    """Factory of the ``linear`` reward: ``r(x) = b'x``."""
    return LinearReward(_vector(b, "b"))


def quadratic(A=((1.0,),), b=None) -> QuadraticReward:
    """Factory of the ``quadratic`` reward: ``r(x) = -x'Ax/2 + b'x`` (``b`` defaults to 0)."""
    A = jnp.atleast_2d(jnp.asarray(A, dtype=jnp.zeros(()).dtype))
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    b = jnp.zeros(A.shape[0], A.dtype) if b is None else _vector(b, "b")
    if b.shape != (A.shape[0],):
        raise ValueError(f"b has shape {b.shape}, A has shape {A.shape}")
    return QuadraticReward((A + A.T) / 2, b)


def indicator(a=(1.0,), c: float = 0.0) -> HalfspaceIndicator:
    """Factory of the ``indicator`` reward: ``r(x) = 1{a'x > c}``."""
    return HalfspaceIndicator(_vector(a, "a"), jnp.asarray(c, dtype=jnp.zeros(()).dtype))


def weighted_sum(terms: Sequence[tuple[float, Any]]) -> WeightedSum:
    """Factory of ``weighted_sum``: ``terms`` is a sequence of ``(coefficient, reward)`` pairs."""
    terms = list(terms)
    if not terms:
        raise ValueError("weighted_sum needs at least one (coefficient, reward) pair")
    for i, (_, r) in enumerate(terms):
        if not callable(r):
            raise TypeError(f"weighted_sum term {i} is not a reward (not callable): {r!r}")
    coefficients = jnp.asarray([float(c) for c, _ in terms])
    return WeightedSum(coefficients, tuple(r for _, r in terms))
