"""Adaptive tempering: the next exponent of a family of incremental log-weights affine in it.

**The family.** At a reweighting the weighted particles ``(x_i, W_i)`` (normalised log-weights
``log W (n,)``, ``logsumexp = 0``) target ``pi_prev`` at exponent ``lam_prev``. Moving on to exponent
``lam`` multiplies particle ``i``'s weight by ``exp(inc_i(lam))`` with

    inc_i(lam) = base_i + (lam - lam_prev) * slope_i          (base, slope: (n,))

Likelihood tempering of a static target ``prior * likelihood**lam`` is ``base = 0``,
``slope = log-likelihood``; steering a path with intermediate potentials ``lam * G_k`` has
``base = Girsanov term + lam_prev * (G_{k+1} - G_k)`` and ``slope = G_{k+1}``.

**The rule.** The conditional ESS (Zhou, Johansen and Aston, 2016) of the increments, as a fraction of
``n``,

    cess(lam) = (sum_i W_i g_i)^2 / sum_i W_i g_i^2        (g_i = exp(inc_i(lam))),   in (0, 1],

measures how much of the current particle system survives the reweighting (it is the ESS fraction of
the increments when the weights are equal). The adaptive rule picks ``lam`` in ``(lam_prev, 1]`` with
``cess(lam) = target``: ``lam = 1`` exactly when ``cess(1) >= target``, else a bisection on
``log cess`` over a fixed number of halvings (jittable, vmappable, no host synchronisation). The
bisection returns the upper end of its final bracket, so a call makes progress even when some
increments are ``-inf`` (``cess`` then jumps below ``target`` as soon as ``lam > lam_prev``). When no
exponent reaches the target (``cess`` of ``base`` alone is below it, possible when ``base != 0``) the
rule returns the smallest step it resolves, ``2**-40`` of ``1 - lam_prev`` (it may round to ``lam_prev``);
callers that must advance (likelihood tempering, ``base = 0``) never meet that case.

**Frozen mode.** A schedule chosen from the particles makes the potentials depend on the particle
system, so ``exp(log Z_hat)`` is no longer exactly unbiased (the bias is O(1/n)). Replaying the
exponents recorded by a pilot run (:attr:`Tempering.exponents`) restores exact unbiasedness; so does
any fixed schedule whose last exponent is 1.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

__all__ = ["Tempering", "adaptive", "frozen", "increment", "log_conditional_ess", "next_exponent", "exponent_at",
           "check_target_ess", "check_exponents"]

#: halvings of the remaining interval ``1 - lam_prev``: its resolution is 2**-40 of that interval
N_BISECTION = 40


class Tempering(NamedTuple):
    """How exponents are chosen: adaptively (``exponents is None``) or replayed (frozen).

    Attributes:
      target_ess: ``()`` target conditional-ESS fraction in (0, 1) (used in adaptive mode).
      exponents: ``None``, or ``(K,)`` exponents ``lam_1 .. lam_K`` to replay (``lam_0 = 0`` implied).
    """

    target_ess: Any
    exponents: Any = None

    @property
    def is_frozen(self) -> bool:
        return self.exponents is not None


def check_target_ess(value: Any, name: str = "target_ess") -> float:
    """A real number strictly inside (0, 1)."""
    if isinstance(value, (str, bytes, bool)) or value is None or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    v = float(value)
    if not 0.0 < v < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie strictly inside (0, 1), got {v}")
    return v


def check_exponents(exponents: Any, name: str = "exponents", strict: bool = True) -> np.ndarray:
    """A frozen schedule: a non-empty 1-D sequence whose last entry is exactly 1, increasing strictly
    inside (0, 1] (``strict``), or non-decreasing inside [0, 1] (``strict=False``: a steering schedule
    ``lam_0 .. lam_K``, which may start at 0 and repeat an exponent, see :mod:`smcflow.scaling.steer`)."""
    arr = np.asarray(exponents, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of exponents, got shape {arr.shape}")
    if strict:
        ordered = arr[0] > 0.0 and np.all(np.diff(arr) > 0.0)
    else:
        ordered = arr[0] >= 0.0 and np.all(np.diff(arr) >= 0.0)
    if not (np.all(np.isfinite(arr)) and ordered):
        kind = "increase strictly inside (0, 1]" if strict else "be non-decreasing inside [0, 1]"
        raise ValueError(f"{name} must {kind}, got {arr}")
    if arr[-1] != 1.0:
        raise ValueError(f"{name} must end at exactly 1 (the target), got last exponent {arr[-1]!r}")
    return arr


def adaptive(target_ess: float = 0.5) -> Tempering:
    """Adaptive exponents hitting the conditional-ESS fraction ``target_ess`` in (0, 1)."""
    return Tempering(check_target_ess(target_ess))


def frozen(exponents: Any) -> Tempering:
    """Replay ``exponents`` (``lam_1 .. lam_K``, last exactly 1), e.g. a pilot run's schedule."""
    return Tempering(0.5, check_exponents(exponents))


def increment(base: jax.Array, slope: jax.Array, lam: jax.Array, lam_prev: jax.Array) -> jax.Array:
    """``inc_i(lam) = base_i + (lam - lam_prev) slope_i`` with ``0 * (-inf) = 0`` (no step, no change)."""
    delta = jnp.asarray(lam - lam_prev, slope.dtype)
    return base + jnp.where(delta == 0, 0.0, delta * slope)


def log_conditional_ess(log_w: jax.Array, log_inc: jax.Array) -> jax.Array:
    """``log cess``: ``2 logsumexp(log W + inc) - logsumexp(log W + 2 inc)`` for normalised ``log W (n,)``.

    ``-inf`` when every increment of a live particle is ``-inf``.
    """
    first = logsumexp(log_w + log_inc)
    second = logsumexp(log_w + 2.0 * log_inc)
    return jnp.where(jnp.isneginf(first), -jnp.inf, 2.0 * first - second)


def next_exponent(log_w: jax.Array, base: jax.Array, slope: jax.Array, lam_prev: jax.Array,
                  target_ess: jax.Array, n_bisection: int = N_BISECTION) -> jax.Array:
    """The adaptive rule: ``lam`` in ``(lam_prev, 1]`` with ``cess(lam) = target_ess``; exactly 1 if reachable.

    Args:
      log_w: ``(n,)`` normalised log-weights of the current particles.
      base, slope: ``(n,)`` the affine increments (module docstring).
      lam_prev: ``()`` the current exponent, ``< 1``.
      target_ess: ``()`` fraction in (0, 1).
    Returns:
      ``()`` the next exponent, in the dtype of ``slope``.
    """
    dtype = slope.dtype
    lam_prev = jnp.asarray(lam_prev, dtype)
    log_target = jnp.log(jnp.asarray(target_ess, dtype))
    room = 1.0 - lam_prev

    def ok(s):
        return log_conditional_ess(log_w, increment(base, slope, lam_prev + s * room, lam_prev)) >= log_target

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        return jnp.where(good, mid, lo), jnp.where(good, hi, mid)

    _, hi = lax.fori_loop(0, n_bisection, halve, (jnp.zeros((), dtype), jnp.ones((), dtype)))
    return jnp.where(ok(jnp.ones((), dtype)), jnp.ones((), dtype), jnp.minimum(lam_prev + hi * room, 1.0))


def exponent_at(tempering: Tempering, t: jax.Array, log_w: jax.Array, base: jax.Array, slope: jax.Array,
                lam_prev: jax.Array) -> jax.Array:
    """The exponent of reweighting ``t`` (0-based): ``exponents[t]`` when frozen (1 past its end), else
    :func:`next_exponent`. ``tempering.is_frozen`` is static, so one branch is compiled."""
    if tempering.is_frozen:
        table = jnp.asarray(tempering.exponents, slope.dtype)
        return jnp.where(t < table.shape[0], table[jnp.minimum(t, table.shape[0] - 1)], 1.0).astype(slope.dtype)
    return next_exponent(log_w, base, slope, lam_prev, tempering.target_ess)
