"""Forward noising processes ``dX = f(t) X dt + g(t) dW`` with Gaussian marginals.

Both schedules here are linear SDEs started at the data ``x_0``, so at diffusion time ``t``

    x_t = alpha(t) x_0 + sigma(t) eps,        eps ~ N(0, I),

and a Gaussian mixture stays a Gaussian mixture (each component ``N(m, S)`` becomes
``N(alpha m, alpha^2 S + sigma^2 I)``). Generation runs the reverse-time SDE from a large ``t`` down to
``t_min``; the reverse drift is ``-f(t) x + g(t)^2 score(x, t)`` and the noise is ``g(t)``
(see :class:`smcflow_diffusion.score_sampler.ScoreSampler`).

Every method takes a scalar (or array) time and returns an array of the same shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

__all__ = ["OrnsteinUhlenbeck", "VariancePreserving", "make_schedule"]


@dataclass(frozen=True)
class OrnsteinUhlenbeck:
    """``dX = -X dt + sqrt(2) dW``: ``alpha = e^-t``, ``sigma^2 = 1 - e^-2t``, stationary law N(0, I)."""

    horizon: float = 4.0  # default generation start

    def alpha(self, t):
        return jnp.exp(-jnp.asarray(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(-2.0 * jnp.asarray(t)))

    def drift_coefficient(self, t):
        """``f(t)``."""
        return -jnp.ones_like(jnp.asarray(t))

    def diffusion_squared(self, t):
        """``g(t)^2``."""
        return 2.0 * jnp.ones_like(jnp.asarray(t))


@dataclass(frozen=True)
class VariancePreserving:
    """VP SDE ``dX = -beta(t) X / 2 dt + sqrt(beta(t)) dW`` with ``beta(t) = beta_min + t (beta_max - beta_min)``.

    ``log alpha(t) = -(beta_min t + (beta_max - beta_min) t^2 / 2) / 2`` and ``sigma^2 = 1 - alpha^2``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    horizon: float = 1.0

    def beta(self, t):
        return self.beta_min + jnp.asarray(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        t = jnp.asarray(t)
        return -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def alpha(self, t):
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self.log_alpha(t)))

    def drift_coefficient(self, t):
        return -0.5 * self.beta(t)

    def diffusion_squared(self, t):
        return self.beta(t)


def make_schedule(schedule) -> OrnsteinUhlenbeck | VariancePreserving:
    """A schedule object from ``"ou"``, ``"vp"`` or an object with the same methods.

    A user schedule needs ``alpha(t)``, ``sigma(t)``, ``drift_coefficient(t)`` (``f``) and
    ``diffusion_squared(t)`` (``g^2``), and may set ``horizon`` (the generation start, 1.0 when absent);
    see ``docs/scaling.md``, section 10.
    """
    if isinstance(schedule, str):
        table = {"ou": OrnsteinUhlenbeck, "vp": VariancePreserving}
        if schedule not in table:
            raise ValueError(f"schedule={schedule!r}; use one of {sorted(table)} or a schedule object")
        return table[schedule]()
    for name in ("alpha", "sigma", "drift_coefficient", "diffusion_squared"):
        if not callable(getattr(schedule, name, None)):
            raise TypeError(f"schedule {type(schedule).__name__} has no method {name}(t); a schedule needs "
                            "alpha, sigma, drift_coefficient and diffusion_squared (see docs/scaling.md, §10)")
    return schedule
