"""The fitted coefficient fields: callable pytrees (their arrays are leaves, so a new fit does not
recompile a filter that uses it), batched over the leading axis of ``x``."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import product
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from smcflow.validation import merge_static, split_static

__all__ = ["GridField", "LinearMap", "ConstantMatrix", "AddFields", "project_psd", "evaluate"]


@partial(jax.jit, static_argnames=("static",))
def _apply(arrays, static, x: jax.Array) -> jax.Array:
    return merge_static(arrays, static)(x)


def evaluate(f: Any, x: Any) -> np.ndarray:
    """``f(x)`` as float64 for a batch ``x`` ``(n, d)``, compiled once per function and shape when ``f`` is
    traceable (op-by-op evaluation of a grid field or a network compiles every op); a NumPy-based
    callable runs as it is."""
    x = jnp.asarray(x, jnp.float32)
    try:
        return np.asarray(_apply(*split_static(f), x), np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return np.asarray(f(x), np.float64)


def project_psd(a: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """The nearest (Frobenius) symmetric matrix with eigenvalues ``>= floor``, for a batch ``(..., d, d)``."""
    sym = 0.5 * (a + np.swapaxes(a, -1, -2))
    w, v = np.linalg.eigh(sym)
    out = (v * np.maximum(w, floor)[..., None, :]) @ np.swapaxes(v, -1, -2)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GridField:
    """Values on a regular grid, multilinear interpolation in between, the nearest boundary value outside.

    Attributes:
      lower: ``(d,)`` first node per axis.
      spacing: ``(d,)`` node spacing per axis.
      values: ``(G_1, .., G_d, *out)``.

    Interpolation is a convex combination of the ``2^d`` surrounding nodes, so a field of symmetric PSD
    matrices stays symmetric PSD everywhere, also far outside the grid.
    """

    lower: jax.Array
    spacing: jax.Array
    values: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.lower.shape[0]
        sizes = jnp.asarray(self.values.shape[:d])
        u = jnp.clip((x - self.lower.astype(x.dtype)) / self.spacing.astype(x.dtype), 0, sizes - 1)
        base = jnp.clip(jnp.floor(u), 0, jnp.maximum(sizes - 2, 0)).astype(jnp.int32)
        frac = u - base
        out = 0.0
        for corner in product((0, 1), repeat=d):
            offset = jnp.asarray(corner, jnp.int32)
            index = jnp.minimum(base + offset, sizes - 1)
            weight = jnp.prod(jnp.where(offset == 1, frac, 1.0 - frac), axis=-1)
            node = self.values[tuple(index[:, j] for j in range(d))].astype(x.dtype)
            out = out + weight.reshape((-1,) + (1,) * (node.ndim - 1)) * node
        return out


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class LinearMap:
    """``x -> x B^T + c`` (a linear drift ``B x + c``)."""

    matrix: jax.Array
    offset: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.matrix.T.astype(x.dtype) + self.offset.astype(x.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConstantMatrix:
    """``x -> a`` for every point (a constant diffusion), shape ``(n, d, d)``."""

    matrix: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.broadcast_to(self.matrix.astype(x.dtype), (x.shape[0],) + self.matrix.shape)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class AddFields:
    """``x -> first(x) + second(x)``."""

    first: Any
    second: Any

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.first(x) + self.second(x)
