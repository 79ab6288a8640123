"""Path-space (Girsanov) weighting of Euler-Maruyama chains.

Reference chain on the grid ``times`` (``h_k = |t_{k+1} - t_k|``, ``V_k = noise(t_k) > 0``)::

    x_{k+1} = x_k + h_k v(x_k, t_k) + V_k sqrt(h_k) xi_k,          xi_k ~ N(0, I)

Guided (proposal) chain, for any guidance direction ``g``::

    x_{k+1} = x_k + h_k (v + V_k^2 g(x_k, t_k)) + V_k sqrt(h_k) xi_k

With the ``xi`` actually drawn, the log Radon-Nikodym derivative of reference over proposal for that
step is exactly the log-ratio of the two Gaussian transition densities::

    log N(x'; x + h v, h V^2) - log N(x'; x + h (v + V^2 g), h V^2) = -V sqrt(h) <g, xi> - h V^2 |g|^2 / 2

:class:`PathModel` adds telescoping potentials ``G_{k+1}(x_{k+1}) - G_k(x_k)`` with ``G_K`` the
terminal log-potential (e.g. ``beta * r(x_K)``), so the product of all increments is
``exp(G_K(x_K)) dP/dQ``: weighted particles target ``p(x_K) exp(G_K(x_K)) / Z`` for the law ``p`` of the
discretised reference chain, and ``exp(log Z_hat)`` is unbiased for ``Z = E_p[exp(G_K(x_K))]``, whatever
``g`` and the intermediate ``G_k``. Deterministic steps (``V = 0``) are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["girsanov_log_weight", "check_path_grid", "PathParticles", "PathModel"]


def _sum_event(a: jax.Array) -> jax.Array:
    """Sum over every axis but the leading (particle) one."""
    return jnp.sum(a, axis=tuple(range(1, a.ndim)))


def girsanov_log_weight(guidance: jax.Array, xi: jax.Array, noise: jax.Array, h: jax.Array) -> jax.Array:
    """Per-particle ``-V sqrt(h) <g, xi> - h V^2 |g|^2 / 2``.

    Args:
      guidance: ``g``, shape ``(n, ...)``.
      xi: the standard normal draws used in the step, same shape.
      noise: ``V`` (scalar); h: step size ``h > 0`` (scalar).

    Returns:
      ``(n,)`` log-weight increments.
    """
    return -noise * jnp.sqrt(h) * _sum_event(guidance * xi) - 0.5 * h * noise**2 * _sum_event(guidance * guidance)


def check_path_grid(times: Any, noise: Callable[[jax.Array], jax.Array], owner: str) -> None:
    """Refuse a bad time grid or a deterministic step, naming ``owner`` in the error.

    ``times`` must be 1-D, finite, strictly monotone with at least two entries, and ``noise(t_k)`` must
    be > 0 at every step start ``t_0 .. t_{K-1}``: with ``V = 0`` resampled copies would stay identical.
    Skipped when ``times`` is a tracer (the check runs on the host before compilation).
    """
    if isinstance(times, jax.core.Tracer):
        return
    t = np.asarray(times)
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(f"{owner}.times must be 1-D with at least 2 entries, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{owner}.times has non-finite entries")
    dt = np.diff(t)
    if not (np.all(dt > 0) or np.all(dt < 0)):
        raise ValueError(f"{owner}.times must be strictly monotone")
    v = np.asarray(jax.vmap(lambda s: jnp.asarray(noise(s)))(jnp.asarray(t[:-1])))
    bad = ~(v > 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"{owner} noise(t) must be > 0 at every step, got {v.reshape(len(t) - 1, -1)[k]} at t={t[k]} "
            f"(step {k}): deterministic steps are refused because resampled copies would stay identical"
        )


class PathParticles(NamedTuple):
    """Particle state of a :class:`PathModel`: the position and its current potential ``G_k(x_k)``."""

    x: jax.Array
    log_potential: jax.Array


def _zeros_potential(x: jax.Array, *_: Any) -> jax.Array:
    return jnp.zeros(x.shape[:1], x.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PathModel:
    """Feynman-Kac model over Euler-Maruyama paths with Girsanov weights.

    All functions are batched over the leading (particle) axis. Fields may be plain functions (static)
    or callable pytrees (their array leaves are traced, so new parameters do not recompile).

    Attributes:
      times: ``(K+1,)`` grid from the initial law to the target (increasing or decreasing).
      sample_initial: ``(key, n) -> x`` draws ``x_0`` from the reference initial law.
      drift: ``v(x, t) -> (n, ...)``.
      noise: ``V(t) -> scalar > 0``.
      guidance: ``g(x, t) -> (n, ...)`` or None (no guidance: plain reference proposal).
      potential: intermediate log-potential ``G(x, t) -> (n,)`` used at ``t_0 .. t_{K-1}``, or None (0).
      terminal_log_potential: ``G_K(x) -> (n,)`` at ``t_K``, or None (0).
      initial_proposal: ``(key, n) -> (x_0, log p_0(x_0) - log q_0(x_0))`` to draw ``x_0`` from another
        law ``q_0``, or None (draw from ``sample_initial``).
    """

    times: jax.Array
    sample_initial: Callable[[jax.Array, int], jax.Array]
    drift: Callable[[jax.Array, jax.Array], jax.Array]
    noise: Callable[[jax.Array], jax.Array]
    guidance: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    potential: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    terminal_log_potential: Optional[Callable[[jax.Array], jax.Array]] = None
    initial_proposal: Optional[Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]] = None

    @property
    def n_steps(self) -> int:
        return int(np.shape(self.times)[0]) - 1

    def validate(self) -> None:
        """Refuse bad grids and deterministic steps (called by the engine before compiling)."""
        check_path_grid(self.times, self.noise, "PathModel")

    # -- potentials ------------------------------------------------------------------------------
    def _intermediate(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return (self.potential or _zeros_potential)(x, t)

    def _terminal(self, x: jax.Array, t: jax.Array) -> jax.Array:
        if self.terminal_log_potential is None:
            return _zeros_potential(x)
        return self.terminal_log_potential(x)

    def _potential_at(self, k: jax.Array, x: jax.Array) -> jax.Array:
        """``G_k(x)``: intermediate for ``k < K``, terminal at ``k == K``."""
        t = self.times[k]
        return lax.cond(k == self.n_steps, self._terminal, self._intermediate, x, t)

    # -- Feynman-Kac interface -------------------------------------------------------------------
    def init(self, key: jax.Array, n: int) -> tuple[PathParticles, jax.Array]:
        if self.initial_proposal is None:
            x = self.sample_initial(key, n)
            log_w = jnp.zeros(x.shape[:1], x.dtype)
        else:
            x, log_w = self.initial_proposal(key, n)
        g0 = self._potential_at(jnp.int32(0), x)
        return PathParticles(x, g0), log_w + g0

    def step(self, key: jax.Array, k: jax.Array, state: PathParticles) -> tuple[PathParticles, jax.Array]:
        x, g_old = state
        t = self.times[k]
        h = jnp.abs(self.times[k + 1] - t)
        v = self.noise(t)
        xi = jax.random.normal(key, x.shape, x.dtype)
        mean = x + h * self.drift(x, t)
        if self.guidance is None:
            log_w = jnp.zeros(x.shape[:1], x.dtype)
        else:
            g = self.guidance(x, t)
            mean = mean + h * v**2 * g
            log_w = girsanov_log_weight(g, xi, v, h)
        x_new = mean + v * jnp.sqrt(h) * xi
        g_new = self._potential_at(k + 1, x_new)
        return PathParticles(x_new, g_new), log_w + g_new - g_old
