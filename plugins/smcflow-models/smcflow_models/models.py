"""Model definitions. Each exposes ``ssm`` (a :class:`smcflow.StateSpaceModel`), ``simulate(key, T)``
and, where one exists, the exact ``log_likelihood(ys)``."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import smcflow
from smcflow.exact import hmm_forward, kalman_filter


class _Simulates:
    """Shared ``simulate``; ``ssm`` is a cached property so repeated runs reuse one compiled program."""

    ssm: smcflow.StateSpaceModel

    def simulate(self, key: jax.Array, n_times: int) -> tuple[jax.Array, jax.Array]:
        """One trajectory ``(xs, ys)`` with leading axis ``n_times``."""
        return self.ssm.simulate(key, n_times)


@dataclass(frozen=True)
class LinearGaussian(_Simulates):
    """``x_0 ~ N(m0, P0)``, ``x_t = F x_{t-1} + N(0, Q)``, ``y_t = H x_t + N(0, R)``.

    Vector states (``F`` is ``(dx, dx)``, ``H`` is ``(dy, dx)``) use ``MultivariateNormal``; the
    :meth:`scalar` constructor gives the 1-D AR(1) model with ``Normal`` distributions.
    """

    F: np.ndarray
    Q: np.ndarray
    H: np.ndarray
    R: np.ndarray
    m0: np.ndarray
    P0: np.ndarray
    is_scalar: bool = False

    @classmethod
    def scalar(cls, rho: float = 0.9, sigma_x: float = 1.0, sigma_y: float = 0.2, stationary: bool = True, m0: float = 0.0, p0: float | None = None) -> "LinearGaussian":
        """1-D ``x_t = rho x_{t-1} + sigma_x e_t``, ``y_t = x_t + sigma_y n_t``; ``x_0`` stationary by default."""
        if sigma_x <= 0 or sigma_y <= 0:
            raise ValueError(f"sigma_x and sigma_y must be > 0, got {sigma_x}, {sigma_y}")
        if p0 is None:
            if stationary and abs(rho) >= 1:
                raise ValueError(f"stationary x_0 needs |rho| < 1, got rho={rho}")
            p0 = sigma_x**2 / (1 - rho**2) if stationary else sigma_x**2
        as2 = lambda v: np.array([[float(v)]])  # noqa: E731
        return cls(as2(rho), as2(sigma_x**2), as2(1.0), as2(sigma_y**2), np.array([float(m0)]), as2(p0), True)

    @cached_property
    def ssm(self) -> smcflow.StateSpaceModel:
        if self.is_scalar:
            rho, sx, sy = float(self.F[0, 0]), float(np.sqrt(self.Q[0, 0])), float(np.sqrt(self.R[0, 0]))
            m0, s0 = float(self.m0[0]), float(np.sqrt(self.P0[0, 0]))
            return smcflow.StateSpaceModel(
                initial=lambda: dist.Normal(m0, s0),
                transition=lambda x, t: dist.Normal(rho * x, sx),
                observation=lambda x, t: dist.Normal(x, sy),
            )
        F, H = jnp.asarray(self.F), jnp.asarray(self.H)
        q_chol = jnp.asarray(np.linalg.cholesky(self.Q))
        r_chol = jnp.asarray(np.linalg.cholesky(self.R))
        m0, p0_chol = jnp.asarray(self.m0), jnp.asarray(np.linalg.cholesky(self.P0))
        return smcflow.StateSpaceModel(
            initial=lambda: dist.MultivariateNormal(m0, scale_tril=p0_chol),
            transition=lambda x, t: dist.MultivariateNormal(x @ F.T, scale_tril=q_chol),
            observation=lambda x, t: dist.MultivariateNormal(x @ H.T, scale_tril=r_chol),
        )

    def kalman(self, ys):
        """Exact filter (:class:`smcflow.exact.KalmanResult`)."""
        return kalman_filter(ys, self.F, self.Q, self.H, self.R, self.m0, self.P0)

    def log_likelihood(self, ys) -> float:
        """Exact ``log p(y_{0:T-1})``."""
        return self.kalman(ys).log_likelihood


@dataclass(frozen=True)
class FiniteHMM(_Simulates):
    """``K``-state Markov chain (``transition_matrix[i, j] = p(j | i)``) with ``N(means[k], scale)`` emissions."""

    transition_matrix: np.ndarray
    initial_probs: np.ndarray
    means: np.ndarray
    scale: float = 1.0

    def __post_init__(self):
        P = np.asarray(self.transition_matrix, dtype=float)
        if P.ndim != 2 or P.shape[0] != P.shape[1] or not np.allclose(P.sum(1), 1):
            raise ValueError("transition_matrix must be square with rows summing to 1")
        if np.asarray(self.means).shape != (P.shape[0],) or np.asarray(self.initial_probs).shape != (P.shape[0],):
            raise ValueError(f"means and initial_probs must have shape ({P.shape[0]},)")

    @cached_property
    def ssm(self) -> smcflow.StateSpaceModel:
        P = jnp.asarray(self.transition_matrix)
        pi0 = jnp.asarray(self.initial_probs)
        means, scale = jnp.asarray(self.means), float(self.scale)
        return smcflow.StateSpaceModel(
            initial=lambda: dist.Categorical(probs=pi0),
            transition=lambda x, t: dist.Categorical(probs=P[x]),
            observation=lambda x, t: dist.Normal(means[x], scale),
        )

    def log_likelihood(self, ys) -> float:
        """Exact ``log p(y_{0:T-1})`` by the forward algorithm."""
        return self.forward(ys)[0]

    def forward(self, ys):
        ys = np.asarray(ys, dtype=np.float64)
        means = np.asarray(self.means, dtype=np.float64)
        log_lik = -0.5 * ((ys[:, None] - means[None]) / self.scale) ** 2 - np.log(self.scale) - 0.5 * np.log(2 * np.pi)
        return hmm_forward(np.log(self.initial_probs), np.log(self.transition_matrix), log_lik)


@dataclass(frozen=True)
class StochasticVolatility(_Simulates):
    """``x_t = mu + rho (x_{t-1} - mu) + sigma e_t`` (stationary start), ``y_t ~ N(0, exp(x_t))``."""

    mu: float = -1.0
    rho: float = 0.95
    sigma: float = 0.3

    @cached_property
    def ssm(self) -> smcflow.StateSpaceModel:
        mu, rho, sigma = float(self.mu), float(self.rho), float(self.sigma)
        return smcflow.StateSpaceModel(
            initial=lambda: dist.Normal(mu, sigma / np.sqrt(1 - rho**2)),
            transition=lambda x, t: dist.Normal(mu + rho * (x - mu), sigma),
            observation=lambda x, t: dist.Normal(0.0, jnp.exp(0.5 * x)),
        )
