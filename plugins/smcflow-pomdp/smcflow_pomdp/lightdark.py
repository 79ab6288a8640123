"""LightDark-1D: a continuous-state POMDP whose observations are sharp only near the light.

After Platt, Tedrake, Kaelbling & Lozano-Pérez (2010)::

    x_0 ~ N(initial_mean, initial_sd^2)
    x_{t+1} | x_t, a_t ~ N(x_t + moves[a_t], process_sd^2)
    o_{t+1} | x_{t+1}   ~ N(x_{t+1}, sd(x_{t+1})^2),   sd(x) = noise_floor + noise_slope |x - light|

Rewards: ``-1`` for a move; the action whose move is 0 is "stop here", paying ``goal_reward`` when
``|x| < goal_radius`` and ``-goal_reward`` otherwise. Actions are indices into ``moves``, as for the
finite models, so the same particle belief filter serves both.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ._checks import positive

__all__ = ["LightDark1D", "lightdark_1d"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class LightDark1D:
    """Parameters are pytree leaves; see the module docstring for the model."""

    moves: jax.Array  # (A,)
    light: jax.Array
    noise_floor: jax.Array
    noise_slope: jax.Array
    process_sd: jax.Array
    initial_mean: jax.Array
    initial_sd: jax.Array
    goal_radius: jax.Array
    goal_reward: jax.Array
    discount: jax.Array

    @property
    def n_actions(self) -> int:
        return self.moves.shape[0]

    def observation_sd(self, x: jax.Array) -> jax.Array:
        return self.noise_floor + self.noise_slope * jnp.abs(x - self.light)

    def initial(self) -> dist.Normal:
        return dist.Normal(self.initial_mean, self.initial_sd)

    def transition(self, x: jax.Array, a: jax.Array) -> dist.Normal:
        return dist.Normal(x + self.moves[a], self.process_sd)

    def observation(self, x_next: jax.Array, a: jax.Array) -> dist.Normal:
        return dist.Normal(x_next, self.observation_sd(x_next))

    def reward(self, x: jax.Array, a: jax.Array) -> jax.Array:
        stop = self.moves[a] == 0
        at_goal = jnp.abs(x) < self.goal_radius
        return jnp.where(stop, jnp.where(at_goal, self.goal_reward, -self.goal_reward), -1.0)


def lightdark_1d(moves=(-1.0, 0.0, 1.0), light: float = 5.0, noise_floor: float = 0.1,
                 noise_slope: float = 0.5, process_sd: float = 0.1, initial_mean: float = 2.0,
                 initial_sd: float = 2.0, goal_radius: float = 1.0, goal_reward: float = 10.0,
                 discount: float = 0.95) -> LightDark1D:
    """Check the parameters and build a :class:`LightDark1D` (float32 leaves)."""
    moves = np.asarray(moves, dtype=np.float64)
    if moves.ndim != 1 or moves.size == 0 or not np.all(np.isfinite(moves)):
        raise ValueError(f"moves must be a non-empty 1-D array of finite displacements, got {moves}")
    for name, value in (("noise_floor", noise_floor), ("process_sd", process_sd), ("initial_sd", initial_sd)):
        positive(value, name)
    if not noise_slope >= 0:
        raise ValueError(f"noise_slope must be >= 0, got {noise_slope}")
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount must lie in [0, 1), got {discount}")
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return LightDark1D(f(moves), f(light), f(noise_floor), f(noise_slope), f(process_sd), f(initial_mean),
                       f(initial_sd), f(goal_radius), f(goal_reward), f(discount))
