"""The two kinds of belief and their checks.

A belief is either

* **discrete**: a probability vector ``(S,)`` over a finite state space (a batch: ``(B, S)``), or
* **particles**: a weighted particle set, a ``(particles, log_weights)`` pair or any object with
  those attributes (an :class:`smcflow.SMCResult`, a :class:`ParticleBelief`): particles ``(n,)`` or
  ``(n, d)`` and log-weights ``(n,)``, normalised or not (a batch: ``(B, n[, d])`` and ``(B, n)``).

:func:`as_discrete` and :func:`as_particles` check a belief and return it in one layout (probability
vectors renormalised; particles always ``(..., n, d)`` with normalised log-weights). Bad input raises
``ValueError`` (``TypeError`` for a wrong kind) naming the argument: at once for concrete arrays, and
from a host callback when the program runs under a user's ``jit``/``vmap``.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

__all__ = ["ParticleBelief", "SUM_TOL", "is_particles", "as_discrete", "as_particles", "as_pair",
           "histogram", "require"]

#: largest allowed ``|sum(b) - 1|`` of a probability vector
SUM_TOL = 1e-4


class ParticleBelief(NamedTuple):
    """A weighted particle set: ``particles (..., n, d)`` and ``log_weights (..., n)``."""

    particles: jax.Array
    log_weights: jax.Array


def _raise_unless(ok, *, message: str) -> None:
    if not bool(jnp.all(ok)):
        raise ValueError(message)


def require(ok: jax.Array, message: Callable[[], str], traced_message: str) -> None:
    """Raise ``ValueError(message())`` unless ``ok``; under tracing, check when the program runs
    (a ``jax.debug.callback`` raising ``traced_message``)."""
    if isinstance(ok, jax.core.Tracer):
        jax.debug.callback(partial(_raise_unless, message=traced_message), ok)
    elif not bool(jnp.all(ok)):
        raise ValueError(message())


def is_particles(belief: Any) -> bool:
    """True for a ``(particles, log_weights)`` pair or an object with those attributes."""
    if hasattr(belief, "particles") and hasattr(belief, "log_weights"):
        return True
    return isinstance(belief, (tuple, list)) and len(belief) == 2


def _float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def as_discrete(belief: Any, name: str = "belief", batch: bool = False) -> jax.Array:
    """A checked, renormalised probability vector ``(S,)`` (``batch``: ``(B, S)``)."""
    if is_particles(belief):
        raise TypeError(f"{name} must be a probability vector, got a weighted particle set")
    p = _float(belief)
    want = 2 if batch else 1
    if p.ndim != want or p.shape[-1] < 1:
        layout = "(B, S) batch of probability vectors" if batch else "(S,) probability vector"
        raise ValueError(f"{name} must be a {layout}, got shape {p.shape}")
    finite = jnp.all(jnp.isfinite(p))
    require(finite, lambda: f"{name} holds NaN or infinite probabilities", f"{name} holds NaN or infinite probabilities")
    require(jnp.all(p >= 0), lambda: f"{name} has negative probabilities (smallest {float(jnp.min(p)):.3g})",
            f"{name} has negative probabilities")
    sums = jnp.sum(p, axis=-1)
    off = jnp.max(jnp.abs(sums - 1.0))
    require(off <= SUM_TOL, lambda: f"{name} does not sum to one: off by {float(off):.3g} (tolerance {SUM_TOL:g})",
            f"{name} does not sum to one (tolerance {SUM_TOL:g})")
    return p / sums[..., None]


def as_particles(belief: Any, name: str = "belief", batch: bool = False) -> ParticleBelief:
    """A checked particle set ``(..., n, d)`` with normalised log-weights ``(..., n)``."""
    if not is_particles(belief):
        raise TypeError(f"{name} must be a weighted particle set (particles, log_weights), got an array of "
                        f"shape {jnp.shape(belief)}")
    x, lw = (belief.particles, belief.log_weights) if hasattr(belief, "particles") else belief
    x, lw = _float(x), _float(lw)
    lead = 2 if batch else 1
    if lw.ndim != lead or x.ndim not in (lead, lead + 1) or x.shape[:lead] != lw.shape or lw.shape[-1] < 1:
        layout = "(B, n[, d]) particles with (B, n) log_weights" if batch else "(n[, d]) particles with (n,) log_weights"
        raise ValueError(f"{name} must be {layout}, got particles {x.shape} and log_weights {lw.shape}")
    if x.ndim == lead:
        x = x[..., None]
    require(~jnp.any(jnp.isnan(lw) | jnp.isposinf(lw)), lambda: f"{name} has NaN or +inf log-weights",
            f"{name} has NaN or +inf log-weights")
    log_total = logsumexp(lw, axis=-1)
    require(jnp.all(jnp.isfinite(log_total)), lambda: f"{name} has no particle of positive weight",
            f"{name} has no particle of positive weight")
    live = jnp.isfinite(lw)[..., None]
    require(jnp.all(jnp.isfinite(x) | ~live), lambda: f"{name} has NaN or infinite particles of positive weight",
            f"{name} has NaN or infinite particles of positive weight")
    return ParticleBelief(jnp.where(live, x, 0.0), lw - log_total[..., None])


def as_pair(b1: Any, b2: Any, names: tuple[str, str] = ("b1", "b2"), batch: bool = False):
    """``("discrete", p, q)`` or ``("particles", x, y)``, both beliefs checked and on the same support:
    the same number of states, or particles of the same dimension."""
    kinds = [is_particles(b) for b in (b1, b2)]
    if kinds[0] != kinds[1]:
        which = [("a weighted particle set" if k else "a probability vector") for k in kinds]
        raise TypeError(f"mismatched beliefs: {names[0]} is {which[0]} but {names[1]} is {which[1]}")
    if kinds[0]:
        x, y = as_particles(b1, names[0], batch), as_particles(b2, names[1], batch)
        if x.particles.shape[-1] != y.particles.shape[-1]:
            raise ValueError(f"mismatched supports: {names[0]} has particles of dimension {x.particles.shape[-1]}, "
                             f"{names[1]} of dimension {y.particles.shape[-1]}")
        return "particles", x, y
    p, q = as_discrete(b1, names[0], batch), as_discrete(b2, names[1], batch)
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"mismatched supports: {names[0]} is over {p.shape[-1]} states, {names[1]} over {q.shape[-1]}")
    return "discrete", p, q


def histogram(particles: jax.Array, log_weights: jax.Array, n_states: int) -> jax.Array:
    """The probability vector ``(..., S)`` of integer particles ``(..., n)`` with log-weights ``(..., n)``.

    Renormalised at the end: a float32 sum over many particles drifts from one by ~n eps.
    """
    w = jnp.exp(log_weights - jnp.max(log_weights, axis=-1, keepdims=True))
    counts = jnp.einsum("...n,...ns->...s", w, jax.nn.one_hot(particles, n_states, dtype=w.dtype))
    return counts / jnp.sum(counts, axis=-1, keepdims=True)
