"""The path model: Feynman-Kac over Euler-Maruyama paths with exact Girsanov weights.

This is the one place in smcflow where a particle moves by an Euler-Maruyama step. Diffusion steering,
the generic :class:`PathModel`, and the SDE and surrogate filters all build on it.

Tutorial
--------
A *reference* chain on a time grid ``t_0 .. t_K`` (``h_k = |t_{k+1} - t_k|``, ``xi_k ~ N(0, I)``)::

    x_{k+1} = x_k + h_k b(x_k, t_k) + sqrt(h_k) Sigma(x_k, t_k) xi_k,        a = Sigma Sigma^T

is what we want to sample from (its law ``p``). We actually simulate a *guided* chain, which adds
``h_k a g`` to the drift for a guidance direction ``g(x_k, t_k)`` of our choosing::

    x_{k+1} = x_k + h_k (b + a g) + sqrt(h_k) Sigma xi_k.

With the ``xi`` actually drawn, the log Radon-Nikodym derivative of reference over proposal for that
step is exactly the log-ratio of the two Gaussian transition densities (both have covariance ``h a``)::

    log N(x'; x + h b, h a) - log N(x'; x + h (b + a g), h a) = -sqrt(h) <Sigma^T g, xi> - h g^T a g / 2.

No score, Hessian or Laplacian enters; ``g`` is arbitrary. Adding telescoping potentials
``G_{k+1}(x_{k+1}) - G_k(x_k)`` with ``G_K`` the terminal log-potential (``beta r(x_K)``, say), the
product of all increments is ``exp(G_K(x_K)) dP/dQ`` along the path: weighted particles target
``p(x_K) exp(G_K(x_K)) / Z`` and ``exp(log Z_hat)`` is unbiased for ``Z = E_p[exp(G_K(x_K))]``, whatever
``g`` and the intermediate ``G_k``. Resampling on the intermediate potentials is what makes this SMC.

The diffusion comes in three kinds (static, so each keeps its fast path):

==============  ==================================  ==========================================
``kind``        ``Sigma``                           cost of ``Sigma v``, ``Sigma^T v``
==============  ==================================  ==========================================
``"scalar"``    ``V(t) I`` (``noise(t)``, a scalar)  one multiply; nothing cached per particle
``"diagonal"``  ``diag(s(x, t))``, ``(n, *event)``   elementwise
``"full"``      ``S(x, t)``, ``(n, d, d)``           a batched mat-vec, event shape ``(d,)``
==============  ==================================  ==========================================

Deterministic steps (``Sigma = 0``) are refused for the scalar kind: resampled copies would stay
identical.

Writing a path model
--------------------
A path model is a subclass of :class:`PathFeynmanKac` (a frozen dataclass registered as a pytree) that
provides ``times``, ``diffusion_kind``, ``guided``, ``weighted``, ``initial(key, n)``,
``evaluate(x, k, previous)`` and ``terminal(x, previous)``; ``noise(t)`` for the scalar kind. Everything
a step needs at grid point ``k`` (drift, guidance, ``Sigma``, log-potential and any cached extras such
as a denoised estimate) is computed once by ``evaluate`` and stored in the particle state
(:class:`PathPoint`), so a network runs once per particle and grid point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "PathPoint",
    "PathFeynmanKac",
    "PathModel",
    "DIFFUSION_KINDS",
    "euler_maruyama",
    "girsanov_log_weight",
    "check_path_grid",
    "clip_norm",
    "tempering_ramp",
]

DIFFUSION_KINDS = ("scalar", "diagonal", "full")


def _sum_event(a: jax.Array) -> jax.Array:
    """Sum over every axis but the leading (particle) one."""
    return jnp.sum(a, axis=tuple(range(1, a.ndim)))


def _sigma_times(kind: str, sigma: Any, v: jax.Array) -> jax.Array:
    """``Sigma v`` per particle."""
    if kind == "full":
        return jnp.einsum("nij,nj->ni", sigma, v)
    return sigma * v


def _sigma_transpose_times(kind: str, sigma: Any, v: jax.Array) -> jax.Array:
    """``Sigma^T v`` per particle."""
    if kind == "full":
        return jnp.einsum("nji,nj->ni", sigma, v)
    return sigma * v


def euler_maruyama(
    x: jax.Array,
    drift: jax.Array,
    guidance: Optional[jax.Array],
    sigma: Any,
    xi: jax.Array,
    h: jax.Array,
    kind: str = "scalar",
) -> tuple[jax.Array, jax.Array]:
    """One guided Euler-Maruyama step and its exact Girsanov log-ratio (module docstring).

    Args:
      x, drift: ``(n, *event)`` position and reference drift ``b(x, t)``.
      guidance: ``g`` like ``x``, or None (the reference step; log-ratio 0).
      sigma: ``V`` (scalar) for ``kind="scalar"``, ``(n, *event)`` for ``"diagonal"``, ``(n, d, d)`` for
        ``"full"``.
      xi: the standard normal draws, like ``x``.
      h: step size ``> 0`` (scalar).

    Returns:
      ``x' = x + h (b + a g) + sqrt(h) Sigma xi`` and ``-sqrt(h) <Sigma^T g, xi> - h |Sigma^T g|^2 / 2``
      of shape ``(n,)`` (``g^T a g = |Sigma^T g|^2``).
    """
    root_h = jnp.sqrt(h)
    noise = root_h * _sigma_times(kind, sigma, xi)
    if guidance is None:
        return x + h * drift + noise, jnp.zeros(x.shape[:1], x.dtype)
    st_g = _sigma_transpose_times(kind, sigma, guidance)
    a_g = _sigma_times(kind, sigma, st_g)
    x_new = x + h * (drift + a_g) + noise
    return x_new, -root_h * _sum_event(st_g * xi) - 0.5 * h * _sum_event(st_g * st_g)


def girsanov_log_weight(guidance: jax.Array, xi: jax.Array, noise: jax.Array, h: jax.Array) -> jax.Array:
    """Per-particle ``-V sqrt(h) <g, xi> - h V^2 |g|^2 / 2`` for a scalar noise ``V`` (``(n,)``)."""
    zeros = jnp.zeros_like(guidance)
    return euler_maruyama(zeros, zeros, guidance, noise, xi, h)[1]


def clip_norm(g: jax.Array, max_norm: jax.Array) -> jax.Array:
    """Scale each particle's ``g`` down to Euclidean norm at most ``max_norm`` (``inf``: unchanged)."""
    norm = jnp.sqrt(_sum_event(g * g)).reshape((-1,) + (1,) * (g.ndim - 1))
    return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(g.dtype).tiny))


def tempering_ramp(k: jax.Array, n_steps: int, exponent: jax.Array) -> jax.Array:
    """``lambda_k = (k / K)^p`` multiplying intermediate potentials (``p = 0``: no ramp, ``lambda = 1``)."""
    return jnp.where(exponent > 0, (k / max(n_steps, 1)) ** exponent, 1.0)


def check_path_grid(times: Any, noise: Optional[Callable[[jax.Array], jax.Array]], owner: str) -> None:
    """Refuse a bad time grid or a deterministic step, naming ``owner`` in the error.

    ``times`` must be 1-D, finite, strictly monotone with at least two entries; with a scalar ``noise``,
    ``noise(t_k)`` must be > 0 at every step start ``t_0 .. t_{K-1}``. Skipped for traced ``times``.
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
    if noise is None:
        return
    try:  # evaluated now even under a user's jit; skipped when the noise depends on traced values
        with jax.ensure_compile_time_eval():
            v = np.asarray(jax.vmap(lambda s: jnp.asarray(noise(s)))(jnp.asarray(t[:-1])))
    except jax.errors.ConcretizationTypeError:
        return
    if v.shape != (len(t) - 1,):
        raise ValueError(f"{owner} noise(t) must return a scalar, got shape {v.shape[1:]}")
    bad = ~(v > 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"{owner} noise(t) must be > 0 at every step, got {v[k]} at t={t[k]} (step {k}): "
            "deterministic steps are refused because resampled copies would stay identical"
        )


class PathPoint(NamedTuple):
    """Particle state of a path model at grid index ``k`` (every array has leading axis ``n``).

    Attributes:
      x: position ``(n, *event)``.
      drift: ``b(x_k, t_k)``, zeros at ``k = K``.
      guidance: ``g(x_k, t_k)``, zeros at ``k = K`` and for unguided models.
      sigma: ``Sigma(x_k, t_k)`` for the diagonal / full kinds, ``None`` for the scalar kind.
      log_potential: ``G_k(x_k)`` ``(n,)``.
      aux: what the model caches besides (e.g. denoised estimate and its reward), or ``None``.
    """

    x: jax.Array
    drift: jax.Array
    guidance: jax.Array
    sigma: Any
    log_potential: jax.Array
    aux: Any = None


class PathFeynmanKac:
    """Feynman-Kac interface (``n_steps``, ``init``, ``step``) of a path model (module docstring).

    Subclasses provide ``times``, ``diffusion_kind``, ``guided``, ``weighted``, ``initial``,
    ``evaluate``, ``terminal`` and, for the scalar kind, ``noise``; optionally ``nfe_per_evaluation``
    and ``output_nfe`` (network evaluations per particle of one ``evaluate`` / ``terminal`` call),
    ``owner`` (a label for error messages) and ``step_size`` (an exact ``h_k`` on a uniform grid).
    """

    diffusion_kind: str = "scalar"
    nfe_per_evaluation: int = 1
    output_nfe: int = 0

    # -- what subclasses provide ---------------------------------------------------------------
    def initial(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``x_0`` ``(n, *event)`` and the initial log-weight correction ``log p_0 / q_0`` ``(n,)``."""
        raise NotImplementedError

    def evaluate(self, x: jax.Array, k: jax.Array, previous: Optional[PathPoint]) -> PathPoint:
        """The state at an intermediate grid point ``k < K`` (``previous`` is None at ``k = 0``)."""
        raise NotImplementedError

    def terminal(self, x: jax.Array, previous: Optional[PathPoint]) -> tuple[jax.Array, Any]:
        """``(G_K(x_K), aux)`` at the last grid point; ``aux`` shaped like :meth:`evaluate`'s."""
        raise NotImplementedError

    # -- derived -------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return int(np.shape(self.times)[0]) - 1

    @property
    def owner(self) -> str:
        return type(self).__name__

    @property
    def nfe_per_particle(self) -> int:
        """Network evaluations per particle of one run: ``K`` evaluations and the terminal output."""
        return self.n_steps * int(self.nfe_per_evaluation) + int(self.output_nfe)

    def validate(self) -> None:
        """Refuse bad grids, deterministic steps and an unknown diffusion kind (before compiling)."""
        if self.diffusion_kind not in DIFFUSION_KINDS:
            raise ValueError(f"{self.owner}: diffusion_kind={self.diffusion_kind!r}; use one of {DIFFUSION_KINDS}")
        check_path_grid(self.times, self.noise if self.diffusion_kind == "scalar" else None, self.owner)

    def terminal_point(self, x: jax.Array, previous: PathPoint) -> PathPoint:
        """:meth:`terminal` as a :class:`PathPoint` shaped like ``previous`` (zero drift and guidance)."""
        log_potential, aux = self.terminal(x, previous)
        zeros = jnp.zeros_like(x)
        sigma = jax.tree_util.tree_map(jnp.zeros_like, previous.sigma)
        return PathPoint(x, zeros, zeros, sigma, log_potential.astype(x.dtype), aux)

    def advance(self, x: jax.Array, k: jax.Array, previous: PathPoint, key: Optional[jax.Array] = None) -> PathPoint:
        """The state at grid index ``k >= 1`` reached from ``previous``: terminal at ``K``.

        ``key`` is the step's key (the one :meth:`move` drew with): a model whose state is partly redrawn
        on arrival (the surrogate filter restarts its forecast chain) derives its own stream from it."""
        return lax.cond(k == self.n_steps, self.terminal_point, lambda x, p: self.evaluate(x, k, p), x, previous)

    def step_time(self, k: jax.Array) -> jax.Array:
        """The time ``t_k`` at which step ``k`` evaluates ``noise``: ``times[k]``."""
        return self.times[k]

    def step_size(self, k: jax.Array) -> jax.Array:
        """``h_k = |t_{k+1} - t_k|``. A model on a uniform grid may return its step exactly instead
        (the difference of two rounded grid times carries their rounding error)."""
        return jnp.abs(self.times[k + 1] - self.times[k])

    def move(self, key: jax.Array, k: jax.Array, point: PathPoint) -> tuple[jax.Array, jax.Array]:
        """Draw ``x_{k+1}`` from the (guided) step at ``point``; return it and the Girsanov log-ratio."""
        t = self.step_time(k)
        h = self.step_size(k)
        sigma = self.noise(t) if self.diffusion_kind == "scalar" else point.sigma
        xi = jax.random.normal(key, point.x.shape, point.x.dtype)
        guidance = point.guidance if self.guided else None
        return euler_maruyama(point.x, point.drift, guidance, sigma, xi, h, self.diffusion_kind)

    # -- Feynman-Kac interface -----------------------------------------------------------------
    def init(self, key: jax.Array, n: int) -> tuple[PathPoint, jax.Array]:
        x, log_w = self.initial(key, n)
        point = self.evaluate(x, jnp.int32(0), None)
        if self.n_steps == 0:
            point = self.terminal_point(x, point)
        if not self.weighted:
            return point, jnp.zeros_like(point.log_potential)
        return point, log_w + point.log_potential

    def step(self, key: jax.Array, k: jax.Array, point: PathPoint) -> tuple[PathPoint, jax.Array]:
        x_new, log_ratio = self.move(key, k, point)
        new = self.advance(x_new, k + 1, point, key)
        if not self.weighted:
            return new, jnp.zeros_like(new.log_potential)
        # a dead particle (G_k = -inf) stays dead; -inf - (-inf) would be NaN
        increment = jnp.where(jnp.isneginf(point.log_potential), -jnp.inf, new.log_potential - point.log_potential)
        return new, increment + log_ratio


def _zeros_potential(x: jax.Array, *_: Any) -> jax.Array:
    return jnp.zeros(x.shape[:1], x.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PathModel(PathFeynmanKac):
    """A path model from plain functions (all batched over the leading particle axis).

    Fields may be plain functions (static) or callable pytrees (their array leaves are traced, so new
    parameters do not recompile).

    Attributes:
      times: ``(K+1,)`` grid from the initial law to the target (increasing or decreasing).
      sample_initial: ``(key, n) -> x_0`` from the reference initial law.
      drift: ``b(x, t) -> (n, ...)``.
      noise: ``V(t) -> scalar > 0`` (scalar diffusion), or None when ``diffusion`` is given.
      guidance: ``g(x, t) -> (n, ...)`` or None (no guidance: plain reference proposal).
      potential: intermediate log-potential ``G(x, t) -> (n,)`` used at ``t_0 .. t_{K-1}``, or None (0).
      terminal_log_potential: ``G_K(x) -> (n,)`` at ``t_K``, or None (0).
      initial_proposal: ``(key, n) -> (x_0, log p_0(x_0) - log q_0(x_0))`` to draw ``x_0`` from another
        law ``q_0``, or None (draw from ``sample_initial``).
      diffusion: state-dependent ``Sigma(x, t)``: ``(n, *event)`` for ``diffusion_kind="diagonal"``,
        ``(n, d, d)`` for ``"full"``; None for the scalar kind.
      diffusion_kind: ``"scalar"`` (default), ``"diagonal"`` or ``"full"`` (static).
    """

    times: jax.Array
    sample_initial: Callable[[jax.Array, int], jax.Array]
    drift: Callable[[jax.Array, jax.Array], jax.Array]
    noise: Optional[Callable[[jax.Array], jax.Array]] = None
    guidance: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    potential: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    terminal_log_potential: Optional[Callable[[jax.Array], jax.Array]] = None
    initial_proposal: Optional[Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]] = None
    diffusion: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    diffusion_kind: str = field(default="scalar", metadata=dict(static=True))

    weighted = True

    @property
    def guided(self) -> bool:
        return self.guidance is not None

    def validate(self) -> None:
        scalar = self.diffusion_kind == "scalar"
        if scalar and self.noise is None:
            raise ValueError("PathModel needs noise(t) for diffusion_kind='scalar' (or pass diffusion= and its kind)")
        if not scalar and self.diffusion is None:
            raise ValueError(f"PathModel with diffusion_kind={self.diffusion_kind!r} needs diffusion(x, t)")
        super().validate()

    def initial(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        if self.initial_proposal is not None:
            return self.initial_proposal(key, n)
        x = self.sample_initial(key, n)
        return x, jnp.zeros(x.shape[:1], x.dtype)

    def evaluate(self, x: jax.Array, k: jax.Array, previous: Optional[PathPoint]) -> PathPoint:
        t = self.times[k]
        guidance = self.guidance(x, t).astype(x.dtype) if self.guided else jnp.zeros_like(x)
        sigma = None if self.diffusion_kind == "scalar" else self.diffusion(x, t).astype(x.dtype)
        log_potential = (self.potential or _zeros_potential)(x, t)
        return PathPoint(x, self.drift(x, t).astype(x.dtype), guidance, sigma, log_potential.astype(x.dtype))

    def terminal(self, x: jax.Array, previous: Optional[PathPoint]) -> tuple[jax.Array, Any]:
        if self.terminal_log_potential is None:
            return _zeros_potential(x), None
        return self.terminal_log_potential(x), None
