"""Log-space weight arithmetic. Nothing here exponentiates an unnormalised weight."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

__all__ = ["normalise", "normalise_with_ess", "ess", "log_mean_exp", "moments"]


def normalise(log_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return ``(log_W, log_sum)`` with ``log_W = log_weights - log_sum`` and ``log_sum = logsumexp``.

    If every weight is ``-inf`` the log-sum is ``-inf`` and ``log_W`` is uniform (``-log N``), so no
    NaN is produced; callers detect the failure from ``log_sum == -inf``.
    """
    log_sum = logsumexp(log_weights, axis=-1)
    n = log_weights.shape[-1]
    dead = jnp.isneginf(log_sum)
    safe_sum = jnp.where(dead, 0.0, log_sum)
    uniform = jnp.full_like(log_weights, -jnp.log(n))
    log_w = jnp.where(dead[..., None], uniform, log_weights - safe_sum[..., None])
    return log_w, log_sum


def normalise_with_ess(log_weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log_W, log_sum, ESS)`` of a 1-D vector of log-weights from one pass of ``exp``.

    With ``m = max_i a_i``, ``e_i = exp(a_i - m)``, ``S1 = sum e_i`` and ``S2 = sum e_i^2``:
    ``log_sum = m + log S1``, ``log_W = a - log_sum`` and ``ESS = S1^2 / S2``. If every weight is
    ``-inf``, ``log_sum = -inf``, ``log_W`` is uniform and ``ESS = N`` (as :func:`normalise` and
    :func:`ess` give). A NaN or ``+inf`` entry makes ``log_sum`` NaN or ``+inf``: callers screen for it.
    """
    n = log_weights.shape[-1]
    top = jnp.max(log_weights)
    dead = jnp.isneginf(top)
    shifted = log_weights - jnp.where(dead, 0.0, top)
    e = jnp.exp(shifted)
    s1, s2 = jnp.sum(e), jnp.sum(e * e)
    log_sum = jnp.where(dead, -jnp.inf, top + jnp.log(s1))
    log_w = jnp.where(dead, -jnp.log(n), shifted - jnp.log(s1))
    return log_w.astype(log_weights.dtype), log_sum, jnp.where(dead, n, s1 * s1 / s2).astype(log_weights.dtype)


def ess(log_weights: jax.Array) -> jax.Array:
    """Effective sample size ``1 / sum_i W_i^2`` of normalised log-weights (last axis)."""
    return jnp.exp(-logsumexp(2.0 * log_weights, axis=-1))


def log_mean_exp(values: jax.Array, axis: int = -1) -> jax.Array:
    """``log(mean(exp(values)))`` along ``axis``, stably."""
    return logsumexp(values, axis=axis) - jnp.log(values.shape[axis])


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
