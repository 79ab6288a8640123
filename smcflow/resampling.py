"""Resampling schemes.

A resampler is a pure function ``resample(key, log_weights, num) -> ancestors`` that takes normalised
log-weights of shape ``(N,)`` (``logsumexp(log_weights) == 0``) and returns ``num`` ancestor indices
(``int32``, shape ``(num,)``, each in ``[0, N)``). Every scheme here is unbiased: the expected number
of offspring of particle ``i`` is ``num * W_i`` with ``W_i = exp(log_weights[i])``. A particle whose
log-weight is ``-inf`` is never selected.

Float32 safety: the cumulative sum of the weights is divided by its own last entry, so the CDF ends at
exactly 1, and every uniform is clamped strictly below 1. Inverting a CDF that ends at 1 with ``u < 1``
can only return an index at which the CDF strictly increases, that is, a particle of positive weight,
whatever the rounding in the cumulative sum.

Cost: systematic, stratified, residual and SSP turn the CDF into per-particle offspring "slot ends" and
read the ancestors off a histogram of those ends (``O(N)``, no binary search); multinomial and killing
invert the CDF with ``searchsorted`` (``O(N log N)``).

Schemes (offspring-count variance, lowest last): multinomial > residual > stratified > systematic;
``ssp`` (Srinivasan sampling process) gives every particle ``floor(num*W_i)`` or ``ceil(num*W_i)``
offspring; ``killing`` keeps each particle with probability ``W_i / max W`` and redraws the others.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

Resampler = Callable[[jax.Array, jax.Array, int], jax.Array]

__all__ = [
    "Resampler",
    "multinomial",
    "systematic",
    "stratified",
    "residual",
    "ssp",
    "killing",
    "BUILTIN_RESAMPLERS",
    "offspring_counts",
]


def _weights(log_weights: jax.Array) -> jax.Array:
    """Weights rescaled so that the largest is 1 (no overflow, -inf -> 0)."""
    return jnp.exp(log_weights - jnp.max(log_weights))


def _cdf(weights: jax.Array) -> jax.Array:
    """Cumulative distribution of non-negative ``weights``: non-decreasing, flat over zero weights,
    and exactly 1 from the last positive weight on.

    XLA's parallel ``cumsum`` does not promise a non-decreasing result in floating point (rounding
    differs between positions), so the raw sums are passed through a running maximum, with zero-weight
    positions masked to 0 first so that they repeat their predecessor's value.
    """
    raw = jnp.cumsum(weights)
    # max is exact, so any scan tree gives the exact running maximum (associative_scan is the faster one).
    cdf = lax.associative_scan(jnp.maximum, jnp.where(weights > 0, raw, 0.0))
    return cdf / cdf[-1]


def _below_one(u: jax.Array) -> jax.Array:
    """Clamp uniforms to the largest float strictly below 1 of their dtype."""
    return jnp.minimum(u, jnp.nextafter(jnp.ones((), u.dtype), jnp.zeros((), u.dtype)))


def _invert_cdf(cdf: jax.Array, u: jax.Array) -> jax.Array:
    """Index ``i`` with ``cdf[i-1] <= u < cdf[i]`` for each ``u`` in ``[0, 1)``."""
    idx = jnp.searchsorted(cdf, _below_one(u), side="right")
    return jnp.minimum(idx, cdf.shape[0] - 1).astype(jnp.int32)


def multinomial(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Independent draws from the categorical distribution ``W``."""
    u = jax.random.uniform(key, (num,), dtype=log_weights.dtype)
    return _invert_cdf(_cdf(_weights(log_weights)), u)


def _ancestors_from_ends(ends: jax.Array, num: int) -> jax.Array:
    """Ancestor indices from non-decreasing offspring slot ends, in O(N + num).

    Particle ``i`` owns the output slots ``[ends[i-1], ends[i])`` (``ends[-1]`` read as 0), so the
    ancestor of slot ``j`` is ``#{i : ends[i] <= j}``. That count is a histogram of the ends followed
    by a cumulative sum: no sort and no binary search. Ends are clipped to ``[0, num]``; a particle
    whose slot is empty (zero weight) gets no offspring whatever its position. Slots not covered by
    any particle (only when the ends stop short of ``num``) map to the last particle.
    """
    ends = jnp.clip(ends, 0, num).astype(jnp.int32)
    starts_here = jnp.zeros((num + 1,), jnp.int32).at[ends].add(1)
    idx = jnp.cumsum(starts_here[:num])
    return jnp.minimum(idx, ends.shape[0] - 1).astype(jnp.int32)


def stratified(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """One uniform in each stratum: ``u_j = (j + U_j) / num`` with independent ``U_j``.

    Slot end of particle ``i`` (the number of ``u_j`` below ``cdf_i``): with ``k = floor(num*cdf_i)``
    every stratum below ``k`` lies under ``cdf_i`` and stratum ``k`` does when ``U_k < num*cdf_i - k``.
    """
    u = _below_one(jax.random.uniform(key, (num,), dtype=log_weights.dtype))
    scaled = num * _cdf(_weights(log_weights))
    k = jnp.floor(scaled)
    k_int = jnp.minimum(k.astype(jnp.int32), num - 1)
    ends = k + (u[k_int] < scaled - k)
    return _ancestors_from_ends(ends, num)


def systematic(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """One shared uniform shifted into every stratum: ``u_j = (j + U) / num``.

    Slot end of particle ``i``: ``#{j : (j + U)/num < cdf_i} = ceil(num*cdf_i - U)``.
    """
    u = _below_one(jax.random.uniform(key, (), dtype=log_weights.dtype))
    ends = jnp.ceil(num * _cdf(_weights(log_weights)) - u)
    return _ancestors_from_ends(ends, num)


def _counts_to_ancestors(counts: jax.Array, num: int) -> jax.Array:
    """Turn offspring counts (summing to ``num``) into sorted ancestor indices of length ``num``."""
    return _ancestors_from_ends(jnp.cumsum(counts), num)


def residual(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """``floor(num*W_i)`` deterministic copies, the remainder drawn multinomially from the residuals."""
    w = _weights(log_weights)
    expected = num * (w / jnp.sum(w))
    counts = jnp.floor(expected)
    n_fixed = jnp.sum(counts)
    fixed = _counts_to_ancestors(counts.astype(jnp.int32), num)
    remainder = jnp.maximum(expected - counts, 0.0)
    # When nothing remains (all num*W_i integers) the residual CDF is unused; keep it finite.
    remainder = jnp.where(jnp.sum(remainder) > 0, remainder, w)
    u = jax.random.uniform(key, (num,), dtype=log_weights.dtype)
    drawn = _invert_cdf(_cdf(remainder), u)
    position = jnp.arange(num, dtype=counts.dtype)
    return jnp.where(position < n_fixed, fixed, drawn)


def ssp(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Srinivasan sampling process: offspring counts are ``floor`` or ``ceil`` of ``num*W_i``.

    The fractional parts are settled pairwise in one pass (a ``lax.scan`` of length N, so this scheme
    is sequential). Pairing fractions ``a`` (carried) and ``b`` (next): if ``a+b <= 1`` one of the two
    takes ``a+b`` (the carried one with probability ``a/(a+b)``) and the other ends with 0; otherwise
    one ends with a whole extra offspring (the carried one with probability ``(1-b)/(2-a-b)``) and the
    other carries ``a+b-1``. Each pairing preserves both expectations, so ``E[count_i] = num*W_i``.
    """
    w = _weights(log_weights)
    expected = num * (w / jnp.sum(w))
    floors = jnp.floor(expected)
    frac = expected - floors
    n = log_weights.shape[0]
    u = jax.random.uniform(key, (n,), dtype=log_weights.dtype)
    counts = floors.astype(jnp.int32)

    def pair(carry, inputs):
        i, a, counts = carry
        j, b, uj = inputs
        s = a + b
        tiny = jnp.finfo(s.dtype).tiny
        low = s <= 1.0
        # low case: survivor keeps s; the carried particle survives with probability a / s
        keep_i_low = uj * s < a
        # high case: one particle gets a whole offspring; the carried one with prob (1-b)/(2-s)
        full_i_high = uj * jnp.maximum(2.0 - s, tiny) < (1.0 - b)
        carried_if_low = jnp.where(keep_i_low, i, j)
        full = jnp.where(full_i_high, i, j)
        carried_if_high = jnp.where(full_i_high, j, i)
        counts = counts.at[full].add(jnp.where(low, 0, 1))
        new_i = jnp.where(low, carried_if_low, carried_if_high)
        new_a = jnp.where(low, s, s - 1.0)
        return (new_i, new_a, counts), None

    init = (jnp.int32(0), frac[0], counts)
    rest = (jnp.arange(1, n, dtype=jnp.int32), frac[1:], u[1:])
    (last, a, counts), _ = lax.scan(pair, init, rest)
    # The last carried fraction is 0 or 1 up to rounding.
    counts = counts.at[last].add(jnp.round(a).astype(jnp.int32))
    return _counts_to_ancestors(counts, num)


def killing(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Keep particle ``i`` with probability ``W_i / max W``; replace the others by multinomial draws.

    Requires ``num == N`` (it decides the fate of each existing particle).
    """
    n = log_weights.shape[0]
    if num != n:
        raise ValueError(f"killing resampling needs num == N, got num={num}, N={n}")
    key_keep, key_draw = jax.random.split(key)
    w = _weights(log_weights)  # max is 1, so w is W_i / max W
    keep = jax.random.uniform(key_keep, (n,), dtype=log_weights.dtype) < w
    drawn = multinomial(key_draw, log_weights, n)
    return jnp.where(keep, jnp.arange(n, dtype=jnp.int32), drawn)


BUILTIN_RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
    "ssp": ssp,
    "killing": killing,
}


def offspring_counts(ancestors: jax.Array, n: int) -> jax.Array:
    """Number of offspring of each of ``n`` particles given ``ancestors`` of shape ``(num,)``."""
    return jnp.bincount(ancestors, length=n)
