"""The SMC kernel: a pure one-step function of a state pytree, and :func:`run` is a ``lax.scan`` over it.

A user may step by hand, e.g. to filter online as observations arrive::

    k_init, k_steps = jax.random.split(key)
    state = smcflow.init_state(model, k_init, n)
    for t in range(model.n_steps):
        state, info = smcflow.step(model, state, k_steps, t)

which gives bitwise the same particles, weights and log-evidence as ``smcflow.run(model, key, n)``
with the same resampling options. One step, with normalised log-weights ``log W`` carried in the
state (``logsumexp = 0``)::

    if schedule says so (e.g. ESS(W) < threshold * N):
        a ~ resampler(W);  x <- x[a];  log W <- -log N
    x', log g = model.step(k_move, t, x)
    log Z += logsumexp(log W + log g)
    log W' = log W + log g - logsumexp(log W + log g)

so weights are multiplied (not overwritten) when a step does not resample, and ``exp(log Z)`` is an
unbiased estimate of the normalising constant in every schedule.

Failures are recorded, never returned as a silent NaN: a NaN or ``+inf`` log-potential of a live
particle gives that particle weight zero and sets a :class:`~smcflow.errors.Failure` code; a ``-inf``
potential simply kills the particle (a hard constraint), and anything computed for a particle that is
already dead (weight zero) is ignored; NaN in a live particle's state is caught at each resampling.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from . import weights as W
from .errors import Failure
from .resampling import Resampler
from .schedule import Schedule

__all__ = ["SMCState", "StepInfo", "initial_state", "advance", "reweigh", "record_failure", "nan_in_live_particles"]


class SMCState(NamedTuple):
    """State of one SMC run between steps.

    Attributes:
      particles: pytree with leading axis ``N``.
      log_weights: ``(N,)`` normalised log-weights.
      log_evidence: ``()`` running estimate of ``log Z``.
      ess: ``()`` effective sample size of ``log_weights``.
      failure: ``()`` int32 :class:`~smcflow.errors.Failure` code of the first failure (0: none).
      failure_time: ``()`` int32 time of that failure, ``-1`` if none.
    """

    particles: Any
    log_weights: jax.Array
    log_evidence: jax.Array
    ess: jax.Array
    failure: jax.Array
    failure_time: jax.Array


class StepInfo(NamedTuple):
    """What one :func:`step` did: ESS after reweighting, whether it resampled (just before moving),
    the log-evidence increment ``log Z_{t+1} - log Z_t`` and the ancestors ``(N,)`` of the new particles
    (the identity when it did not resample)."""

    ess: jax.Array
    resampled: jax.Array
    log_evidence_increment: jax.Array
    ancestors: jax.Array


def _screened(log_w: jax.Array, log_g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Potentials with NaN/+inf replaced by ``-inf``; and the failure code for live particles."""
    live = ~jnp.isneginf(log_w)
    nan, posinf = jnp.isnan(log_g), jnp.isposinf(log_g)
    code = jnp.where(jnp.any(nan & live), Failure.POTENTIAL_NAN,
                     jnp.where(jnp.any(posinf & live), Failure.POTENTIAL_POSINF, Failure.NONE))
    return jnp.where(nan | posinf, -jnp.inf, log_g), code.astype(jnp.int32)


def reweigh(log_w: jax.Array, log_g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Normalised ``log_w + log_g``, its log-sum, ESS, and the failure code of the potentials.

    The fast path trusts ``log_g``; a NaN/+inf potential shows up as a NaN/+inf log-sum, and only then
    are bad potentials replaced by ``-inf`` and the sums redone (``lax.cond``).
    """
    new = W.normalise_with_ess(log_w + log_g)
    suspicious = jnp.isnan(new[1]) | jnp.isposinf(new[1])

    def screened(_):
        log_g_ok, code = _screened(log_w, log_g)
        return (*W.normalise_with_ess(log_w + log_g_ok), code)

    def trusted(_):
        return (*new, jnp.int32(Failure.NONE))

    return lax.cond(suspicious, screened, trusted, None)


def record_failure(state_failure: jax.Array, state_time: jax.Array, code: jax.Array, t: Any,
                   log_sum: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Keep the first failure (code, time); an all-dead log-sum counts as :attr:`Failure.ALL_DEAD`."""
    if log_sum is not None:
        code = jnp.where((code == Failure.NONE) & jnp.isneginf(log_sum), Failure.ALL_DEAD, code)
    first = (state_failure == Failure.NONE) & (code != Failure.NONE)
    return (jnp.where(first, code, state_failure).astype(jnp.int32),
            jnp.where(first, jnp.asarray(t, jnp.int32), state_time).astype(jnp.int32))


def nan_in_live_particles(x: Any, log_w: jax.Array) -> jax.Array:
    """True when a particle of positive weight holds NaN in a floating-point leaf."""
    live = ~jnp.isneginf(log_w)
    found = jnp.bool_(False)
    for leaf in jax.tree_util.tree_leaves(x):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            bad = jnp.any(jnp.isnan(leaf).reshape(leaf.shape[0], -1), axis=1)
            found = found | jnp.any(bad & live)
    return found


def gather_rows(x: Any, idx: jax.Array) -> Any:
    """``x[idx]`` along the leading (particle) axis of every leaf of the pytree ``x``."""
    return jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, idx, axis=0), x)


def initial_state(model: Any, key: jax.Array, n_particles: int) -> SMCState:
    """Draw the particles at time 0 and weigh them (pure; ``n_particles`` is a Python int)."""
    x, log_w0 = model.init(key, n_particles)
    log_w, log_sum, ess, code = reweigh(jnp.zeros_like(log_w0), log_w0)
    failure, failure_time = record_failure(jnp.int32(Failure.NONE), jnp.int32(-1), code, 0, log_sum)
    return SMCState(x, log_w, log_sum - jnp.log(n_particles).astype(log_sum.dtype), ess, failure, failure_time)


def advance(model: Any, state: SMCState, key: jax.Array, t: jax.Array, resampler: Resampler,
            ess_threshold: jax.Array, schedule: Schedule) -> tuple[SMCState, StepInfo]:
    """One step with resolved configuration (the body of :func:`smcflow.step` and of ``run``'s scan).

    Resample if ``schedule`` says so (for the move into time ``t + 1``), move every particle from time
    ``t`` to ``t + 1`` with ``model.step``, reweigh. The step draws from ``fold_in(key, 2t)``
    (resampling) and ``fold_in(key, 2t + 1)`` (the move), so one key serves a whole run. A resampler
    with a ``gather_particles(particles, ancestors)`` method moves the particles itself (the sharded global
    scope's :class:`~smcflow.sharding.ReplicatedResampler`); otherwise ``jnp.take`` does.
    """
    x, log_w = state.particles, state.log_weights
    n = log_w.shape[0]
    log_n = jnp.log(n).astype(log_w.dtype)
    identity = jnp.arange(n, dtype=jnp.int32)
    # one fold_in each from the step key: a key folded twice and then used inside the lax.cond below
    # makes XLA's CPU compiler take ~40 s with threefry4x32 (jax 0.10.2)
    k_resample, k_move = jax.random.fold_in(key, 2 * t), jax.random.fold_in(key, 2 * t + 1)
    failure, failure_time = state.failure, state.failure_time
    gather = getattr(resampler, "gather_particles", gather_rows)  # a sharded resampler moves only the rows needed

    def resample(x, lw):
        code = jnp.where(nan_in_live_particles(x, lw), Failure.PARTICLES_NAN, Failure.NONE).astype(jnp.int32)
        ancestors = resampler(k_resample, lw, n)
        return gather(x, ancestors), jnp.full_like(lw, -log_n), ancestors, code

    def keep(x, lw):
        return x, lw, identity, jnp.int32(Failure.NONE)

    time = t + 1
    if not schedule.may_resample:
        did_resample = jnp.bool_(False)
        x, log_w, ancestors, code = keep(x, log_w)
    elif schedule.kind == "always":
        did_resample = jnp.bool_(True)
        x, log_w, ancestors, code = resample(x, log_w)
    else:
        did_resample = schedule.decide(time, state.ess, n, ess_threshold.astype(log_w.dtype))
        x, log_w, ancestors, code = lax.cond(did_resample, resample, keep, x, log_w)
    failure, failure_time = record_failure(failure, failure_time, code, t)

    x, log_g = model.step(k_move, t, x)
    log_w, log_sum, ess, code = reweigh(log_w, log_g)
    failure, failure_time = record_failure(failure, failure_time, code, time, log_sum)
    new = SMCState(x, log_w, state.log_evidence + log_sum, ess, failure, failure_time)
    return new, StepInfo(ess, did_resample, log_sum, ancestors)
