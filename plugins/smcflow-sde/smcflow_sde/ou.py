"""Closed-form maximum likelihood of a linear (Ornstein-Uhlenbeck) SDE ``dX = (B X + c) dt + Sigma dW``.

Sampled every ``dt`` the process is exactly the Gaussian AR(1) chain

    X_{i+1} = F X_i + m + e_i,   e_i ~ N(0, Q),   F = e^{B dt},   m = int_0^dt e^{B s} ds c,
    Q = int_0^dt e^{B s} a e^{B^T s} ds,   a = Sigma Sigma^T.

Conditionally on each path's first sample, the likelihood of ``(F, m, Q)`` is maximised in closed form
by least squares of ``X_{i+1}`` on ``(X_i, 1)`` over every pair of consecutive present samples, with ``Q``
the mean outer product of the residuals. The map to ``(B, c, a)`` is one to one where ``F`` has a real
logarithm: ``B = log(F) / dt``, ``c = (int_0^dt e^{Bs} ds)^{-1} m``, and ``vec(a) = M^{-1} vec(Q)`` with
``M = int_0^dt e^{Bs} (x) e^{Bs} ds`` (Van Loan's block exponential), so by invariance these are the MLE
of the continuous parameters. In 1-D, ``dX = -theta (X - mu) dt + sqrt(2 D) dW`` gives
``theta = -log(rho) / dt``, ``mu = m / (1 - rho)``, ``D = theta Q / (1 - rho^2)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy.linalg import expm, logm

import smcflow

from .data import prepare_paths
from .fields import ConstantMatrix, LinearMap, project_psd

__all__ = ["OUParameters", "OrnsteinUhlenbeckMLE", "ou_transition"]


class OUParameters(NamedTuple):
    """The fit: one-step ``F (d, d)``, ``m (d,)``, ``Q (d, d)``; continuous ``B``, ``c``, ``a``; the maximised
    conditional log-likelihood and the number of pairs it used."""

    F: np.ndarray
    m: np.ndarray
    Q: np.ndarray
    B: np.ndarray
    c: np.ndarray
    a: np.ndarray
    log_likelihood: float
    n_pairs: int


def _integrals(B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``int_0^dt e^{Bs} ds`` ``(d, d)`` and ``int_0^dt e^{Bs} (x) e^{Bs} ds`` ``(d^2, d^2)`` (block exponentials)."""
    d = B.shape[0]

    def integral(K):
        k = K.shape[0]
        block = np.zeros((2 * k, 2 * k))
        block[:k, :k], block[:k, k:] = K, np.eye(k)
        return expm(block * dt)[:k, k:]

    kron_sum = np.kron(B, np.eye(d)) + np.kron(np.eye(d), B)
    return integral(B), integral(kron_sum)


def ou_transition(B: Any, c: Any, a: Any, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact one-step ``(F, m, Q)`` of ``dX = (B X + c) dt + Sigma dW`` over ``dt`` (module docstring)."""
    B, c, a = (np.atleast_1d(np.asarray(v, np.float64)) for v in (B, c, a))
    B, a = np.atleast_2d(B), np.atleast_2d(a)
    phi, kron = _integrals(B, dt)
    Q = (kron @ a.reshape(-1)).reshape(a.shape)
    return expm(B * dt), phi @ c, 0.5 * (Q + Q.T)


@dataclass(frozen=True)
class OrnsteinUhlenbeckMLE:
    """Closed-form OU maximum likelihood (module docstring); ``fit(paths, dt, mask=None)`` returns an SDE
    with a linear drift and a constant diffusion, ``fit_parameters`` the :class:`OUParameters`."""

    name = "ou_mle"

    def fit_parameters(self, paths: Any, dt: Any, mask: Any = None) -> OUParameters:
        data = prepare_paths(paths, dt, mask)
        inc = data.increments(1)
        d, n = data.dim, inc.start.shape[0]
        if n <= d + 1:
            raise ValueError(f"paths have {n} pairs of consecutive samples; the OU fit needs more than d + 1 = {d + 1}")
        design = np.concatenate([inc.start, np.ones((n, 1))], axis=1)
        target = inc.start + inc.delta
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        F, m = coef[:d].T, coef[d]
        resid = target - design @ coef
        Q = resid.T @ resid / n
        sign, log_det = np.linalg.slogdet(Q)
        if sign <= 0:
            raise ValueError("the residual covariance of the OU fit is singular (deterministic or degenerate paths)")
        log_lik = -0.5 * n * (d * np.log(2 * np.pi) + log_det + d)
        eig = np.linalg.eigvals(F)
        if np.any((np.abs(eig.imag) < 1e-12) & (eig.real <= 0)):
            raise ValueError(f"the fitted one-step matrix F has eigenvalues {eig} with a non-positive real one: "
                             "it is not the flow e^{B dt} of a linear SDE (dt too large for this process?)")
        B = np.real(logm(F)) / data.dt
        phi, kron = _integrals(B, data.dt)
        c = np.linalg.solve(phi, m)
        a = np.linalg.solve(kron, Q.reshape(-1)).reshape(d, d)
        return OUParameters(F, m, Q, B, c, project_psd(a), float(log_lik), int(n))

    def fit(self, paths: Any, dt: Any, mask: Any = None) -> smcflow.SDE:
        p = self.fit_parameters(paths, dt, mask)
        return smcflow.SDE(LinearMap(jnp.asarray(p.B, jnp.float32), jnp.asarray(p.c, jnp.float32)),
                           ConstantMatrix(jnp.asarray(p.a, jnp.float32)))
