"""Local (Kramers-Moyal) estimators of drift and diffusion from the increments' conditional moments.

For increments at lag ``tau = l dt`` the first two conditional moments are, to first order in ``tau``,

    M1_tau(x) = E[X_{t+tau} - X_t | X_t = x] / tau                = b + tau (J b + (a : grad^2 b) / 2) / 2 + ..
    M2_tau(x) = E[(X_{t+tau} - X_t)(..)^T | X_t = x] / tau          = a + tau (b b^T + (J a + a J^T) / 2 + ..) + ..

(``J`` the drift Jacobian). ``form="quadratic_variation"`` takes ``b = M1_dt``, ``a = M2_dt``, whose bias is
``O(dt)``; ``form="residual"`` fits the drift first and takes ``a`` as the local mean of ``R R^T / dt`` with
``R = dX - b^(X_t) dt`` the residual of the fitted drift *at each increment's own start point*. That cancels
the ``b b^T dt`` term (the largest one for a fast drift: it is 25 times ``a`` for stochastic Lorenz-63 at
``dt = 0.01``) and leaves ``dt (J a + a J^T) / 2``; unlike the node-level conditional covariance
``M2 - dt M1 M1^T`` it also removes the spread of the drift inside the smoothing window (``dt Var(b)`` over
the window, larger than ``a`` itself on Lorenz-63); ``form="bias_cancelling"`` extrapolates over two lags, ``b = 2 M1_dt - M1_2dt``
and ``a = 2 M2_dt - M2_2dt``, which cancels the whole first-order term of both (Richardson), leaving
``O(dt^2)`` (for the stationary OU process ``E[(dX)^2 / (2 dt)] = D (1 - e^{-theta dt}) / (theta dt) = D (1 - theta dt / 2 + ..)``
becomes ``D (1 - theta^2 dt^2 / 3 + ..)``), at the price of a larger variance.

The conditional moments are estimated on a regular grid of nodes spanning the data:

* ``method="kernel"``: Nadaraya-Watson with a Gaussian product kernel, computed from linearly binned
  sums (each start point shares its weight among the ``2^d`` surrounding nodes) smoothed axis by axis;
* ``method="binned"``: plain averages over the cells around each node (nearest-node histogram).

Drift and diffusion get their own resolution, because their noise differs: ``Var[dX / tau] ~ a / tau``
against ``Var[dX dX^T / tau] ~ 2 a^2``. With the noise-to-signal ratio ``r = abar / (2 tau |b|^2)`` (mean
diagonal of ``abar``, mean squared linear drift over the data), the regression rules of thumb give the
diffusion a bandwidth ``sigma_j (4 / ((d + 2) m))^{1/(d+4)}`` (``m`` increments) and the drift that times
``r^{1/(d+4)}``; the binned cells are sized for ``c m^{1/(d+2)}`` nodes per axis (diffusion) and
``r^{1/(d+2)}`` times fewer for the drift.

Where the data are thin the local averages are noisy (the drift's noise is ``sqrt(a / (dt w))`` for
``w`` samples near a node), so each node's estimate is shrunk towards a global fit with a prior weight
of ``w0`` pseudo-samples (``w0 r`` for the drift): a linear least-squares drift ``B x + c`` and the mean diffusion ``abar`` (over
all increments, in the same form), ``value = global + w / (w + w0) (local - global)``. Far from the data
the drift is that linear fit (it extrapolates linearly and pulls back like an OU process) and the
diffusion ``abar``; each node's local diffusion is projected onto the PSD cone first (the extrapolated
form can leave it), so every node, as a convex combination, is symmetric PSD, and so is the multilinear
interpolation between nodes (:class:`~smcflow_sde.fields.GridField`) and the constant continuation
beyond the grid. Grids need ``d <= 4``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

import smcflow

from .data import Increments, Paths, prepare_paths
from .fields import AddFields, GridField, LinearMap, evaluate, project_psd

__all__ = ["KramersMoyal", "Grid", "node_moments", "global_moments"]

METHODS = ("kernel", "binned")
FORMS = ("quadratic_variation", "residual", "bias_cancelling")
MAX_DIM = 4
_GRID_CAP = {1: 512, 2: 128, 3: 48, 4: 20}


@dataclass(frozen=True)
class Grid:
    """Regular grid: ``lower`` ``(d,)``, ``spacing`` ``(d,)``, ``sizes`` (nodes per axis)."""

    lower: np.ndarray
    spacing: np.ndarray
    sizes: tuple[int, ...]

    def axis(self, j: int) -> np.ndarray:
        return self.lower[j] + self.spacing[j] * np.arange(self.sizes[j])

    def nodes(self) -> np.ndarray:
        """Every node ``(prod(sizes), d)``, C order."""
        mesh = np.meshgrid(*(self.axis(j) for j in range(len(self.sizes))), indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)


def _linear_bin(grid: Grid, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(flat node index, weight)`` of each of the ``2^d`` corners around every point (weights sum to 1)."""
    sizes = np.asarray(grid.sizes)
    u = np.clip((x - grid.lower) / grid.spacing, 0, sizes - 1)
    base = np.clip(np.floor(u), 0, np.maximum(sizes - 2, 0)).astype(np.int64)
    frac = u - base
    out = []
    for corner in product((0, 1), repeat=x.shape[1]):
        offset = np.asarray(corner)
        index = np.minimum(base + offset, sizes - 1)
        weight = np.prod(np.where(offset == 1, frac, 1 - frac), axis=1)
        out.append((np.ravel_multi_index(tuple(index.T), grid.sizes), weight))
    return out


def _nearest_bin(grid: Grid, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    index = np.clip(np.rint((x - grid.lower) / grid.spacing), 0, np.asarray(grid.sizes) - 1).astype(np.int64)
    return [(np.ravel_multi_index(tuple(index.T), grid.sizes), np.ones(x.shape[0]))]


def _smooth(values: np.ndarray, grid: Grid, bandwidth: np.ndarray) -> np.ndarray:
    """Convolve ``(G_1, .., G_d, k)`` with the Gaussian product kernel, axis by axis."""
    for j in range(len(grid.sizes)):
        nodes = grid.axis(j)
        kernel = np.exp(-0.5 * ((nodes[:, None] - nodes[None, :]) / bandwidth[j]) ** 2)
        values = np.moveaxis(np.tensordot(kernel, values, axes=(1, j)), 0, j)
    return values


def node_moments(grid: Grid, inc: Increments, method: str, bandwidth: Optional[np.ndarray], order: int):
    """``(weight (G..), M)`` of one lag at every node: ``M1 (G.., d)`` for ``order=1``, ``M2 (G.., d, d)`` for
    ``order=2`` (undefined where the weight is 0)."""
    d = inc.start.shape[1]
    size = int(np.prod(grid.sizes))
    moment = inc.delta if order == 1 else (inc.delta[:, :, None] * inc.delta[:, None, :]).reshape(-1, d * d)
    stats = np.concatenate([np.ones((inc.start.shape[0], 1)), moment], axis=1)
    sums = np.zeros((size, stats.shape[1]))
    binning = _linear_bin if method == "kernel" else _nearest_bin
    for flat, weight in binning(grid, inc.start):
        for c in range(stats.shape[1]):
            sums[:, c] += np.bincount(flat, weights=weight * stats[:, c], minlength=size)
    sums = sums.reshape(*grid.sizes, -1)
    if method == "kernel":
        sums = _smooth(sums, grid, bandwidth)
    weight = sums[..., 0]
    m = sums[..., 1:] / np.where(weight > 0, weight, 1.0)[..., None] / inc.tau
    return weight, (m if order == 1 else m.reshape(*grid.sizes, d, d))


def global_moments(inc: Increments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear least squares of ``delta / tau`` on ``(x, 1)`` (``B (d, d)``, ``c (d,)``) and the mean
    ``delta delta^T / tau`` over every increment of one lag."""
    design = np.concatenate([inc.start, np.ones((inc.start.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, inc.delta / inc.tau, rcond=None)
    d = inc.start.shape[1]
    return coef[:d].T, coef[d], inc.delta.T @ inc.delta / inc.tau / inc.start.shape[0]


def _extrapolate(first: np.ndarray, second: Optional[np.ndarray] = None) -> np.ndarray:
    """Two-lag (Richardson) combination ``2 f(dt) - f(2 dt)``; a single lag as it is."""
    return first if second is None else 2 * first - second


@dataclass(frozen=True)
class KramersMoyal:
    """Local Kramers-Moyal estimator (module docstring); ``fit(paths, dt, mask=None)`` returns an SDE.

    Attributes:
      method: ``"kernel"`` (Nadaraya-Watson, Gaussian kernel) or ``"binned"`` (cell averages).
      form: ``"quadratic_variation"``, ``"residual"`` (conditional covariance) or ``"bias_cancelling"``
        (two-lag extrapolation).
      grid_size: nodes per axis (int or one per axis); None: for ``kernel`` enough nodes for two per
        bandwidth, for ``binned`` about 100 increments per cell; capped per dimension.
      bandwidth: kernel standard deviation per axis (number or ``(d,)``); None: the rule of thumb.
      bounds: ``(lower (d,), upper (d,))`` of the grid; None: the data's range, padded by ``padding``.
      padding: fraction of the range added on each side when ``bounds`` is None.
      prior_weight: ``w0 > 0``, the pseudo-samples of the global fit each node's diffusion is shrunk
        towards; the drift's is ``w0 r`` (its samples are ``r`` times noisier).
    """

    method: str = "kernel"
    form: str = "quadratic_variation"
    grid_size: Any = None
    bandwidth: Any = None
    bounds: Any = None
    padding: float = 0.05
    prior_weight: float = 3.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}; use one of {METHODS}")
        if self.form not in FORMS:
            raise ValueError(f"form={self.form!r}; use one of {FORMS}")
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight must be > 0, got {self.prior_weight}")

    @property
    def name(self) -> str:
        return f"km_{self.method}"

    @property
    def lags(self) -> tuple[int, ...]:
        return (1, 2) if self.form == "bias_cancelling" else (1,)

    def _bounds(self, data: Paths) -> tuple[np.ndarray, np.ndarray]:
        d = data.dim
        if self.bounds is None:
            present = data.present()
            lo, hi = present.min(0), present.max(0)
            pad = self.padding * np.maximum(hi - lo, 1e-12)
            return lo - pad, hi + pad
        lo, hi = (np.broadcast_to(np.asarray(b, np.float64), (d,)) for b in self.bounds)
        if not np.all(hi > lo):
            raise ValueError(f"bounds must have upper > lower on every axis, got {self.bounds}")
        return lo, hi

    def _resolution(self, data: Paths, m: int, coarsen: float) -> tuple[Grid, Optional[np.ndarray]]:
        """The grid and (kernel) bandwidth for one coefficient; ``coarsen`` is its noise ratio ``r >= 1``."""
        d = data.dim
        lo, hi = self._bounds(data)
        bandwidth = None
        if self.method == "kernel":
            if self.bandwidth is not None:
                bandwidth = np.broadcast_to(np.asarray(self.bandwidth, np.float64), (d,))
                if not np.all(bandwidth > 0):
                    raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}")
            else:
                sd = np.maximum(data.present().std(0), 1e-12)
                bandwidth = sd * (4.0 / ((d + 2) * m)) ** (1.0 / (d + 4)) * coarsen ** (1.0 / (d + 4))
        if self.grid_size is not None:
            sizes = np.broadcast_to(np.asarray(self.grid_size), (d,)).astype(int)
            if np.any(sizes < 2):
                raise ValueError(f"grid_size must be >= 2 per axis, got {self.grid_size}")
        else:
            if self.method == "kernel":  # two nodes per bandwidth
                sizes = np.ceil((hi - lo) / (0.5 * bandwidth)).astype(int) + 1
            else:
                sizes = np.full(d, int(round(1.4 * (m / coarsen) ** (1.0 / (d + 2)))))
            sizes = np.clip(sizes, 4, _GRID_CAP[d])
        return Grid(lo, (hi - lo) / (sizes - 1), tuple(int(s) for s in sizes)), bandwidth

    def fit(self, paths: Any, dt: Any, mask: Any = None) -> smcflow.SDE:
        """Estimate ``b`` and ``a`` (module docstring) and return them as an :class:`smcflow.SDE`."""
        data = prepare_paths(paths, dt, mask, min_lag=max(self.lags))
        d = data.dim
        if d > MAX_DIM:
            raise ValueError(f"paths have d = {d}; grid estimators need d <= {MAX_DIM} (use 'neural' or 'ou_mle')")
        increments = [data.increments(lag) for lag in self.lags]
        m = increments[0].start.shape[0]
        globals_ = [global_moments(inc) for inc in increments]
        B, c, a_bar = (_extrapolate(*(g[i] for g in globals_)) for i in range(3))
        if self.form == "residual":  # global mean of the linear drift's residual (the prior scale only)
            inc = increments[0]
            r = inc.delta - (inc.start @ B.T + c) * inc.tau
            a_bar = r.T @ r / inc.tau / r.shape[0]
        a_bar = project_psd(a_bar)
        signal = np.mean(np.sum((data.present() @ B.T + c) ** 2, axis=1)) / d
        ratio = max(1.0, float(np.mean(np.diag(a_bar))) / (2 * increments[0].tau * max(signal, 1e-12)))

        # drift: the local correction to the linear drift, faded out where data are thin
        grid, bandwidth = self._resolution(data, m, ratio)
        moments = [node_moments(grid, inc, self.method, bandwidth, 1) for inc in increments]
        shrink = self._shrink(moments, ratio)
        local = _extrapolate(*(mom for _, mom in moments))
        values = shrink[..., None] * (local - (grid.nodes().reshape(*grid.sizes, d) @ B.T + c))
        drift = AddFields(LinearMap(jnp.asarray(B, jnp.float32), jnp.asarray(c, jnp.float32)), _field(grid, values))

        # diffusion: a convex combination of PSD matrices (projected again for rounding only)
        if self.form == "residual":  # the fitted drift's residual at every increment's own start
            inc = increments[0]
            residual = inc.delta - evaluate(drift, inc.start) * inc.tau
            increments = [Increments(inc.start, residual, inc.path, inc.tau)]
            a_bar = project_psd(residual.T @ residual / inc.tau / residual.shape[0])
        grid, bandwidth = self._resolution(data, m, 1.0)
        moments = [node_moments(grid, inc, self.method, bandwidth, 2) for inc in increments]
        shrink = self._shrink(moments, 1.0)
        local = _extrapolate(*(mom for _, mom in moments))
        values = project_psd(a_bar + shrink[..., None, None] * (project_psd(local) - a_bar))
        return smcflow.SDE(drift, _field(grid, values))

    def _shrink(self, moments: list, coarsen: float) -> np.ndarray:
        """``w / (w + w0 r)`` per node, ``w`` the smallest kernel weight over the lags."""
        weight = np.min([w for w, _ in moments], axis=0)
        return weight / (weight + self.prior_weight * coarsen)


def _field(grid: Grid, values: np.ndarray) -> GridField:
    return GridField(jnp.asarray(grid.lower, jnp.float32), jnp.asarray(grid.spacing, jnp.float32),
                     jnp.asarray(values, jnp.float32))
