"""The ``digits`` sampler: a small noise-prediction network trained on scikit-learn's 8x8 digits.

Samples are ``(64,)`` vectors in about ``[-1, 1]`` (pixel / 16 * 2 - 1); :func:`to_images` maps them
back to 8x8 images. The network ``eps(x, t)`` was trained under the VP schedule
(``beta_min = 0.1``, ``beta_max = 20``) by ``scripts/train_digits_score.py``; its score is
``-eps(x, t) / sigma(t)``. Weights ship in ``weights/digits_score.npz`` (no training at run time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from .digits_data import DIM, to_images
from .digits_net import eps_apply, load_digits_eps_params
from .schedules import VariancePreserving
from .score_sampler import ScoreSampler, uniform_times

__all__ = ["DigitsScore", "digits_sampler", "to_images"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class DigitsScore:
    """Score ``-eps(x, t) / sigma(t)`` of the trained network (a callable pytree: parameters are traced)."""

    params: dict
    schedule: Any

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return -eps_apply(self.params, x, t) / self.schedule.sigma(t)


def digits_sampler(n_steps: int = 100, t_min: float = 1e-3, final_denoise: bool = True) -> ScoreSampler:
    """Factory of the ``digits`` sampler: ``n_steps`` Euler-Maruyama steps of the reverse VP SDE from
    ``t = 1`` to ``t_min``, then (by default) one Tweedie denoising step (1 NFE)."""
    schedule = VariancePreserving()
    params = jax.tree_util.tree_map(jax.numpy.asarray, load_digits_eps_params())
    return ScoreSampler(
        score=DigitsScore(params, schedule),
        schedule=schedule,
        times=uniform_times(schedule, n_steps, t_min=t_min),
        event_shape=(DIM,),
        final_denoise=final_denoise,
        name="digits",
        event_dims=("pixel",),
    )
