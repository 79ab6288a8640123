"""Conditional score samplers: a diffusion model of ``x_t | x_{t-1} = cond`` in smcflow's surrogate contract.

The chain runs in standardised coordinates ``z`` around a centre that depends on the conditioning
state (the previous state of the system)::

    x_t = center(cond) + scale * z_0,      z_0 ~ p(z_0 | cond)     (the law the network has learned)

``z`` is noised by a forward schedule with Gaussian marginals ``z_tau = alpha(tau) z_0 + sigma(tau) eps``
(VP or OU, :mod:`smcflow_diffusion.schedules`); generation runs the reverse-time SDE along ``times``
from ``N(0, I)`` (the stationary law of both schedules) to ``t_min``::

    drift(z, tau, cond) = -f(tau) z + g(tau)^2 score(z, tau, cond),      noise(tau) = g(tau),

and the next state handed out is ``output(z_K, cond) = center(cond) + scale * z_K``. Tweedie's formulas
give the clean estimate and, to second order, its uncertainty::

    denoise(z, tau, cond) = center + scale * (z + sigma^2 score) / alpha          (in state space)
    Cov[x_t | z_tau]      = (sigma^2 / alpha) * scale^2 * d E[z_0 | z_tau] / d z
                          = d denoise / d z  *  diag(tweedie_factor(tau)),   tweedie_factor = sigma^2 scale / alpha.

:func:`smcflow.surge_filter` uses ``tweedie_factor`` for the guidance that allows for the denoiser's
uncertainty (the observation covariance inflated by ``H Cov H^T``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["ConditionalScoreSampler"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class ConditionalScoreSampler:
    """A conditional diffusion sampler from ``score(z, tau, cond)`` (module docstring).

    Attributes:
      score: ``(z (n, d), tau (), cond (n, d)) -> (n, d)``, the score of the noised standardised law;
        a plain function or a callable pytree (its array leaves are traced: new weights do not recompile).
      schedule: forward process (``alpha``, ``sigma``, ``drift_coefficient``, ``diffusion_squared``).
      times: ``(K+1,)`` decreasing generation grid.
      center: ``cond (n, d) -> (n, d)``, the centre of the next state (e.g. the previous state itself).
      scale: ``()`` or ``(d,)`` > 0, the spread of the next state around the centre.
      name: label used in messages.
    """

    score: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    schedule: Any
    times: jax.Array
    center: Callable[[jax.Array], jax.Array]
    scale: jax.Array
    name: str = field(default="conditional_score", metadata=dict(static=True))

    def init(self, key: jax.Array, n: int, cond: jax.Array) -> jax.Array:
        """``n`` draws of ``z`` at ``times[0]`` from ``N(0, I)``, shaped like ``cond``."""
        return jax.random.normal(key, (n,) + cond.shape[1:], cond.dtype)

    def drift_and_denoise(self, z: jax.Array, t: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reverse drift ``(n, d)`` and the clean next state estimated by Tweedie ``(n, d)``, one score call."""
        s = self.score(z, t, cond)
        sched = self.schedule
        drift = -sched.drift_coefficient(t) * z + sched.diffusion_squared(t) * s
        clean = (z + sched.sigma(t) ** 2 * s) / sched.alpha(t)
        return drift, self.output(clean, cond)

    def drift(self, z: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        return self.drift_and_denoise(z, t, cond)[0]

    def denoise(self, z: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        return self.drift_and_denoise(z, t, cond)[1]

    def noise(self, t: jax.Array) -> jax.Array:
        return jnp.sqrt(self.schedule.diffusion_squared(t))

    def output(self, z: jax.Array, cond: jax.Array) -> jax.Array:
        """The next state ``center(cond) + scale * z`` from a chain state ``z``."""
        return self.center(cond) + jnp.asarray(self.scale, z.dtype) * z

    def tweedie_factor(self, t: jax.Array) -> jax.Array:
        """``sigma(t)^2 scale / alpha(t)``: ``Cov[x | z_t] ~ d denoise / dz * diag(tweedie_factor(t))``."""
        sched = self.schedule
        return sched.sigma(t) ** 2 * jnp.asarray(self.scale) / sched.alpha(t)
