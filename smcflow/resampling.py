"""Resampling schemes.

A resampler is a pure function ``resample(key, log_weights, num) -> ancestors`` that takes normalised
log-weights of shape ``(N,)`` (``logsumexp(log_weights) == 0``) and returns ``num`` ancestor indices
(``int32``, shape ``(num,)``, each in ``[0, N)``). Every scheme here is unbiased: the expected number
of offspring of particle ``i`` is ``num * W_i`` with ``W_i = exp(log_weights[i])`` (to the precision
stated below). A particle whose log-weight is ``-inf`` is never selected.

**Fixed-point CDF.** XLA's parallel float ``cumsum`` is not monotone: rounding differs between
positions, so a zero-weight particle can show a positive CDF increment (thousands of them at
``N = 10^6`` in float32 on CPU) and then be selected. Every scheme here therefore quantises the weights
to integers and works with their integer prefix sum::

    x_i = w_i * 2^B / S,   w_i = exp(log_weights[i] - max),   S = sum_i w_i,
    q_i = floor(x_i) + [x_i - floor(x_i) > U_i],   C_i = q_0 + ... + q_i,   T = C_{N-1} (about 2^B).

Integer addition is exact, so in one ``cumsum`` pass, in whatever order XLA adds, ``C`` is
non-decreasing and exactly flat over zero weights (``x_i = 0`` gives ``q_i = 0`` whatever ``U_i``).
Then:

* multinomial, killing: random bits ``b`` give integer targets ``v = floor(b * T / 2^32)`` in
  ``[0, T)`` (``2^64`` for int64); ``searchsorted(C, v, side="right")`` returns the ``i`` with
  ``C_{i-1} <= v < C_i``, a position where ``C`` strictly increases, i.e. ``q_i > 0``.
* systematic, stratified: the slot end of particle ``i`` is ``#{j : j*T + u_j < num*C_i}`` with
  integer uniforms ``u_j`` in ``[0, T)``, computed exactly as ``k_i + [u < r_i]`` from the integer
  division ``num*C_i = k_i*T + r_i``. The ends are an exact, hence non-decreasing, function of ``C_i``:
  a zero weight gets an empty slot, and the last end is exactly ``num``.
* residual, ssp: ``k_i`` and ``r_i`` of the same division applied to ``q_i`` are the integer part and
  the fraction (in units of ``1/T``) of ``num * q_i / T``; fractions are settled in integers, so the
  counts add up to exactly ``num``.

**Rounding and unbiasedness.** ``q_i`` rounds ``x_i`` down or up at random (``U_i`` uniform in
``[0, 1)``, from a Weyl sequence over the particle index started at a random word, so ``E[q_i] = x_i`` exactly
and costs no PRNG pass). Given ``q``, every scheme above is exactly unbiased: particle ``i`` has
``num * q_i / T`` expected offspring (up to ``2^-32`` of ``num`` per particle from mapping random bits
to ``[0, T)``; killing's keep step uses ``w_i`` itself). Averaged over the rounding,
``E[q_i / T] = W_i (1 + O(N 2^-2B))``; so the offspring mean is ``num * W_i`` to the precision of
float32 (a few ``2^-24`` relative: the rounding of ``w_i`` itself). A weight far below the quantum
``2^-B`` of the total keeps its chance: it gets one quantum with probability ``x_i`` and is otherwise
0. Plain ``floor`` would not do: a weight below ``2^-B`` of the total would never be selected, and
the lost fractions (``N/2`` quanta on average, up to ``N``) would go to every particle in proportion
to its weight, a relative bias of ``N 2^-31`` to ``N 2^-30`` (``5e-4`` to ``1e-3`` at ``N = 10^6``;
measured: 406 surplus offspring, of 500,000, for a particle of weight 1/2 among ``10^6 - 1`` equal
ones). For comparison, a float32 CDF moves in steps of ``2^-24`` near 1 and is rounded
deterministically (a weight below ``2^-25`` can count as 0 or as ``2^-24``), float32 uniforms come in
steps of ``2^-23`` and ``num * cdf`` has a spacing of 1/16 offspring at ``num = 10^6``.

**Widths.** float32 (and narrower) weights use int32 and ``B = 30`` (``T < 2^31`` with room for the
rounding of ``S``) for ``num`` up to ``2^24 / 10`` (about 1.7 million), one bit less per doubling of
``num`` beyond (see :func:`_fixed_point`). float64 weights (``jax_enable_x64``) use int64 and
``B = 62``, finer than float64's own ``2^-53``.

Cost: systematic, stratified, residual and SSP turn the CDF into per-particle offspring "slot ends" and
read the ancestors off a histogram of those ends (``O(N)``, no binary search); multinomial and killing
invert the CDF with ``searchsorted`` (``O(N log N)``).

Schemes (offspring-count variance, lowest last): multinomial > residual > stratified > systematic;
``ssp`` (Srinivasan sampling process) gives every particle ``floor(num*W_i)`` or ``ceil(num*W_i)``
offspring; ``killing`` keeps each particle with probability ``W_i / max W`` and redraws the others.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .prng import streams

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


class _FixedPoint(NamedTuple):
    """Static layout of the fixed-point weights for one weight dtype and output size."""

    float_dtype: np.dtype  # weights are computed in this dtype
    int_dtype: np.dtype  # signed integers of the quantised weights and their prefix sums
    uint_dtype: np.dtype  # same width, unsigned (wrap-around products, random bits)
    bits: int  # B: weights are multiples of 2^-B of the total
    near: bool  # _divide's float estimate is within one step of the quotient


def _fixed_point(dtype, num: int | None = None) -> _FixedPoint:
    """Fixed point for weights of ``dtype``; pass ``num`` when slot ends ``num * C_i / T`` are needed.

    The integers have width ``W`` (32 for float32 and narrower, 64 for float64) and ``B = W - 2``
    fraction bits, so ``T`` stays below ``2^(W-1)`` with a factor 2 to spare for the rounding of ``S``.
    The division ``num * C = k * T + r`` (:func:`_divide`) starts from the float estimate
    ``round(C * (num / T))``, off from the exact ``num * C / T`` by at most ``eps = 5 u num`` (five
    roundings, unit roundoff ``u``), so that its remainder lies within ``(1/2 + eps) T`` of 0. That must
    fit the signed integers, which lowers ``B`` once ``eps >= 1/2`` (float32: ``num >= 2^24 / 10``,
    about 1.7 million), by one bit per doubling of ``num``.
    """
    if jnp.dtype(dtype) == jnp.float64:
        fdt, idt, udt = jnp.dtype(jnp.float64), jnp.dtype(jnp.int64), jnp.dtype(jnp.uint64)
    else:
        fdt, idt, udt = jnp.dtype(jnp.float32), jnp.dtype(jnp.int32), jnp.dtype(jnp.uint32)
    width = 8 * idt.itemsize
    eps = 5.0 * float(jnp.finfo(fdt).eps) / 2 * (num or 0)
    bits = width - 2 - max(0, math.ceil(math.log2(0.5 + eps)))
    return _FixedPoint(fdt, idt, udt, bits, eps < 0.5)


def _prefix_sum(a: jax.Array) -> jax.Array:
    """Inclusive prefix sum of integers held in memory (a scatter's output): exact in any order, so the
    parallel ``associative_scan`` is used (on CPU about 3x faster than ``jnp.cumsum``, which XLA lowers
    to a windowed reduction, at N = 10^6)."""
    return lax.associative_scan(jnp.add, a)


def _cdf(q: jax.Array) -> jax.Array:
    """Integer CDF of the quantised weights with ``jnp.cumsum``, which reads ``q`` once.

    ``associative_scan`` reads its input through several strided slices, and XLA fuses the whole
    computation of ``q`` (weights, dither, the PRNG words) into each of them: with philox or
    threefry4x32 keys, whose rounds are straight-line code, that made the resampler 5x slower.
    """
    return jnp.cumsum(q)


def _weights(log_weights: jax.Array, fp: _FixedPoint) -> jax.Array:
    """Weights rescaled so that the largest is 1 (no overflow, -inf -> 0)."""
    lw = log_weights.astype(fp.float_dtype)
    return jnp.exp(lw - jnp.max(lw))


# Weyl increments (2^W / golden ratio, odd) per integer width
_WEYL = {32: 0x9E3779B9, 64: 0x9E3779B97F4A7C15}


def _dither(key: jax.Array, n: int, fp: _FixedPoint) -> jax.Array:
    """``n`` uniforms in ``[0, 1)``, each exactly uniform on a grid of ``2^-24`` (float64: ``2^-53``).

    One random word ``s`` and a Weyl sequence ``s + i * phi`` (mod ``2^W``) over the index: for each
    index the result is a bijection of the uniform ``s``, hence uniform, which is all the rounding's
    unbiasedness needs (neighbours are correlated, in a low-discrepancy way that only makes the total
    rounding error smaller). One multiply-add per particle instead of a PRNG pass or a hash.
    """
    width = 8 * fp.uint_dtype.itemsize
    x = jnp.arange(n, dtype=fp.uint_dtype) * fp.uint_dtype.type(_WEYL[width]) + jax.random.bits(key, (), fp.uint_dtype)
    mantissa = jnp.finfo(fp.float_dtype).nmant + 1
    return (x >> (width - mantissa)).astype(fp.float_dtype) * (2.0**-mantissa)


def _quantise(key: jax.Array, weights: jax.Array, fp: _FixedPoint) -> jax.Array:
    """Integers with mean ``x_i = w_i * 2^B / sum w``: ``x_i`` rounded down or up at random.

    ``q_i`` is exactly 0 for a zero weight and the total stays below ``2^B (1 + rounding) + N``.
    """
    x = weights * (2.0**fp.bits / jnp.sum(weights))
    whole = jnp.floor(x)
    up = x - whole > _dither(key, x.shape[0], fp)  # x - whole is exact
    return whole.astype(fp.int_dtype) + up.astype(fp.int_dtype)


def _mulhi(x: jax.Array, y: jax.Array) -> jax.Array:
    """``floor(x * y / 2^W)`` for unsigned ``W``-bit integers, from half-width products (no overflow)."""
    half = 4 * x.dtype.itemsize
    mask = jnp.asarray((1 << half) - 1, x.dtype)
    x0, x1 = x & mask, x >> half
    y0, y1 = y & mask, y >> half
    t = x1 * y0 + ((x0 * y0) >> half)
    w = (t & mask) + x0 * y1
    return x1 * y1 + (t >> half) + (w >> half)


def _uniform_below(key: jax.Array, shape: tuple[int, ...], total: jax.Array, fp: _FixedPoint) -> jax.Array:
    """Integers in ``[0, total)``, each value's probability within ``2^-W`` of ``1 / total``."""
    bits = jax.random.bits(key, shape, fp.uint_dtype)
    return _mulhi(bits, total.astype(fp.uint_dtype)).astype(fp.int_dtype)


def _divide(c: jax.Array, num: int, total: jax.Array, fp: _FixedPoint) -> tuple[jax.Array, jax.Array]:
    """``(k, r)`` with ``num * c = k * total + r`` and ``0 <= r < total``, exactly, for ``0 <= c <= total``.

    ``k`` is first estimated in floating point; the remainder of that estimate is computed with
    wrap-around unsigned products (exact, since the true remainder fits the signed integers; see
    :func:`_fixed_point`) and corrected: by one step of ``total`` when the estimate is that close
    (the usual case; it fuses into the last pass of the ``cumsum``), else by an integer division.
    """
    ratio = num / total.astype(fp.float_dtype)
    k = jnp.round(c.astype(fp.float_dtype) * ratio).astype(fp.int_dtype)
    product = c.astype(fp.uint_dtype) * num - k.astype(fp.uint_dtype) * total.astype(fp.uint_dtype)
    r = lax.bitcast_convert_type(product, fp.int_dtype)
    if fp.near:  # r in (-total, total)
        negative = r < 0
        return k - negative.astype(k.dtype), jnp.where(negative, r + total, r)
    steps = jnp.floor_divide(r, total)
    return k + steps, r - steps * total


def _invert(key: jax.Array, q: jax.Array, num: int, fp: _FixedPoint) -> jax.Array:
    """``num`` independent draws of ``i`` with probability ``q_i / sum q`` (never one with ``q_i = 0``)."""
    cdf = _cdf(q)
    v = _uniform_below(key, (num,), cdf[-1], fp)
    idx = jnp.searchsorted(cdf, v, side="right")
    return jnp.minimum(idx, q.shape[0] - 1).astype(jnp.int32)


def multinomial(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Independent draws from the categorical distribution ``W``."""
    key_round, key_draw = streams(key, 2)
    fp = _fixed_point(log_weights.dtype)
    return _invert(key_draw, _quantise(key_round, _weights(log_weights, fp), fp), num, fp)


def _ancestors_from_ends(ends: jax.Array, num: int) -> jax.Array:
    """Ancestor indices from non-decreasing offspring slot ends, in O(N + num).

    Particle ``i`` owns the output slots ``[ends[i-1], ends[i])`` (``ends[-1]`` read as 0), so the
    ancestor of slot ``j`` is ``#{i : ends[i] <= j}``. That count is a histogram of the ends followed
    by a cumulative sum: no sort and no binary search. Ends are clipped to ``[0, num]``; a particle
    whose slot is empty (zero weight) gets no offspring whatever its position. Slots not covered by
    any particle (only when the ends stop short of ``num``) map to the last particle.
    """
    ends = jnp.clip(ends, 0, num).astype(jnp.int32)
    # in bounds by the clip: promising it lets XLA drop the per-element bounds check (about 20% of
    # this scatter's time on CPU at N = 10^6)
    starts_here = jnp.zeros((num + 1,), jnp.int32).at[ends].add(1, mode="promise_in_bounds")
    idx = _prefix_sum(starts_here[:num])
    return jnp.minimum(idx, ends.shape[0] - 1).astype(jnp.int32)


def _slot_division(key: jax.Array, log_weights: jax.Array, num: int):
    """``(k, r, T, fp)``: ``num * C_i = k_i * T + r_i`` for the fixed-point CDF ``C`` of the weights."""
    fp = _fixed_point(log_weights.dtype, num)
    cdf = _cdf(_quantise(key, _weights(log_weights, fp), fp))
    total = cdf[-1]
    k, r = _divide(cdf, num, total, fp)
    return k, r, total, fp


def stratified(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """One uniform in each stratum: ``u_j = (j + U_j) / num`` with independent ``U_j``.

    In units of ``1/T`` the points are ``(j*T + u_j) / num`` with integers ``u_j`` uniform in ``[0, T)``.
    Slot end of particle ``i`` (the number of points below ``C_i``): with ``num*C_i = k*T + r`` every
    stratum below ``k`` lies under ``C_i`` and stratum ``k`` does when ``u_k < r``.
    """
    key_round, key_draw = streams(key, 2)
    k, r, total, fp = _slot_division(key_round, log_weights, num)
    u = _uniform_below(key_draw, (num,), total, fp)
    ends = k + (u[jnp.minimum(k, num - 1)] < r)
    return _ancestors_from_ends(ends, num)


def systematic(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """One shared uniform shifted into every stratum: ``u_j = (j + U) / num``.

    Slot end of particle ``i``: ``#{j : (j + U)/num < C_i/T} = k + [u < r]`` with ``num*C_i = k*T + r``
    and the integer uniform ``u`` in ``[0, T)`` (``U = u / T``), i.e. ``ceil(num*C_i/T - U)``.
    """
    key_round, key_draw = streams(key, 2)
    k, r, total, fp = _slot_division(key_round, log_weights, num)
    u = _uniform_below(key_draw, (), total, fp)
    return _ancestors_from_ends(k + (u < r), num)


def _counts_to_ancestors(counts: jax.Array, num: int) -> jax.Array:
    """Turn offspring counts (summing to ``num``) into sorted ancestor indices of length ``num``."""
    return _ancestors_from_ends(_cdf(counts), num)


def _expected_counts(key: jax.Array, log_weights: jax.Array, num: int):
    """``(k, r, T, fp)``: ``num * q_i / T = k_i + r_i / T`` for the quantised weights ``q``.

    The fractions add up to exactly ``(num - sum k) * T``.
    """
    fp = _fixed_point(log_weights.dtype, num)
    q = _quantise(key, _weights(log_weights, fp), fp)
    total = jnp.sum(q)
    k, r = _divide(q, num, total, fp)
    return k, r, total, fp


def residual(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """``floor(num*W_i)`` deterministic copies, the remainder drawn multinomially from the residuals."""
    key_round, key_round_rest, key_draw = streams(key, 3)
    counts, frac, _, fp = _expected_counts(key_round, log_weights, num)
    n_fixed = jnp.sum(counts)
    fixed = _counts_to_ancestors(counts, num)
    # When nothing remains (all num*W_i integers) the residual draws are unused; keep them well defined.
    rest = jnp.where(n_fixed < num, frac, counts).astype(fp.float_dtype)
    drawn = _invert(key_draw, _quantise(key_round_rest, rest, fp), num, fp)
    return jnp.where(jnp.arange(num) < n_fixed, fixed, drawn)


def ssp(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Srinivasan sampling process: offspring counts are ``floor`` or ``ceil`` of ``num*W_i``.

    The fractional parts (integers ``r_i``, in units of ``1/T``) are settled pairwise in one pass (a
    ``lax.scan`` of length N, so this scheme is sequential). Pairing fractions ``a`` (carried) and
    ``b`` (next): if ``a+b <= 1`` one of the two takes ``a+b`` (the carried one with probability
    ``a/(a+b)``) and the other ends with 0; otherwise one ends with a whole extra offspring (the carried
    one with probability ``(1-b)/(2-a-b)``) and the other carries ``a+b-1``. Each pairing preserves
    both expectations, so ``E[count_i] = num*W_i``. The fractions are added exactly, so the last
    carried one is exactly 0 or 1 and the counts add up to ``num``; a zero fraction is never carried
    on, so a zero weight gets no offspring.
    """
    key_round, key_pair = streams(key, 2)
    counts, frac, total, fp = _expected_counts(key_round, log_weights, num)
    n = log_weights.shape[0]
    u = jax.random.uniform(key_pair, (n,), dtype=fp.float_dtype)
    one = total.astype(fp.float_dtype)

    def pair(carry, inputs):
        i, a, counts = carry
        j, b, uj = inputs
        low = a <= total - b  # a + b <= T, without overflow
        af, bf = a.astype(fp.float_dtype), b.astype(fp.float_dtype)
        # low case: survivor keeps a+b; the carried particle survives with probability a / (a+b)
        keep_i_low = uj * (af + bf) < af
        # high case: one particle gets a whole offspring; the carried one with prob (1-b)/(2-a-b)
        full_i_high = uj * ((one - af) + (one - bf)) < (one - bf)
        carried_if_low = jnp.where(keep_i_low, i, j)
        full = jnp.where(full_i_high, i, j)
        carried_if_high = jnp.where(full_i_high, j, i)
        counts = counts.at[full].add(jnp.where(low, 0, 1).astype(counts.dtype))
        new_i = jnp.where(low, carried_if_low, carried_if_high)
        new_a = jnp.where(low, a + b, a - (total - b))
        return (new_i, new_a, counts), None

    init = (jnp.int32(0), frac[0], counts)
    rest = (jnp.arange(1, n, dtype=jnp.int32), frac[1:], u[1:])
    (last, a, counts), _ = lax.scan(pair, init, rest)
    counts = counts.at[last].add((a > 0).astype(counts.dtype))  # a is exactly 0 or T
    return _counts_to_ancestors(counts, num)


def killing(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """Keep particle ``i`` with probability ``W_i / max W``; replace the others by multinomial draws.

    Requires ``num == N`` (it decides the fate of each existing particle).
    """
    n = log_weights.shape[0]
    if num != n:
        raise ValueError(f"killing resampling needs num == N, got num={num}, N={n}")
    key_keep, key_round, key_draw = streams(key, 3)
    fp = _fixed_point(log_weights.dtype)
    w = _weights(log_weights, fp)  # max is 1, so w is W_i / max W
    keep = jax.random.uniform(key_keep, (n,), dtype=fp.float_dtype) < w
    drawn = _invert(key_draw, _quantise(key_round, w, fp), n, fp)
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
