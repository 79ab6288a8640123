"""Log-space weight arithmetic. Nothing here exponentiates an unnormalised weight."""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["normalise_with_ess", "moments", "quantiles", "weight_statistics"]


def normalise_with_ess(log_weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log_W, log_sum, ESS)`` along the last axis, from one pass of ``exp``.

    With ``m = max_i a_i``, ``e_i = exp(a_i - m)``, ``S1 = sum e_i`` and ``S2 = sum e_i^2``:
    ``log_sum = m + log S1``, ``log_W = a - log_sum`` and ``ESS = S1^2 / S2 = 1 / sum_i W_i^2``.
    If every weight is ``-inf``, ``log_sum = -inf``, ``log_W`` is uniform (``-log N``) and
    ``ESS = N``, so no NaN is produced; callers detect that failure from ``log_sum == -inf``. A NaN or
    ``+inf`` entry makes ``log_sum`` NaN or ``+inf``: callers screen for it.
    """
    n = log_weights.shape[-1]
    top = jnp.max(log_weights, axis=-1, keepdims=True)
    dead = jnp.isneginf(top)
    shifted = log_weights - jnp.where(dead, 0.0, top)
    e = jnp.exp(shifted)
    s1 = jnp.sum(e, axis=-1, keepdims=True)
    s2 = jnp.sum(e * e, axis=-1, keepdims=True)
    log_w = jnp.where(dead, -jnp.log(n), shifted - jnp.log(s1)).astype(log_weights.dtype)
    log_sum = jnp.where(dead, -jnp.inf, top + jnp.log(s1))[..., 0]
    ess_value = jnp.where(dead, n, s1 * s1 / s2)[..., 0].astype(log_weights.dtype)
    return log_w, log_sum, ess_value


def moments(x, log_weights: jax.Array):
    """Weighted mean and variance of every leaf of ``x`` (leading particle axis), as ``{"mean", "var"}``.

    Suitable as ``smcflow.run(..., summary=moments)`` to record filtering moments at every time.
    """
    w = jnp.exp(log_weights)

    def mean_var(a):
        wa = w.reshape(w.shape + (1,) * (a.ndim - 1))
        mean = jnp.sum(wa * a, axis=0)
        return mean, jnp.sum(wa * (a - mean) ** 2, axis=0)

    pairs = jax.tree_util.tree_map(mean_var, x)
    is_pair = lambda p: isinstance(p, tuple) and len(p) == 2 and not isinstance(p[0], tuple)  # noqa: E731
    return {
        "mean": jax.tree_util.tree_map(lambda p: p[0], pairs, is_leaf=is_pair),
        "var": jax.tree_util.tree_map(lambda p: p[1], pairs, is_leaf=is_pair),
    }


def quantiles(x: jax.Array, log_weights: jax.Array, qs=(0.05, 0.95)) -> jax.Array:
    """Weighted quantiles ``(len(qs), *event)`` of ``x`` ``(n, *event)`` coordinate by coordinate.

    For each coordinate the particles are sorted and the ``q``-quantile is the first value whose
    cumulative normalised weight reaches ``q`` (the inverse of the weighted empirical CDF).
    ``log_weights`` need not be normalised.
    """
    log_w, _, _ = normalise_with_ess(log_weights)
    order = jnp.argsort(x, axis=0)
    w = jnp.exp(log_w).reshape(log_w.shape + (1,) * (x.ndim - 1))
    cdf = jnp.cumsum(jnp.take_along_axis(jnp.broadcast_to(w, x.shape), order, axis=0), axis=0)
    levels = jnp.asarray(qs, cdf.dtype).reshape((-1,) + (1,) * x.ndim)
    # the first index with cdf >= q; the last particle when rounding leaves the cdf just below q
    pick = jnp.minimum(jnp.sum(cdf[None] < levels, axis=1), x.shape[0] - 1)
    return jnp.take_along_axis(jnp.take_along_axis(x, order, axis=0), pick, axis=0)


def weight_statistics(x, log_weights: jax.Array) -> dict[str, jax.Array]:
    """Largest normalised weight ``max_i W_i`` and weight entropy ``-sum_i W_i log W_i`` (nats).

    Equal weights give ``1/N`` and ``log N``; one surviving particle gives ``1`` and ``0``. Suitable as
    ``smcflow.run(..., summary=weight_statistics)``, so that :func:`smcflow.diagnose` can report both
    at every time. ``x`` is ignored.
    """
    del x
    log_w, _, _ = normalise_with_ess(log_weights)
    w = jnp.exp(log_w)
    entropy = -jnp.sum(jnp.where(w > 0, w * log_w, 0.0), axis=-1)
    return {"max_weight": jnp.max(w, axis=-1), "entropy": entropy}
