"""Reference SDEs with known coefficients, shared by the tests, the benchmark and the example."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import smcflow

from .fields import evaluate

__all__ = ["ornstein_uhlenbeck", "CorrelatedDiffusion2D", "lorenz63", "lorenz96", "relative_l2"]


def ornstein_uhlenbeck(theta, D, mu=0.0) -> smcflow.SDE:
    """``dX = -theta (X - mu) dt + sqrt(2 D) dW``: ``theta`` ``(d, d)`` (or a number, 1-D), ``D`` ``(d, d)``
    (or a number), so ``a = 2 D``. Stationary covariance ``S`` solves ``theta S + S theta^T = 2 D``."""
    theta = jnp.atleast_2d(jnp.asarray(theta, jnp.float32))
    a = 2.0 * jnp.atleast_2d(jnp.asarray(D, jnp.float32))
    mu = jnp.broadcast_to(jnp.asarray(mu, jnp.float32), theta.shape[:1])
    return smcflow.SDE(lambda x: -(x - mu) @ theta.T, lambda x: jnp.broadcast_to(a, (x.shape[0],) + a.shape))


def lorenz63(noise: float = 2.0, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> smcflow.SDE:
    """Stochastic Lorenz-63: ``b(x) = (sigma (x2 - x1), x1 (rho - x3) - x2, x1 x2 - beta x3)``, ``a = noise^2 I``."""
    a = jnp.float32(noise) ** 2 * jnp.eye(3)

    def drift(x):
        x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
        return jnp.stack([sigma * (x2 - x1), x1 * (rho - x3) - x2, x1 * x2 - beta * x3], axis=1)

    return smcflow.SDE(drift, lambda x: jnp.broadcast_to(a.astype(x.dtype), (x.shape[0], 3, 3)))


def lorenz96(d: int = 40, forcing: float = 8.0, noise: float = 0.5) -> smcflow.SDE:
    """Stochastic Lorenz-96 on a ring of ``d`` sites: ``b_i(x) = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``
    (indices mod ``d``), ``a = noise^2 I``."""
    if int(d) < 4:
        raise ValueError(f"lorenz96 needs d >= 4 sites, got {d}")
    a = jnp.float32(noise) ** 2 * jnp.eye(int(d))

    def drift(x):
        return (jnp.roll(x, -1, axis=1) - jnp.roll(x, 2, axis=1)) * jnp.roll(x, 1, axis=1) - x + forcing

    return smcflow.SDE(drift, lambda x: jnp.broadcast_to(a.astype(x.dtype), (x.shape[0],) + a.shape))


def relative_l2(estimate: smcflow.SDE, truth: smcflow.SDE, points) -> tuple[float, float]:
    """Relative L2 errors ``(|b^ - b| / |b|, |a^ - a|_F / |a|_F)``, root mean squares over ``points`` ``(n, d)``."""
    x = jnp.asarray(points, jnp.float32)

    def rel(f_hat, f):
        exact = evaluate(f, x)
        diff = evaluate(f_hat, x) - exact
        return float(np.sqrt(np.sum(diff**2) / np.sum(exact**2)))

    return rel(estimate.drift, truth.drift), rel(estimate.diffusion, truth.diffusion)


@dataclass(frozen=True)
class CorrelatedDiffusion2D:
    """A 2-D SDE with a nonlinear drift and a spatially varying, correlated diffusion::

        b(x) = (-x1 + 0.5 sin(2 x2),  -0.8 x2 + 0.4 cos(2 x1) - 0.3 x1)
        a(x) = [[s1^2, r s1 s2], [r s1 s2, s2^2]],   s1 = 0.6 + 0.3 tanh(2 x1),
               s2 = 0.5 + 0.25 sin(2 x2)^2,   r = 0.7 tanh(x1 + x2).

    The process is ergodic (stationary spread about 0.4 per axis); ``a`` is positive definite
    (``|r| < 1``, ``s1, s2 > 0``) and varies by a factor of about 4 across the visited region.
    """

    @staticmethod
    def drift(x: jax.Array) -> jax.Array:
        x1, x2 = x[:, 0], x[:, 1]
        return jnp.stack([-x1 + 0.5 * jnp.sin(2 * x2), -0.8 * x2 + 0.4 * jnp.cos(2 * x1) - 0.3 * x1], axis=1)

    @staticmethod
    def diffusion(x: jax.Array) -> jax.Array:
        x1, x2 = x[:, 0], x[:, 1]
        s1 = 0.6 + 0.3 * jnp.tanh(2 * x1)
        s2 = 0.5 + 0.25 * jnp.sin(2 * x2) ** 2
        r = 0.7 * jnp.tanh(x1 + x2)
        off = r * s1 * s2
        return jnp.stack([jnp.stack([s1**2, off], -1), jnp.stack([off, s2**2], -1)], axis=1)

    @property
    def sde(self) -> smcflow.SDE:
        return smcflow.SDE(self.drift, self.diffusion)

    def simulate(self, key: jax.Array, n_paths: int, n_steps: int, dt: float, n_substeps: int = 4,
                 burn_in: int = 200) -> jax.Array:
        """``(n_paths, n_steps + 1, 2)`` paths sampled every ``dt``, started near stationarity (after
        ``burn_in`` recorded steps from N(0, 0.16 I), which are dropped)."""
        k0, k1 = jax.random.split(key)
        x0 = 0.4 * jax.random.normal(k0, (n_paths, 2))
        paths = smcflow.simulate_sde(self.sde, k1, x0, dt, n_steps + burn_in, n_substeps)
        return paths[:, burn_in:]
