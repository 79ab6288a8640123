"""The analytic linear-Gaussian surrogate: an exact score, and the exact law of its own Euler chain.

For a transition ``x_t | x_{t-1} = c ~ N(A c + b, Q)`` the standardised variable ``z_0 = x_t - (A c + b)``
is ``N(0, Q)`` whatever ``c``, so under the forward schedule ``z_tau ~ N(0, alpha^2 Q + sigma^2 I)`` and the
score is exact and linear: ``score(z, tau) = -(alpha^2 Q + sigma^2 I)^{-1} z``. The reverse Euler-Maruyama
chain that generates ``z`` is then linear-Gaussian too::

    z_{k+1} = M_k z_k + g_k sqrt(h_k) xi_k,      M_k = (1 - h_k f_k) I - h_k g_k^2 (alpha_k^2 Q + sigma_k^2 I)^{-1},

started at ``z_0 ~ N(0, I)``, so ``z_K ~ N(0, S_K)`` with ``S_{k+1} = M_k S_k M_k^T + h_k g_k^2 I``. The
*surrogate model* (the system as the surrogate describes it, discretisation included) is therefore the
linear-Gaussian transition ``x_t | c ~ N(A c + b, S_K)``: its exact filtering answer is a Kalman filter
(:func:`exact_transition`), which the surrogate filter's tests use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smcflow_diffusion.schedules import make_schedule
from smcflow_diffusion.score_sampler import uniform_times

from smcflow_sde.fields import LinearMap

from .conditional import ConditionalScoreSampler

__all__ = ["GaussianScore", "linear_gaussian_surrogate", "exact_transition"]



@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GaussianScore:
    """The exact score ``-(alpha^2 Q + sigma^2 I)^{-1} z`` of ``N(0, Q)`` noised by ``schedule``."""

    Q: jax.Array
    schedule: Any = None

    def __call__(self, z: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        d = self.Q.shape[0]
        cov = alpha**2 * self.Q.astype(z.dtype) + sigma**2 * jnp.eye(d, dtype=z.dtype)
        return -jnp.linalg.solve(cov, z.T).T


def linear_gaussian_surrogate(A: Any, b: Any = None, Q: Any = None, schedule: Any = "vp", n_steps: int = 50,
                              t_min: float = 1e-3) -> ConditionalScoreSampler:
    """Factory of the ``linear_gaussian`` surrogate of ``x_t | c ~ N(A c + b, Q)`` (module docstring).

    Args:
      A: ``(d, d)`` transition matrix; b: ``(d,)`` offset (default 0); Q: ``(d, d)`` symmetric positive
        definite transition covariance (default ``I``).
      schedule: ``"vp"`` (default), ``"ou"`` or a schedule object; n_steps, t_min: the uniform grid.
    """
    A = jnp.atleast_2d(jnp.asarray(A, jnp.float32))
    d = A.shape[0]
    if A.shape != (d, d):
        raise ValueError(f"linear_gaussian_surrogate: A must be square (d, d), got shape {A.shape}")
    b = jnp.zeros(d, jnp.float32) if b is None else jnp.broadcast_to(jnp.asarray(b, jnp.float32), (d,))
    Q = jnp.eye(d, dtype=jnp.float32) if Q is None else jnp.atleast_2d(jnp.asarray(Q, jnp.float32))
    q = np.asarray(Q, np.float64)
    if q.shape != (d, d) or not np.allclose(q, q.T) or np.linalg.eigvalsh(q).min() <= 0:
        raise ValueError(f"linear_gaussian_surrogate: Q must be a symmetric positive definite ({d}, {d}) matrix")
    sched = make_schedule(schedule)
    return ConditionalScoreSampler(
        score=GaussianScore(Q, sched),
        schedule=sched,
        times=uniform_times(sched, n_steps, t_min=t_min),
        center=LinearMap(A, b),  # the centre c A^T + b
        scale=jnp.float32(1.0),
        name="linear_gaussian",
    )


def exact_transition(surrogate: ConditionalScoreSampler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, S)`` in float64: the surrogate model's exact transition ``x_t | c ~ N(A c + b, S)``, with ``S``
    the covariance of the reverse Euler chain's last state (module docstring; ``scale`` included)."""
    score = surrogate.score
    if not isinstance(score, GaussianScore) or not isinstance(surrogate.center, LinearMap):
        raise TypeError("exact_transition needs the analytic surrogate from linear_gaussian_surrogate")
    sched, times = surrogate.schedule, np.asarray(surrogate.times, np.float64)
    Q = np.asarray(score.Q, np.float64)
    d = Q.shape[0]
    eye = np.eye(d)
    S = eye.copy()
    for k in range(len(times) - 1):
        t, h = times[k], abs(times[k + 1] - times[k])
        alpha, sigma = float(sched.alpha(t)), float(sched.sigma(t))
        f, g2 = float(sched.drift_coefficient(t)), float(sched.diffusion_squared(t))
        M = (1.0 - h * f) * eye - h * g2 * np.linalg.inv(alpha**2 * Q + sigma**2 * eye)
        S = M @ S @ M.T + h * g2 * eye
    scale = np.broadcast_to(np.asarray(surrogate.scale, np.float64), (d,))
    S = scale[:, None] * S * scale[None, :]
    return np.asarray(surrogate.center.matrix, np.float64), np.asarray(surrogate.center.offset, np.float64), S
