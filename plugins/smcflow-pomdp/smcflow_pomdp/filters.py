"""Belief filters for action-observation histories: exact Bayes (finite POMDPs) and particles (any POMDP).

A history is ``actions (H,)`` and ``observations (H,)`` with ``observations[t] = o_{t+1}`` (see
:mod:`smcflow_pomdp.pomdp`); a batch of histories is ``(B, H)``. Both filters return the beliefs
``b_0 .. b_H`` at every step and the log-likelihood ``log p(o_1 .. o_H | a_0 .. a_{H-1})``.

* :func:`bayes_beliefs`: ``b_{t+1}(s') ∝ Z[a_t, s', o_{t+1}] sum_s b_t(s) T[a_t, s, s']``, one
  ``lax.scan`` per history, ``vmap`` over histories.
* :func:`particle_beliefs`: the bootstrap particle filter of the POMDP conditioned on the history,
  run by the core engine. :class:`BeliefFeynmanKac` is the Feynman-Kac model (``n_steps = H``):
  ``init`` draws ``s_0 ~ initial()`` with log-weight 0, ``step(key, t, s)`` draws
  ``s' ~ transition(s, a_t)`` and returns ``log observation(s', a_t).log_prob(o_{t+1})``; the filter is
  ``smcflow.run(model, key, n, summary=...)``, mapped over histories and keys, and the summary keeps
  the weighted particles at every time. Its ``log_evidence`` is an unbiased (in exp) estimate of the
  history's likelihood.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import smcflow

from .beliefs import as_discrete, histogram, require

__all__ = ["BayesBeliefs", "ParticleBeliefs", "BeliefFeynmanKac", "bayes_update", "bayes_beliefs",
           "particle_beliefs", "check_history"]


class BayesBeliefs(NamedTuple):
    """``beliefs (..., H + 1, S)`` and ``log_likelihood (...)`` of each history."""

    beliefs: jax.Array
    log_likelihood: jax.Array


class ParticleBeliefs(NamedTuple):
    """``particles (..., H + 1, n[, d])``, normalised ``log_weights (..., H + 1, n)``, ``log_evidence (...)``."""

    particles: jax.Array
    log_weights: jax.Array
    log_evidence: jax.Array

    def probabilities(self, n_states: int) -> jax.Array:
        """The beliefs as probability vectors ``(..., H + 1, S)`` (integer particles of a finite POMDP)."""
        return histogram(self.particles, self.log_weights, n_states)


def _in_range(values: jax.Array, size: int, name: str) -> None:
    ok = jnp.all((values >= 0) & (values < size))
    require(ok, lambda: f"{name} must lie in [0, {size}), got values in [{int(values.min())}, {int(values.max())}]",
            f"{name} must lie in [0, {size})")


def check_history(pomdp: Any, actions: Any, observations: Any) -> tuple[jax.Array, jax.Array]:
    """Checked ``(actions int32, observations)`` of equal shape ``(H,)`` or ``(B, H)``; finite POMDPs
    also get their observations as int32 in range."""
    actions, observations = jnp.asarray(actions), jnp.asarray(observations)
    if actions.ndim not in (1, 2) or actions.shape != observations.shape:
        raise ValueError(f"actions and observations must have the same shape (H,) or (B, H), got "
                         f"{actions.shape} and {observations.shape}")
    if not jnp.issubdtype(actions.dtype, jnp.integer):
        raise TypeError(f"actions must be integer action indices, got dtype {actions.dtype}")
    _in_range(actions, pomdp.n_actions, "actions")
    if hasattr(pomdp, "n_observations"):
        if not jnp.issubdtype(observations.dtype, jnp.integer):
            raise TypeError(f"observations must be integer observation indices, got dtype {observations.dtype}")
        _in_range(observations, pomdp.n_observations, "observations")
        observations = observations.astype(jnp.int32)
    return actions.astype(jnp.int32), observations


def bayes_update(T: jax.Array, Z: jax.Array, b: jax.Array, a: jax.Array, o: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One exact step: ``b'(s') ∝ Z[a, s', o] sum_s b(s) T[a, s, s']`` and ``log p(o | b, a)``."""
    joint = (b @ T[a]) * Z[a, :, o]
    norm = jnp.sum(joint)
    return joint / norm, jnp.log(norm)


def _bayes_history(T, Z, b0, actions, observations):
    def update(b, ao):
        b, log_norm = bayes_update(T, Z, b, *ao)
        return b, (b, log_norm)

    _, (beliefs, log_norms) = lax.scan(update, b0, (actions, observations))
    return jnp.concatenate([b0[None], beliefs]), jnp.sum(log_norms)


@jax.jit
def _bayes(T, Z, b0, actions, observations):
    run = partial(_bayes_history, T, Z)
    if actions.ndim == 1:
        return run(b0, actions, observations)
    return jax.vmap(run, in_axes=(None if b0.ndim == 1 else 0, 0, 0))(b0, actions, observations)


def bayes_beliefs(pomdp: Any, actions: Any, observations: Any, initial_belief: Any = None) -> BayesBeliefs:
    """Exact beliefs of a finite POMDP (:class:`~smcflow_pomdp.pomdp.DiscretePOMDP`) along histories.

    ``initial_belief`` overrides the model's ``b_0``: one ``(S,)`` vector, or one per history ``(B, S)``.
    A history containing an observation of probability zero raises ``ValueError``.
    """
    actions, observations = check_history(pomdp, actions, observations)
    if initial_belief is None:
        b0 = pomdp.initial_belief
    else:
        b0 = as_discrete(initial_belief, "initial_belief", batch=jnp.ndim(initial_belief) == 2)
        if b0.shape[-1] != pomdp.n_states or (b0.ndim == 2 and b0.shape[0] != actions.shape[0]):
            raise ValueError(f"initial_belief must have shape ({pomdp.n_states},) or (B, {pomdp.n_states}) with "
                             f"B the number of histories, got {b0.shape}")
    beliefs, log_lik = _bayes(pomdp.transition_matrix, pomdp.observation_matrix, b0, actions, observations)
    require(jnp.all(jnp.isfinite(log_lik)),
            lambda: "observations: a history contains an observation of probability zero given the actions and the "
                    "observations before it",
            "observations: a history contains an observation of probability zero")
    return BayesBeliefs(beliefs, log_lik)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class BeliefFeynmanKac:
    """The POMDP's bootstrap particle filter given one history, as a Feynman-Kac model for ``smcflow.run``.

    ``pomdp`` is any model with numpyro ``initial()``, ``transition(s, a)`` and ``observation(s', a)``.
    """

    pomdp: Any
    actions: jax.Array  # (H,)
    observations: jax.Array  # (H,)

    @property
    def n_steps(self) -> int:
        return self.actions.shape[0]

    def init(self, key: jax.Array, n: int):
        x = self.pomdp.initial().sample(key, (n,))
        return x, jnp.zeros(n, jnp.result_type(float))

    def step(self, key: jax.Array, t: jax.Array, x: jax.Array):
        a = self.actions[t]
        x = self.pomdp.transition(x, a).sample(key)
        return x, self.pomdp.observation(x, a).log_prob(self.observations[t])


def _weighted_particles(x, log_w):
    """The engine's per-time summary: the weighted particles themselves."""
    return x, log_w


@partial(jax.jit, static_argnames=("n_particles", "resampler", "model"))
def _particle_filter(pomdp, actions, observations, keys, ess_threshold, n_particles, resampler, model):
    def one(history):
        a, o, key = history
        result = smcflow.run(model(pomdp, a, o), key, n_particles, resampler=resampler,
                             ess_threshold=ess_threshold, summary=_weighted_particles)
        return (*result.summaries, result.log_evidence)

    # histories one after another: under vmap the engine's adaptive-resampling lax.cond becomes a
    # select that runs both branches, and XLA's CPU compiler takes ~2.5x longer for it
    return lax.map(one, (actions, observations, keys))


def particle_beliefs(pomdp: Any, actions: Any, observations: Any, key: jax.Array, n_particles: int, *,
                     resampler: str = "systematic", ess_threshold: float = 0.5,
                     model: Callable[..., Any] = BeliefFeynmanKac) -> ParticleBeliefs:
    """Particle beliefs along one history ``(H,)`` or a batch ``(B, H)`` (one key split per history).

    ``resampler`` and ``ess_threshold`` are those of :func:`smcflow.run`. ``model(pomdp, actions,
    observations)`` builds the Feynman-Kac model of one history (default :class:`BeliefFeynmanKac`,
    the bootstrap filter; a subclass may propose differently); it is static, so pass the same class
    every time.
    """
    actions, observations = check_history(pomdp, actions, observations)
    single = actions.ndim == 1
    if single:
        actions, observations = actions[None], observations[None]
    keys = jax.random.split(key, actions.shape[0])
    particles, log_weights, log_evidence = _particle_filter(
        pomdp, actions, observations, keys, jnp.asarray(ess_threshold, jnp.float32), n_particles=int(n_particles),
        resampler=resampler, model=model)
    out = ParticleBeliefs(particles, log_weights, log_evidence)
    return jax.tree_util.tree_map(lambda a: a[0], out) if single else out
