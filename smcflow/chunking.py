"""Bounded memory: evaluate a model's ``init`` / ``step`` over particle chunks (``run(..., chunk_size=c)``).

A model's ``step`` sees all N particles at once, so its intermediates (a network's activations, the
likelihood terms) take memory proportional to N. :class:`Chunked` wraps the model so that ``init``
and ``step`` run ``N / c`` times on ``c`` particles each, one chunk after the other (``lax.map``); only
the particles, their weights and the resampling arrays stay of size N. Chunk ``j`` draws from
``fold_in(key, j)``, so a chunked run is equal in distribution to the plain one (not bitwise equal).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["Chunked", "chunked"]


def _split(tree: Any, n_chunks: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a.reshape((n_chunks, a.shape[0] // n_chunks) + a.shape[1:]), tree)


def _merge(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]), tree)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Chunked:
    """``model`` with ``init`` / ``step`` evaluated over chunks of ``chunk_size`` particles."""

    model: Any
    chunk_size: int = field(metadata=dict(static=True))

    @property
    def n_steps(self) -> int:
        return self.model.n_steps

    def __getattr__(self, name: str) -> Any:  # anything else (e.g. NFE declarations) is the model's
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def _keys(self, key: jax.Array, n: int) -> jax.Array:
        return jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n // self.chunk_size))

    def init(self, key: jax.Array, n: int):
        x, log_w = lax.map(lambda k: self.model.init(k, self.chunk_size), self._keys(key, n))
        return _merge(x), _merge(log_w)

    def step(self, key: jax.Array, t: jax.Array, x: Any):
        n = jax.tree_util.tree_leaves(x)[0].shape[0]
        x_new, log_g = lax.map(lambda kx: self.model.step(kx[0], t, kx[1]),
                               (self._keys(key, n), _split(x, n // self.chunk_size)))
        return _merge(x_new), _merge(log_g)


def chunked(model: Any, chunk_size: int | None, n_particles: int) -> Any:
    """``model`` itself when ``chunk_size`` is None or at least N, else :class:`Chunked` (checked)."""
    if chunk_size is None:
        return model
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunk_size >= n_particles:
        return model
    if n_particles % chunk_size:
        raise ValueError(f"n_particles={n_particles} is not a multiple of chunk_size={chunk_size}")
    return Chunked(model, chunk_size)
