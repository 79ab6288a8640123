"""Digits rewards from the shipped JAX classifier (:mod:`smcflow_rewards.digits_classifier`).

``digits_log_prob(target)``: ``r(x) = log p(target | x)`` (differentiable). With ``beta = 1`` the
tilted law ``p(x) p(target | x) / Z`` is the class-conditional law of the sampler, and ``Z`` estimates
the sampler's probability of that class under the classifier.

``digits_vote(target)``: ``r(x) = 1`` when the classifier's most probable class is ``target``, else 0
(piecewise constant, so not usable for gradient guidance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from .digits_classifier import load_classifier_params, log_probs

__all__ = ["DigitsReward", "digits_log_prob", "digits_vote"]

N_CLASSES = 10


def _check_target(target) -> int:
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < N_CLASSES:
        raise ValueError(f"target must be a digit class in 0..9, got {target!r}")
    return target


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class DigitsReward:
    """``log p(target | x)`` (``vote=False``) or ``1{argmax_c p(c | x) = target}`` (``vote=True``)
    for ``x`` of shape ``(n, 64)``."""

    params: dict
    target: int = field(metadata=dict(static=True))
    vote: bool = field(default=False, metadata=dict(static=True))

    @property
    def differentiable(self) -> bool:
        return not self.vote

    @property
    def name(self) -> str:
        return "digits_vote" if self.vote else "digits_log_prob"

    def __call__(self, x: jax.Array) -> jax.Array:
        log_p = log_probs(self.params, x.reshape(x.shape[0], -1))
        if self.vote:
            return (jnp.argmax(log_p, axis=-1) == self.target).astype(x.dtype)
        return log_p[:, self.target].astype(x.dtype)


def digits_log_prob(target: int = 3) -> DigitsReward:
    """Factory of ``digits_log_prob``: log-probability of class ``target`` under the shipped classifier."""
    return DigitsReward(load_classifier_params(), _check_target(target))


def digits_vote(target: int = 3) -> DigitsReward:
    """Factory of ``digits_vote``: 1 when the shipped classifier votes for ``target``."""
    return DigitsReward(load_classifier_params(), _check_target(target), vote=True)
