"""Stochastic ensemble Kalman filter (perturbed observations) on an :class:`~smcflow.SDEStateSpaceModel`.

The classical baseline for the SDE particle filters, on the same model objects. With an ensemble
``X = (x_1 .. x_n)`` at observation time ``t`` (forecast: every member moved by the model's
``n_substeps`` Euler-Maruyama steps, the package's one step, from the previous analysis)::

    inflation:     x_i <- xbar + sqrt(rho) (x_i - xbar)                      (rho >= 1 spreads the forecast)
    predicted y:   m_i = E[y_t | x_i] (the observation law's mean),   R = mean_i Cov[y_t | x_i]
    covariances:   P_xy = A^T B / (n - 1),  P_yy = B^T B / (n - 1)   (A, B: anomalies of x_i, m_i)
    localisation:  P_xy <- C_xy o P_xy,  P_yy <- C_yy o P_yy               (Schur products, optional)
    gain:          S = P_yy + R,  K = P_xy S^{-1}
    analysis:      x_i <- x_i + K (y_t + e_i - m_i),   e_i ~ N(0, R)         (perturbed observations)

and the log-likelihood approximation ``log p(y_{0:T-1}) ~ sum_t log N(y_t; mbar_t, S_t)`` (the Gaussian
forecast of each observation). For a linear SDE with linear-Gaussian observations the ensemble mean
and covariance tend to the Kalman filter's of the discretised chain as ``n`` grows, and so does the
log-likelihood; otherwise both are approximations (the analysis is linear in the observation). The
observation law is used only through its mean and covariance (:func:`smcflow.sde_filters.gaussian_moments`).
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .prng import streams
from .sde import check_count, em_substeps
from .sde_filters import SDEStateSpaceModel, _filter, gaussian_moments
from .validation import check_key, merge_static, split_static

__all__ = ["EnKFResult", "ensemble_kalman_filter", "gaspari_cohn"]


class EnKFResult(NamedTuple):
    """What :func:`ensemble_kalman_filter` returns (a pytree).

    Attributes:
      means: ``(T, d)`` analysis ensemble means.
      covs: ``(T, d, d)`` analysis ensemble covariances.
      log_likelihood: ``()`` the approximation ``sum_t log N(y_t; mbar_t, S_t)``.
      log_likelihood_increments: ``(T,)`` its terms.
      ensemble: ``(n, d)`` the final analysis ensemble.
    """

    means: jax.Array
    covs: jax.Array
    log_likelihood: jax.Array
    log_likelihood_increments: jax.Array
    ensemble: jax.Array


def gaspari_cohn(distance: Any, radius: float) -> np.ndarray:
    """The Gaspari-Cohn (1999) fifth-order compactly supported taper: 1 at distance 0, 0 beyond ``2 radius``.

    Use it to build localisation matrices (on the host, before the filter compiles), e.g.
    ``C_xy[i, j] = gaspari_cohn(|i - obs_site_j|, radius)``.
    """
    r = np.abs(np.asarray(distance, dtype=np.float64)) / radius
    near = (((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r**2 + 1.0
    far = ((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r + 4.0 - 2.0 / (3.0 * np.maximum(r, 1e-12))
    return np.where(r <= 1.0, near, np.where(r < 2.0, far, 0.0))


def _analysis(key, x, y, t, observation, y_shape, inflation, loc_xy, loc_yy):
    n = x.shape[0]
    x = jnp.mean(x, 0) + jnp.sqrt(inflation) * (x - jnp.mean(x, 0))
    m, r_all = gaussian_moments(observation(x, t), n, y_shape)
    r = jnp.mean(r_all, 0).astype(x.dtype)
    a, b = x - jnp.mean(x, 0), m - jnp.mean(m, 0)
    p_xy = loc_xy * (a.T @ b) / (n - 1)
    s = loc_yy * (b.T @ b) / (n - 1) + r
    chol = jnp.linalg.cholesky(s)
    gain = jax.scipy.linalg.cho_solve((chol, True), p_xy.T).T  # P_xy S^{-1}
    y = y.reshape(-1).astype(x.dtype)
    e = jax.random.normal(key, m.shape, x.dtype) @ jnp.linalg.cholesky(r).T
    x = x + (y + e - m) @ gain.T
    z = jax.scipy.linalg.solve_triangular(chol, y - jnp.mean(m, 0), lower=True)
    log_lik = -0.5 * z @ z - jnp.sum(jnp.log(jnp.diagonal(chol))) - 0.5 * y.shape[0] * jnp.log(2 * jnp.pi)
    return x, log_lik


@partial(jax.jit, static_argnames=("static", "n"))
def _run(arrays, static, ys, key, inflation, loc_xy, loc_yy, n: int) -> EnKFResult:
    ssm: SDEStateSpaceModel = merge_static(arrays, static)
    y_shape = tuple(ys.shape[1:])
    k0, k_analysis, k_forecast = streams(key, 3)
    x = ssm.initial().sample(k0, (n,))
    h = ssm.step_size.astype(x.dtype)

    def analyse(x, t):
        return _analysis(jax.random.fold_in(k_analysis, t), x, ys[t], t, ssm.observation, y_shape,
                         inflation, loc_xy, loc_yy)

    def summary(x):
        anomalies = x - jnp.mean(x, 0)
        return jnp.mean(x, 0), anomalies.T @ anomalies / (n - 1)

    def body(x, t):
        x = em_substeps(ssm.sde, jax.random.fold_in(k_forecast, t), x, h, ssm.n_substeps)
        x, log_lik = analyse(x, t)
        return x, (*summary(x), log_lik)

    x, ll0 = analyse(x, 0)
    m0, c0 = summary(x)
    x, (means, covs, lls) = lax.scan(body, x, jnp.arange(1, ys.shape[0]))
    means, covs = jnp.concatenate([m0[None], means]), jnp.concatenate([c0[None], covs])
    increments = jnp.concatenate([ll0[None], lls])
    return EnKFResult(means, covs, jnp.sum(increments), increments, x)


def _taper(value: Any, shape: tuple[int, int], name: str) -> jax.Array:
    array = jnp.asarray(value, dtype=jnp.result_type(float))
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def ensemble_kalman_filter(
    ssm: SDEStateSpaceModel,
    ys: Any,
    key: jax.Array,
    n_ensemble: int,
    *,
    inflation: float = 1.0,
    localisation: Optional[Any] = None,
) -> EnKFResult:
    """Run the stochastic EnKF (module docstring) on observations ``ys`` ``(T, ...)``.

    Args:
      ssm: an :class:`~smcflow.SDEStateSpaceModel`.
      ys: observations with leading time axis (times ``0 .. T-1``).
      key: a JAX PRNG key.
      n_ensemble: ensemble size (int >= 2).
      inflation: multiplicative covariance inflation ``rho >= 1`` applied to each forecast (traced).
      localisation: None, a ``(d, dy)`` taper ``C_xy`` for the state-observation covariance, or a pair
        ``(C_xy, C_yy)`` adding a ``(dy, dy)`` taper for the observation covariance (see
        :func:`gaspari_cohn`).

    Returns:
      :class:`EnKFResult`.
    """
    check_key(key)
    n = check_count(n_ensemble, "n_ensemble", minimum=2)
    model = _filter(ssm, ys, guided=False, lookahead=False, caller="ensemble_kalman_filter")  # same checks
    if not isinstance(inflation, jax.core.Tracer):
        value = float(np.asarray(inflation))
        if not (np.isfinite(value) and value >= 1.0):
            raise ValueError(f"inflation must be a finite number >= 1, got {value}")
    d = ssm.check()
    dy = int(np.prod(model.ys.shape[1:], dtype=np.int64))
    if localisation is None:
        loc_xy, loc_yy = jnp.ones((d, dy)), jnp.ones((dy, dy))
    elif isinstance(localisation, (tuple, list)) and len(localisation) == 2:
        loc_xy = _taper(localisation[0], (d, dy), "localisation[0] (C_xy)")
        loc_yy = _taper(localisation[1], (dy, dy), "localisation[1] (C_yy)")
    else:
        loc_xy, loc_yy = _taper(localisation, (d, dy), "localisation (C_xy)"), jnp.ones((dy, dy))
    dtype = model.ys.dtype
    return _run(*split_static(ssm), model.ys, key, jnp.asarray(inflation, dtype), loc_xy.astype(dtype),
                loc_yy.astype(dtype), n=n)
