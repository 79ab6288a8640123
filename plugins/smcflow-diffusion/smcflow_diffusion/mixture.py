"""Analytic Gaussian-mixture diffusions: exact score, denoiser and tilted targets, in any dimension.

Data law ``p_0 = sum_k w_k N(m_k, S_k)`` on ``R^d``. Under a linear noising schedule
(``x_t = alpha x_0 + sigma eps``) the marginal at time ``t`` is the mixture of
``N(alpha m_k, C_k)`` with ``C_k = alpha^2 S_k + sigma^2 I``, so its score is

    grad log p_t(x) = sum_k r_k(x) C_k^{-1} (alpha m_k - x),     r_k(x) ∝ w_k N(x; alpha m_k, C_k),

and Tweedie's formula gives the exact posterior mean ``E[x_0 | x_t]``. The tilted targets
``p(x) exp(beta r(x)) / Z`` are closed-form for linear / quadratic rewards (each component stays
Gaussian, :func:`smcflow.exact.tilt_gaussian_mixture`) and for half-space indicators
(:meth:`GaussianMixture.tilt_halfspace`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import log_ndtr, logsumexp
from scipy.stats import norm

from smcflow.exact import TiltedMixture, tilt_gaussian_mixture

from .schedules import make_schedule
from .score_sampler import ScoreSampler, uniform_times

__all__ = ["GaussianMixture", "MixtureScore", "mixture_diffusion", "data_mixture", "HalfspaceTilt"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """``sum_k weights[k] N(means[k], covs[k])``: weights ``(K,)``, means ``(K, d)``, covs ``(K, d, d)``."""

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    @classmethod
    def create(cls, weights, means, covs) -> "GaussianMixture":
        """Build from array-likes; ``covs`` may be ``(K,)`` variances (isotropic) or ``(K, d, d)``."""
        w = np.asarray(weights, dtype=np.float64)
        m = np.asarray(means, dtype=np.float64)
        m = m[:, None] if m.ndim == 1 else m
        K, d = m.shape
        c = np.asarray(covs, dtype=np.float64)
        if c.ndim == 1:
            c = c[:, None, None] * np.eye(d)
        if w.shape != (K,) or c.shape != (K, d, d):
            raise ValueError(f"mixture shapes disagree: weights {w.shape}, means {m.shape}, covs {c.shape}")
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {w}")
        dtype = jnp.zeros(()).dtype
        return cls(jnp.asarray(w, dtype), jnp.asarray(m, dtype), jnp.asarray(c, dtype))

    @property
    def dim(self) -> int:
        return int(self.means.shape[-1])

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``(n, d)`` independent draws."""
        k_comp, k_eps = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
        chol = jnp.linalg.cholesky(self.covs)
        eps = jax.random.normal(k_eps, (n, self.dim), self.means.dtype)
        return self.means[comp] + jnp.einsum("nij,nj->ni", chol[comp], eps)

    def marginal(self, schedule: Any, t) -> "GaussianMixture":
        """The law of ``x_t = alpha(t) x_0 + sigma(t) eps`` for ``x_0`` from this mixture."""
        schedule = make_schedule(schedule)
        a, s = schedule.alpha(t), schedule.sigma(t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, a * self.means, a**2 * self.covs + s**2 * eye)

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``(n,)`` log-density at ``x`` of shape ``(n, d)``."""
        return jax.scipy.special.logsumexp(self._component_log_probs(x), axis=-1)

    def _component_log_probs(self, x: jax.Array) -> jax.Array:
        """``(n, K)``: ``log w_k + log N(x; m_k, S_k)``.

        The ``K`` Cholesky factors are inverted once; the per-particle work is matrix products only.
        """
        chol = jnp.linalg.cholesky(self.covs)  # (K, d, d)
        eye = jnp.broadcast_to(jnp.eye(self.dim, dtype=chol.dtype), chol.shape)
        chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # (K, d, d)
        z = jnp.einsum("kij,nkj->nki", chol_inv, x[:, None, :] - self.means[None])
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        return jnp.log(self.weights) - 0.5 * jnp.sum(z**2, -1) - log_det - 0.5 * self.dim * jnp.log(2 * jnp.pi)

    def score(self, x: jax.Array) -> jax.Array:
        """``(n, d)``: ``grad log p(x) = sum_k r_k(x) S_k^{-1} (m_k - x)``."""
        resp = jax.nn.softmax(self._component_log_probs(x), axis=-1)  # (n, K)
        precision = jnp.linalg.inv(self.covs)  # (K, d, d), once per call
        pulled = jnp.einsum("kij,nkj->nki", precision, self.means[None] - x[:, None, :])
        return jnp.einsum("nk,nkd->nd", resp, pulled)

    # -- exact tilted targets ------------------------------------------------------------------
    def tilt_quadratic(self, A=None, b=None, beta: float = 1.0) -> TiltedMixture:
        """``p(x) exp(beta (-x'Ax/2 + b'x)) / Z`` in closed form."""
        A = None if A is None else beta * np.atleast_2d(np.asarray(A, np.float64))
        b = None if b is None else beta * np.atleast_1d(np.asarray(b, np.float64))
        return tilt_gaussian_mixture(np.asarray(self.weights), np.asarray(self.means), np.asarray(self.covs), A=A, b=b)

    def tilt_linear(self, b, beta: float = 1.0) -> TiltedMixture:
        """``p(x) exp(beta b'x) / Z`` in closed form."""
        return self.tilt_quadratic(b=b, beta=beta)

    def tilt_halfspace(self, a, c: float, beta: float = 1.0) -> "HalfspaceTilt":
        """``p(x) exp(beta 1{a'x > c}) / Z``: exact component weights, mean, mass of the half-space, log Z."""
        w = np.asarray(self.weights, np.float64)
        m = np.asarray(self.means, np.float64)
        S = np.asarray(self.covs, np.float64)
        a = np.atleast_1d(np.asarray(a, np.float64))
        sd = np.sqrt(np.einsum("i,kij,j->k", a, S, a))
        z = (m @ a - c) / sd
        log_in = log_ndtr(z)  # log P_k(a'x > c)
        log_out = log_ndtr(-z)
        log_zk = np.logaddexp(log_out, beta + log_in)  # per-component normaliser
        log_z = float(logsumexp(np.log(w) + log_zk))
        weights = np.exp(np.log(w) + log_zk - log_z)
        # E_k[x 1{a'x > c}] = P_k m_k + S_k a phi(z_k) / sd_k  (and the complement with the sign flipped)
        shift = (S @ a) * (norm.pdf(z) / sd)[:, None]
        p_in = np.exp(log_in)
        mean_in = p_in[:, None] * m + shift
        mean_out = (1 - p_in)[:, None] * m - shift
        tilted = np.exp(np.log(w) - log_z)[:, None] * (mean_out + np.exp(beta) * mean_in)
        mass_in = float(np.sum(np.exp(np.log(w) + beta + log_in - log_z)))
        return HalfspaceTilt(weights, tilted.sum(0), mass_in, log_z)


@dataclass(frozen=True)
class HalfspaceTilt:
    """Exact facts about ``p(x) exp(beta 1{a'x > c}) / Z`` for a Gaussian mixture ``p``."""

    weights: np.ndarray  # (K,) tilted component masses
    mean: np.ndarray  # (d,)
    mass_in: float  # tilted probability of {a'x > c}
    log_normaliser: float


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class MixtureScore:
    """Exact score ``(x, t) -> grad log p_t(x)`` of a mixture noised by ``schedule`` (a callable pytree)."""

    mixture: GaussianMixture
    schedule: Any

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        return self.mixture.marginal(self.schedule, t).score(flat).reshape(shape)


def mixture_diffusion(
    weights=(0.5, 0.5),
    means=(-2.0, 2.0),
    covs=(0.25, 0.25),
    schedule: Any = "ou",
    n_steps: int = 200,
    t_min: float = 0.0,
    horizon: float | None = None,
    exact_prior: bool = True,
    final_denoise: bool = False,
) -> ScoreSampler:
    """A :class:`ScoreSampler` for a Gaussian-mixture data law with its exact score.

    Args:
      weights, means, covs: the mixture (``covs`` as ``(K,)`` variances or ``(K, d, d)``); the default
        is the 1-D bimodal example ``0.5 N(-2, 0.25) + 0.5 N(2, 0.25)``.
      schedule: ``"ou"``, ``"vp"`` or a schedule object.
      n_steps: Euler-Maruyama steps on a uniform grid from ``horizon`` to ``t_min``.
      exact_prior: draw ``x`` at ``times[0]`` from the exact noised mixture (else ``N(0, I)``).
      final_denoise: return ``E[x_0 | x_K]`` instead of ``x_K``.

    The sampler's ``mixture`` attribute is not part of the contract; use :func:`data_mixture` to get
    the mixture of a sampler built here, for exact references.
    """
    schedule = make_schedule(schedule)
    mixture = GaussianMixture.create(weights, means, covs)
    times = uniform_times(schedule, n_steps, t_min=t_min, horizon=horizon)
    prior = mixture.marginal(schedule, times[0]) if exact_prior else None
    return ScoreSampler(
        score=MixtureScore(mixture, schedule),
        schedule=schedule,
        times=times,
        prior=prior,
        event_shape=(mixture.dim,),
        final_denoise=final_denoise,
        name=f"gaussian_mixture(K={len(mixture.weights)}, d={mixture.dim})",
    )


def data_mixture(sampler: ScoreSampler) -> GaussianMixture:
    """The data mixture of a sampler built by :func:`mixture_diffusion`."""
    score = getattr(sampler, "score", None)
    if not isinstance(score, MixtureScore):
        raise TypeError(f"sampler {getattr(sampler, 'name', sampler)!r} is not a Gaussian-mixture diffusion")
    return score.mixture
