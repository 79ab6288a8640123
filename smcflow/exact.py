"""Exact answers for reference problems (NumPy, float64), used by tests, benchmarks and examples.

* :func:`kalman_filter` - log-likelihood, filtering means and covariances of a linear-Gaussian
  state-space model;
* :func:`hmm_forward` - log-likelihood and filtering probabilities of a finite-state HMM;
* :func:`tilt_gaussian_mixture` - a Gaussian mixture times ``exp(-x'Ax/2 + b'x)``, in closed form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

__all__ = ["KalmanResult", "kalman_filter", "hmm_forward", "TiltedMixture", "tilt_gaussian_mixture"]


@dataclass(frozen=True)
class KalmanResult:
    log_likelihood: float
    filter_means: np.ndarray  # (T, dx)
    filter_covs: np.ndarray  # (T, dx, dx)
    log_likelihood_increments: np.ndarray  # (T,)


def kalman_filter(ys, F, Q, H, R, m0, P0) -> KalmanResult:
    """Kalman filter for ``x_0 ~ N(m0, P0)``, ``x_t = F x_{t-1} + N(0, Q)``, ``y_t = H x_t + N(0, R)``.

    ``ys`` has shape ``(T, dy)`` (or ``(T,)`` for scalar observations); same time convention as
    :class:`smcflow.StateSpaceModel` (``y_0`` observes ``x_0``). A row with a NaN is a missing
    observation: predicted, not updated, and contributing 0 to the log-likelihood.
    """
    ys = np.asarray(ys, dtype=np.float64)
    if ys.ndim == 1:
        ys = ys[:, None]
    F, Q, H, R = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (F, Q, H, R))
    m = np.atleast_1d(np.asarray(m0, dtype=np.float64))
    P = np.atleast_2d(np.asarray(P0, dtype=np.float64))
    T, dy = ys.shape
    means, covs, incs = [], [], []
    for t in range(T):
        if t > 0:
            m = F @ m
            P = F @ P @ F.T + Q
        if np.isnan(ys[t]).any():
            incs.append(0.0)
            means.append(m)
            covs.append(P)
            continue
        S = H @ P @ H.T + R
        resid = ys[t] - H @ m
        chol = np.linalg.cholesky(S)
        z = np.linalg.solve(chol, resid)
        incs.append(-0.5 * (z @ z) - np.log(np.diag(chol)).sum() - 0.5 * dy * np.log(2 * np.pi))
        K = np.linalg.solve(S, H @ P).T
        m = m + K @ resid
        P = P - K @ S @ K.T
        P = 0.5 * (P + P.T)
        means.append(m)
        covs.append(P)
    incs = np.asarray(incs)
    return KalmanResult(float(incs.sum()), np.asarray(means), np.asarray(covs), incs)


def hmm_forward(log_pi0, log_P, log_lik) -> tuple[float, np.ndarray]:
    """Forward algorithm in log space.

    Args:
      log_pi0: ``(K,)`` initial log-probabilities.
      log_P: ``(K, K)`` log transition matrix, ``log_P[i, j] = log p(x_t = j | x_{t-1} = i)``.
      log_lik: ``(T, K)`` ``log p(y_t | x_t = k)``.

    Returns:
      ``(log p(y_{0:T-1}), filtering probabilities (T, K))``.
    """
    log_pi0, log_P, log_lik = (np.asarray(a, dtype=np.float64) for a in (log_pi0, log_P, log_lik))
    alpha = log_pi0 + log_lik[0]
    total = 0.0
    filt = []
    for t in range(log_lik.shape[0]):
        if t > 0:
            alpha = logsumexp(alpha[:, None] + log_P, axis=0) + log_lik[t]
        c = logsumexp(alpha)
        total += c
        alpha = alpha - c
        filt.append(np.exp(alpha))
    return float(total), np.asarray(filt)


@dataclass(frozen=True)
class TiltedMixture:
    """Gaussian mixture ``sum_k weights[k] N(means[k], covs[k])`` with ``log_normaliser`` = log Z."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covs: np.ndarray  # (K, d, d)
    log_normaliser: float

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.means


def tilt_gaussian_mixture(weights, means, covs, A=None, b=None) -> TiltedMixture:
    """``p(x) exp(-x'Ax/2 + b'x) / Z`` for a Gaussian mixture ``p``, in closed form.

    Each component ``N(m, S)`` becomes ``N(m~, S~)`` with ``S~ = (S^-1 + A)^-1``,
    ``m~ = S~ (S^-1 m + b)``; its weight is multiplied by
    ``Z_k = exp(m~' S~^-1 m~ / 2 - m' S^-1 m / 2) (|S~| / |S|)^(1/2)`` and ``Z = sum_k w_k Z_k``.
    """
    w = np.asarray(weights, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    K, d = m.shape
    S = np.asarray(covs, dtype=np.float64).reshape(K, d, d)
    A = np.zeros((d, d)) if A is None else np.atleast_2d(np.asarray(A, dtype=np.float64))
    b = np.zeros(d) if b is None else np.atleast_1d(np.asarray(b, dtype=np.float64))
    new_means, new_covs, log_z = [], [], []
    for k in range(K):
        S_inv = np.linalg.inv(S[k])
        prec = S_inv + A
        S_t = np.linalg.inv(prec)
        m_t = S_t @ (S_inv @ m[k] + b)
        log_zk = 0.5 * m_t @ prec @ m_t - 0.5 * m[k] @ S_inv @ m[k]
        log_zk += 0.5 * (np.linalg.slogdet(S_t)[1] - np.linalg.slogdet(S[k])[1])
        new_means.append(m_t)
        new_covs.append(S_t)
        log_z.append(np.log(w[k]) + log_zk)
    log_z = np.asarray(log_z)
    total = logsumexp(log_z)
    return TiltedMixture(np.exp(log_z - total), np.asarray(new_means), np.asarray(new_covs), float(total))
