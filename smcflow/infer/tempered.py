"""Tempered SMC from prior to posterior through the core kernel (:func:`smcflow.kernel.advance`).

The Feynman-Kac model :class:`TemperedModel` on particles ``u (n, d)`` (unconstrained, flat) runs, with
``lam_0 = 0`` and the exponents chosen by :mod:`smcflow.tempering` (``base = 0``,
``slope = log_lik``):

* ``init``: ``u_i ~ prior``; choose ``lam_1``; log-weights ``lam_1 * log_lik(u_i)``;
* step ``t`` (after the kernel has resampled, which it does at every step, so the weights entering a
  step are equal): move every particle with ``n_moves`` BlackJAX steps leaving ``pi_{lam_{t+1}}``
  invariant (:mod:`smcflow.infer.moves`, whitened by the particles' standard deviations), then
  choose ``lam_{t+2}`` and reweigh by ``(lam_{t+2} - lam_{t+1}) * log_lik(u_i)``.

The weighted particles after the reweighting to ``lam`` target ``pi_lam``, and the kernel's running
``log Z`` estimates ``log of the integral of prior * likelihood^lam``: the evidence once ``lam = 1``.
:func:`tempered_run` loops the kernel in a ``lax.while_loop`` until ``lam = 1`` or ``max_steps``.
Step-level quantities (the exponent, the whitening scale, the acceptance rate) are carried as
particle leaves (equal across particles except the acceptance), so the kernel's state needs no new
field; they are read off right after each step.

**Waste-free moves** (Dau and Chopin, 2022; ``chain_length = P > 1``, ``N = M P``). Instead of moving
each of the N resampled particles, a step keeps ``M = N / P`` of them as chain starts and runs one
Markov chain of length ``P`` from each (``P - 1`` transitions, each ``n_moves`` kernel steps leaving
``pi_{lam_{t+1}}`` invariant); all ``M P`` chain states, starts included, are the N particles of the
next reweighting. The starts are the resampled particles at positions ``c, c + P, c + 2P, ...`` with
``c`` uniform in ``0 .. P-1``: every resampled particle is a start with probability ``1 / P``, so
particle ``i`` starts ``M W_i`` chains on average, as a resampling of M would. The bookkeeping is the
kernel's own: the N states enter the reweighting with equal weights ``1 / N`` (not ``1 / M`` each
chain), so the evidence increment is the mean of the increments over all N states. Given the past,
the mean over the N states of any ``f`` has expectation ``eta(G Kbar f) / eta(G)`` with the
``pi``-invariant kernel ``Kbar = (1 / P) sum_{j < P} K^j``: the structure of standard SMC, so the same
unbiasedness (frozen schedule) and consistency hold. Each step costs ``(P - 1) M = N - M`` moves
instead of N.

**Frozen replay.** A pilot run's exponents and whitening scales (:class:`Plan`) replayed make every
potential and every kernel independent of the particle system, so ``exp(log Z_hat)`` is exactly
unbiased for the evidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import tempering as T
from ..errors import Failure
from ..kernel import advance, initial_state, nan_in_live_particles, record_failure
from ..resampling import Resampler
from ..schedule import Schedule
from .moves import MoveConfig, move
from .target import Target

__all__ = ["Plan", "TemperedModel", "Particles", "RunSettings", "tempered_run"]

ALWAYS = Schedule("always")


class Plan(NamedTuple):
    """What a step needs to know about the schedule (a pytree; arrays traced).

    Attributes:
      tempering: :class:`smcflow.tempering.Tempering` (adaptive, or frozen exponents ``(K,)``).
      scales: ``None`` (adaptive: the particles' standard deviations), or ``(K - 1, d)`` whitening
        scales of the moves, one row per step (frozen).
    """

    tempering: T.Tempering
    scales: Any = None


class Particles(NamedTuple):
    """Particle pytree: ``u (n, d)``; ``lam (n,)`` the current exponent; ``accept (n,)`` the mean
    acceptance of the moves that led here (1 at time 0); ``scale (n, d)`` their whitening scale."""

    u: jax.Array
    lam: jax.Array
    accept: jax.Array
    scale: jax.Array


@dataclass(frozen=True)
class TemperedModel:
    """The Feynman-Kac model of likelihood tempering (module docstring); ``n_steps`` is the cap."""

    target: Target
    moves: MoveConfig
    plan: Plan
    n_steps: int
    chain_length: int = 1  # P: 1 moves every particle; P > 1 is waste-free (module docstring)

    def _reweigh(self, t, log_lik, lam_prev):
        n = log_lik.shape[0]
        uniform = jnp.full((n,), -jnp.log(n), log_lik.dtype)
        zero = jnp.zeros_like(log_lik)
        lam = T.exponent_at(self.plan.tempering, t, uniform, zero, log_lik, lam_prev)
        return lam, T.increment(zero, log_lik, lam, lam_prev)

    def init(self, key, n):
        u = self.target.sample_prior(key, n)
        log_lik = jax.vmap(self.target.log_parts)(u)[1]
        lam, log_w = self._reweigh(0, log_lik, jnp.zeros((), log_lik.dtype))
        ones = jnp.ones((n,), u.dtype)
        return Particles(u, lam * ones, ones, jnp.ones_like(u)), log_w

    def step(self, key, t, x: Particles):
        lam = x.lam[0]
        if self.plan.scales is None:
            sd = jnp.std(x.u, axis=0)
            scale = jnp.where(sd > 0, sd, 1.0)
        else:
            scale = jnp.asarray(self.plan.scales, x.u.dtype)[jnp.minimum(t, self.plan.scales.shape[0] - 1)]

        def log_pi(u):
            log_prior, log_lik = self.target.log_parts(u)
            return log_prior + lam * log_lik

        if self.chain_length > 1:
            u, accept = self._waste_free(key, x.u, log_pi, scale)
        else:
            keys = jax.random.split(key, x.u.shape[0])
            u, accept = jax.vmap(lambda k, ui: move(self.moves, k, ui, log_pi, scale))(keys, x.u)
        log_lik = jax.vmap(self.target.log_parts)(u)[1]
        lam_next, log_g = self._reweigh(t + 1, log_lik, lam)
        n = u.shape[0]
        return Particles(u, jnp.full((n,), lam_next, u.dtype), accept, jnp.broadcast_to(scale, u.shape)), log_g


    def _waste_free(self, key, u, log_pi, scale):
        """``M = N / P`` chain starts picked from the resampled ``u (N, d)``, ``P - 1`` transitions each;
        all ``N`` states ``(N, d)`` and, per state, its chain's mean acceptance ``(N,)``."""
        n, p = u.shape[0], self.chain_length
        m = n // p
        k_pick, k_chain = jax.random.split(key)
        offset = jax.random.randint(k_pick, (), 0, p)
        starts = u[offset + p * jnp.arange(m)]

        def transition(v, k):
            v, acc = jax.vmap(lambda kk, vi: move(self.moves, kk, vi, log_pi, scale))(jax.random.split(k, m), v)
            return v, (v, acc)

        _, (states, accepts) = lax.scan(transition, starts, jax.random.split(k_chain, p - 1))
        chains = jnp.concatenate([starts[None], states], axis=0)  # (P, M, d): state j of chain i at [j, i]
        accept = jnp.broadcast_to(jnp.mean(accepts, axis=0), (p, m)).reshape(n)
        return chains.reshape(n, u.shape[1]), accept


@dataclass(frozen=True)
class RunSettings:
    """Static settings of a run."""

    n_particles: int
    resampler: Resampler
    max_steps: int


def tempered_run(model: TemperedModel, key: jax.Array, cfg: RunSettings) -> dict:
    """One tempered run (jittable, vmappable over ``key``); a dict of arrays, per-step ones of length
    ``max_steps + 1`` (entry 0 for time 0, NaN past ``n_steps``)."""
    k_init, k_steps = jax.random.split(key)
    state = initial_state(model, k_init, cfg.n_particles)
    size = cfg.max_steps + 1
    dtype = state.log_weights.dtype
    d = state.particles.u.shape[1]
    nan = jnp.full((size,), jnp.nan, dtype)
    trace = {
        "exponent": nan.at[0].set(state.particles.lam[0]),
        "acceptance": nan,
        "ess": nan.at[0].set(state.ess),
        "log_evidence_increment": nan.at[0].set(state.log_evidence),
        "scale": jnp.full((size, d), jnp.nan, dtype),
    }

    def more(carry):
        state, t, _ = carry
        return (state.particles.lam[0] < 1.0) & (t < model.n_steps)

    def body(carry):
        state, t, trace = carry
        state, info = advance(model, state, k_steps, t, cfg.resampler, jnp.ones((), dtype), ALWAYS)
        p = state.particles
        step_values = {"exponent": p.lam[0], "acceptance": jnp.mean(p.accept), "ess": info.ess,
                       "log_evidence_increment": info.log_evidence_increment, "scale": p.scale[0]}
        trace = {k: trace[k].at[t + 1].set(step_values[k]) for k in trace}
        return state, t + 1, trace

    state, n_steps, trace = lax.while_loop(more, body, (state, jnp.int32(0), trace))
    code = jnp.where(nan_in_live_particles(state.particles, state.log_weights), Failure.PARTICLES_NAN, Failure.NONE)
    failure, failure_time = record_failure(state.failure, state.failure_time, code, n_steps)
    return {"u": state.particles.u, "log_weights": state.log_weights, "log_evidence": state.log_evidence,
            "n_steps": n_steps, "failure": failure, "failure_time": failure_time, **trace}

