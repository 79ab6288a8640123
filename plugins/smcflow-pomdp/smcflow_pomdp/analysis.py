"""Belief-space analysis: epsilon-nets and covering numbers, forgetting curves, Lipschitz constants.

* **Greedy epsilon-net** of points ``x_1 .. x_n`` under a distance matrix ``D``: scan the points in
  order, make every point not yet within ``epsilon`` of a centre a new centre. The centres cover every
  point within ``epsilon`` and are pairwise more than ``epsilon`` apart, so the net's size ``N_greedy``
  brackets the covering number: ``N(epsilon) <= N_greedy(epsilon) <= N(epsilon / 2)``. It runs as one
  ``lax.while_loop`` (one iteration per centre) and is vmapped over a list of radii.
* **Forgetting curve**: the distance ``d(b_t, b'_t)`` between the exact beliefs of one history
  filtered from two priors, against ``t``; :func:`geometric_rate` fits ``d_t ≈ c r^t``.
* **Empirical Lipschitz constant** of a value function ``V`` over beliefs:
  ``max_{i != j} |V(b_i) - V(b_j)| / d(b_i, b_j)``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .filters import bayes_beliefs

__all__ = ["EpsilonNet", "greedy_net", "covering_numbers", "forgetting_curve", "geometric_rate",
           "LipschitzEstimate", "empirical_lipschitz"]


class EpsilonNet(NamedTuple):
    """``centers (n,) bool`` (which points are centres) and ``assignment (n,)`` (the nearest centre)."""

    centers: jax.Array
    assignment: jax.Array

    @property
    def size(self) -> jax.Array:
        return jnp.sum(self.centers)


def _check_distances(distances: Any) -> jax.Array:
    D = jnp.asarray(distances)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"distances must be a square (n, n) matrix, got shape {D.shape}")
    return D


@jax.jit
def _greedy(D: jax.Array, epsilon: jax.Array) -> EpsilonNet:
    n = D.shape[0]

    def body(state):
        uncovered, centers = state
        i = jnp.argmax(uncovered)  # the first point not yet covered
        return uncovered & (D[i] > epsilon), centers.at[i].set(True)

    _, centers = lax.while_loop(lambda s: jnp.any(s[0]), body, (jnp.ones(n, bool), jnp.zeros(n, bool)))
    return EpsilonNet(centers, jnp.argmin(jnp.where(centers[None, :], D, jnp.inf), axis=1))


def greedy_net(distances: Any, epsilon: float) -> EpsilonNet:
    """The greedy epsilon-net of ``n`` points given their distances ``(n, n)``, scanned in index order."""
    if not float(epsilon) >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    return _greedy(_check_distances(distances), jnp.asarray(epsilon, jnp.float32))


def covering_numbers(distances: Any, epsilons: Any) -> jax.Array:
    """Greedy-net sizes ``(k,)`` for radii ``epsilons (k,)`` (one vmapped call)."""
    eps = jnp.asarray(epsilons, jnp.float32)
    if eps.ndim != 1 or not bool(jnp.all(eps >= 0)):
        raise ValueError("epsilons must be a 1-D array of radii >= 0")
    D = _check_distances(distances)
    return jax.vmap(lambda e: _greedy(D, e).size)(eps)


def forgetting_curve(pomdp: Any, actions: Any, observations: Any, prior1: Any, prior2: Any, metric: Any) -> jax.Array:
    """``d(b_t, b'_t)`` for ``t = 0 .. H``: exact beliefs of the same histories ``(H,)`` or ``(B, H)``
    from the priors ``prior1`` and ``prior2``; returns ``(H + 1,)`` or ``(B, H + 1)``."""
    one = bayes_beliefs(pomdp, actions, observations, prior1).beliefs
    two = bayes_beliefs(pomdp, actions, observations, prior2).beliefs
    S = one.shape[-1]
    return metric.paired(one.reshape(-1, S), two.reshape(-1, S)).reshape(one.shape[:-1])


def geometric_rate(curve: Any, start: int = 0) -> float:
    """The factor ``r`` of the least-squares fit ``log d_t = log c + t log r`` over ``t >= start``
    (points with ``d_t = 0`` are left out)."""
    d = np.asarray(curve, dtype=np.float64)[start:]
    t = np.arange(start, start + d.size)
    keep = d > 0
    if keep.sum() < 2:
        raise ValueError("geometric_rate needs at least two positive distances")
    return float(np.exp(np.polyfit(t[keep], np.log(d[keep]), 1)[0]))


class LipschitzEstimate(NamedTuple):
    """``constant`` and the pair ``(i, j)`` attaining it."""

    constant: float
    pair: tuple[int, int]


def empirical_lipschitz(values: Any, distances: Any) -> LipschitzEstimate:
    """``max_{i != j} |v_i - v_j| / d_ij`` for values ``(n,)`` and distances ``(n, n)``.

    Pairs at distance 0 count only if their values differ (then the constant is ``inf``: the values
    are not a function of the beliefs).
    """
    D = np.asarray(_check_distances(distances), dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (D.shape[0],):
        raise ValueError(f"values must have shape ({D.shape[0]},) to match distances, got {v.shape}")
    gap = np.abs(v[:, None] - v[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gap > 0, gap / D, 0.0)
    np.fill_diagonal(ratio, 0.0)
    i, j = np.unravel_index(np.argmax(ratio), ratio.shape)
    return LipschitzEstimate(float(ratio[i, j]), (int(i), int(j)))
