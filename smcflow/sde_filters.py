"""State-space models whose dynamics is an SDE, and their particle filters on the path model.

Model (DESIGN.md section 3), observation times ``0 .. T-1`` spaced ``dt`` apart::

    x_0 ~ initial(),                       y_0 | x_0 ~ observation(x_0, 0)
    x_t = x_{t-1} moved by K Euler-Maruyama steps of size h = dt / K,   y_t | x_t ~ observation(x_t, t)

with each step ``x <- x + h b(x) + sqrt(h) Sigma(x) xi``, ``Sigma Sigma^T = a(x)`` (:mod:`smcflow.sde`).
Both filters are one path model (:class:`smcflow.path.PathFeynmanKac`) on the substep grid
``k = 0 .. (T-1) K``, so every move is the package's one Euler-Maruyama step and every weight its exact
Girsanov ratio. The particle caches ``L_k``, the observation log-likelihood collected so far
(``sum_{j K <= k} log p(y_j | x_{j K})``); its potential is ``G_k = L_k + lambda_k(x_k)`` with an optional
look-ahead twist ``lambda_k``, and ``G_K = L_K`` at the end, so the increments telescope and
``exp(log Z_hat)`` is unbiased for ``p(y_{0:T-1})`` of the discretised chain, whatever the guidance and
the twist.

**Bootstrap** (:func:`bootstrap_filter`): reference moves, no twist; the weight changes only at
observation times, so an adaptive schedule resamples just after them.

**Girsanov-guided** (:func:`girsanov_filter`): at substep ``s`` of the interval ``t -> t+1`` the next
observation is ``r = K - s`` substeps away. The law of ``x`` there is predicted by the extended-Kalman
recursion of the same Euler chain, started at the particle (``m_0 = x``, ``P_0 = 0``)::

    m_{i+1} = m_i + h b(m_i),    P_{i+1} = F_i P_i F_i^T + h a(m_i),    F_i = I + h db/dx(m_i),   i < r,

and the observation mean ``mu`` is linearised at ``m_r`` (``J = dmu/dx(m_r)``, ``R`` the observation
covariance)::

    y_{t+1} | x_s  ~approx  N(mu(m_r(x)), S),       S = J P_r J^T + R,
    lambda(x) = log N(y_{t+1}; mu(m_r(x)), S),       g = grad_x lambda(x)   (S held fixed),

and the proposal moves with drift ``b + a g`` (path model: ``x' = x + h (b + a g) + sqrt(h) Sigma xi``)
with the exact log-ratio ``-sqrt(h) <Sigma^T g, xi> - h g^T a g / 2``. Why this guidance: ``lambda`` is the
log of a Gaussian approximation of the h-function ``h_s(x) = p(y_{t+1} | x_s = x)``, and
``g = grad log h`` is the drift change that turns the chain into the one conditioned on ``y_{t+1}``
(Doob's h-transform, the zero-variance choice). For a linear SDE with linear-Gaussian observations
the recursion is exact (``lambda`` is that h-function of the discretised chain); otherwise it is
accurate to first order around the particle's own predicted path, which keeps the guidance pointing
the right way over long horizons of a fast, nonlinear drift (a single Euler step ``x + (K - s) h b(x)``
does not: on stochastic Lorenz-63 observed every 10 substeps it raised Var(log Z_hat) above the
bootstrap filter's). It pulls only along ``J^T`` (the observed directions, mapped back through the
predicted flow and ``a``, which moves unobserved coordinates correlated with observed ones), weakens
as ``R`` dominates ``J P J^T``, and needs no score, Hessian or derivative of ``a``. The same
``lambda`` is used as the twist (``lookahead=True``), so resampling can act on the coming observation
before it arrives. Non-Gaussian observation laws are replaced in ``lambda`` by the Gaussian with their
mean and variance (numpyro's ``mean``/``variance``); the weights stay exact either way. Cost per
substep: ``K`` drift evaluations and Jacobians (``d`` forward passes) for the prediction and a
reverse pass through the mean.

**Filtering moments.** With the twist, the weighted particles at substep ``k`` of interval ``t -> t+1``
target ``p(x_k | y_{0:t}) lambda_k(x_k)`` (normalised), *not* the filter ``p(x_k | y_{0:t})``: at an
observation time and for a linear model this is exactly the one-step smoother ``p(x_t | y_{0:t+1})``.
:func:`filtering_log_weights` removes the twist (``log W - lambda``, renormalised) and
:func:`filtering_moments` is ``smcflow.run(..., summary=filtering_moments)`` for filter means and
variances at every substep; without the twist (bootstrap, or ``lookahead=False``) both are the plain
weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .path import PathFeynmanKac, PathPoint, check_path_grid
from .prng import streams
from .sde import check_count, check_sde, check_step, diffusion_factor, em_substeps
from .ssm import _check_part
from .validation import merge_static, register_model_pytree, split_static

__all__ = [
    "SDEStateSpaceModel",
    "SDEFilter",
    "sde_bootstrap_filter",
    "girsanov_filter",
    "gaussian_moments",
    "filtering_log_weights",
    "filtering_moments",
    "simulate_state_space",
    "observation_array",
]

Distribution = Any


@dataclass(frozen=True)
class SDEStateSpaceModel:
    """``x_0 ~ initial()``, ``x_t`` = ``x_{t-1}`` moved by ``n_substeps`` Euler-Maruyama steps of the SDE over
    ``dt``, ``y_t | x_t ~ observation(x_t, t)`` (module docstring).

    Attributes:
      initial: ``() -> numpyro distribution`` of ``x_0`` with event shape ``(d,)``.
      sde: an SDE (``drift(x) -> (n, d)``, ``diffusion(x) -> (n, d, d)``; :class:`smcflow.SDE` or a fit).
      observation: ``(x, t) -> numpyro distribution`` of ``y_t`` batched over the particles of ``x`` (``t``
        the observation index).
      dt: time between observations, > 0 (a pytree leaf: a new value does not recompile).
      n_substeps: Euler-Maruyama steps per observation interval (static int >= 1).

    A pytree (``initial``, ``sde``, ``observation``, ``dt`` are children). Bad parts are refused on
    construction with errors naming them; the SDE's shapes and values (symmetric PSD diffusion) are
    checked at draws from ``initial`` when a filter is built.
    """

    initial: Callable[[], Distribution]
    sde: Any
    observation: Callable[[Any, jax.Array], Distribution]
    dt: Any
    n_substeps: int = 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_part(owner, "initial", self.initial, "initial() -> numpyro distribution of x_0")
        _check_part(owner, "observation", self.observation, "observation(x, t) -> numpyro distribution")
        for part in ("drift", "diffusion"):
            if not callable(getattr(self.sde, part, None)):
                raise TypeError(f"{owner}.sde has no callable {part!r}; pass an SDE with drift(x) -> (n, d) "
                                "and diffusion(x) -> (n, d, d), e.g. smcflow.SDE(drift, diffusion)")
        check_step(self.dt, f"{owner}.dt")
        object.__setattr__(self, "n_substeps", check_count(self.n_substeps, f"{owner}.n_substeps"))

    @property
    def step_size(self) -> jax.Array:
        """``h = dt / n_substeps``."""
        return jnp.asarray(self.dt) / self.n_substeps

    def check(self, key: Optional[jax.Array] = None, n: int = 16) -> int:
        """Check the SDE at ``n`` draws of ``x_0`` (shapes, finite, symmetric PSD); return ``d``."""
        x0 = self.initial().sample(jax.random.key(0) if key is None else key, (n,))
        if jnp.ndim(x0) != 2:
            raise ValueError(f"{type(self).__name__}.initial() must have event shape (d,) (draws of shape (n, d)), "
                             f"got draws of shape {jnp.shape(x0)}; use e.g. dist.Normal(...).to_event(1)")
        check_sde(self.sde, x0, f"{type(self).__name__}.sde")
        return int(x0.shape[1])

    def simulate(self, key: jax.Array, n_times: int) -> tuple[jax.Array, jax.Array]:
        """One trajectory at the observation times: ``(xs (T, d), ys (T, ...))``."""
        n_times = check_count(n_times, "n_times")
        self.check()
        return simulate_state_space(self, key, n_times)

    def forecast(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """``x_t`` ``(n, d)`` from ``x_{t-1} = x``: ``n_substeps`` Euler-Maruyama steps of the SDE."""
        return em_substeps(self.sde, key, x, self.step_size.astype(x.dtype), self.n_substeps)

    # filters dispatch here from smcflow.bootstrap_filter
    def bootstrap_filter(self, ys: Any) -> "SDEFilter":
        return sde_bootstrap_filter(self, ys)


def simulate_state_space(ssm: Any, key: jax.Array, n_times: int) -> tuple[jax.Array, jax.Array]:
    """One trajectory ``(xs (T, d), ys (T, ...))`` of a state-space model with ``initial()``,
    ``observation(x, t)`` and ``forecast(key, x)`` (``x_t`` from ``x_{t-1}``, batched): the SDE and the
    surrogate state-space models. Compiled once per model configuration."""
    return _simulate_compiled(*split_static(ssm), key, n_times=n_times)


@partial(jax.jit, static_argnames=("static", "n_times"))
def _simulate_compiled(arrays, static, key: jax.Array, n_times: int):
    ssm = merge_static(arrays, static)
    k0, ky0, kscan = streams(key, 3)
    x0 = ssm.initial().sample(k0, (1,))
    y0 = ssm.observation(x0, 0).sample(ky0)

    def body(x, t):
        kx, ky = streams(jax.random.fold_in(kscan, t), 2)
        x = ssm.forecast(kx, x)
        return x, (x, ssm.observation(x, t).sample(ky))

    _, (xs, ys) = lax.scan(body, x0, jnp.arange(1, n_times))
    return jnp.concatenate([x0[None], xs])[:, 0], jnp.concatenate([y0[None], ys])[:, 0]


register_model_pytree(SDEStateSpaceModel, ("initial", "sde", "observation", "dt"), static=("n_substeps",))


def gaussian_moments(distribution: Distribution, n: int, y_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean ``(n, dy)`` and covariance ``(n, dy, dy)`` of a batched numpyro distribution of ``y``
    (``dy = prod(y_shape)``): its ``covariance_matrix`` when it has one, else ``diag(variance)``."""
    dy = int(np.prod(y_shape, dtype=np.int64))
    mean = jnp.broadcast_to(distribution.mean, (n, *y_shape)).reshape(n, dy)
    cov = getattr(distribution, "covariance_matrix", None)
    if cov is not None and len(y_shape) == 1:
        return mean, jnp.broadcast_to(cov, (n, dy, dy))
    var = jnp.broadcast_to(distribution.variance, (n, *y_shape)).reshape(n, dy)
    return mean, var[:, :, None] * jnp.eye(dy, dtype=var.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SDEFilter(PathFeynmanKac):
    """Particle filter of an :class:`SDEStateSpaceModel` as a path model (module docstring).

    Attributes:
      ssm: the model.
      ys: observations, leading axis ``T`` (times ``0 .. T-1``).
      guided: move with the look-ahead guidance ``g`` (static).
      lookahead: add the look-ahead twist ``lambda`` to the potentials (static).

    ``n_steps = (T - 1) K``: per-step outputs of :func:`smcflow.run` are on the substep grid, and
    ``observation_steps`` are the indices ``0, K, 2K, ..`` of the observation times in them. With the
    look-ahead twist the weights are not the filter's: use :func:`filtering_moments` (or
    :func:`filtering_log_weights`) as the ``summary`` for filter means.
    """

    ssm: SDEStateSpaceModel
    ys: jax.Array
    guided: bool = field(default=False, metadata=dict(static=True))
    lookahead: bool = field(default=False, metadata=dict(static=True))

    diffusion_kind = "full"
    weighted = True

    # -- grid ----------------------------------------------------------------------------------
    @property
    def n_times(self) -> int:
        return int(np.shape(self.ys)[0])

    @property
    def n_steps(self) -> int:
        return (self.n_times - 1) * self.ssm.n_substeps

    @property
    def times(self) -> jax.Array:
        return jnp.arange(self.n_steps + 1) * self.ssm.step_size

    @property
    def observation_steps(self) -> np.ndarray:
        """Indices of the observation times ``0 .. T-1`` among the ``n_steps + 1`` grid points."""
        return np.arange(self.n_times) * self.ssm.n_substeps

    def step_size(self, k: jax.Array) -> jax.Array:
        return self.ssm.step_size

    def validate(self) -> None:
        if self.n_steps > 0:  # one observation (T = 1) has no moves
            check_path_grid(self.times, None, self.owner)

    # -- path model ----------------------------------------------------------------------------
    def _log_likelihood(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.ssm.observation(x, t).log_prob(self.ys[t]).astype(x.dtype)

    def initial(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        x = self.ssm.initial().sample(key, (n,))
        return x, jnp.zeros(x.shape[:1], x.dtype)

    def _predict(self, x: jax.Array, remaining: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and covariance ``(n, d)``, ``(n, d, d)`` of ``x`` after ``remaining`` more reference substeps
        (extended-Kalman recursion of the Euler chain; module docstring). No gradient flows through it."""
        sde, h = self.ssm.sde, self.ssm.step_size.astype(x.dtype)
        jacobian = jax.vmap(jax.jacfwd(lambda z: sde.drift(z[None])[0]))
        eye = jnp.eye(x.shape[1], dtype=x.dtype)

        def body(i, carry):
            m, P = carry
            F = eye + h * jacobian(m).astype(x.dtype)
            m_new = m + h * sde.drift(m).astype(x.dtype)
            P_new = F @ P @ jnp.swapaxes(F, 1, 2) + h * sde.diffusion(m).astype(x.dtype)
            active = i < remaining
            return jnp.where(active, m_new, m), jnp.where(active, P_new, P)

        zeros = jnp.zeros(x.shape + x.shape[-1:], x.dtype)
        return lax.fori_loop(0, self.ssm.n_substeps, body, (lax.stop_gradient(x), zeros))

    def _rollout(self, x: jax.Array, remaining: jax.Array) -> jax.Array:
        """The predicted mean alone, differentiable in ``x``."""
        sde, h = self.ssm.sde, self.ssm.step_size.astype(x.dtype)

        def body(i, m):
            return jnp.where(i < remaining, m + h * sde.drift(m).astype(x.dtype), m)

        return lax.fori_loop(0, self.ssm.n_substeps, body, x)

    def _lookahead(self, x: jax.Array, t_next: jax.Array, remaining: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(lambda(x), grad lambda(x))`` for the observation ``t_next``, ``remaining`` substeps ahead."""
        n, y_shape = x.shape[0], tuple(np.shape(self.ys)[1:])
        y = self.ys[t_next].reshape(-1).astype(x.dtype)
        observation = self.ssm.observation
        const = 0.5 * y.shape[0] * jnp.log(2 * jnp.pi).astype(x.dtype)

        def mean_at(z):  # one point (d,) -> observation mean (dy,)
            return gaussian_moments(observation(z[None], t_next), 1, y_shape)[0][0]

        predicted, cov_x = self._predict(x, remaining)
        jac = jax.vmap(jax.jacfwd(mean_at))(predicted)  # (n, dy, d)
        _, obs_cov = gaussian_moments(observation(predicted, t_next), n, y_shape)
        cov = jnp.einsum("nid,nde,nje->nij", jac, cov_x, jac) + obs_cov.astype(x.dtype)
        chol = lax.stop_gradient(jnp.linalg.cholesky(cov))  # S is held fixed: only the mean carries the gradient
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)

        def log_h(x):
            mean, _ = gaussian_moments(observation(self._rollout(x, remaining), t_next), n, y_shape)
            z = jax.scipy.linalg.solve_triangular(chol, (y - mean)[..., None], lower=True)[..., 0]
            values = -0.5 * jnp.sum(z * z, axis=-1) - log_det - const
            return jnp.sum(values), values

        grad, values = jax.grad(log_h, has_aux=True)(x)
        return values, grad

    def evaluate(self, x: jax.Array, k: jax.Array, previous: Optional[PathPoint]) -> PathPoint:
        n_sub = self.ssm.n_substeps
        t, s = k // n_sub, k % n_sub
        a = self.ssm.sde.diffusion(x).astype(x.dtype)
        collected = jnp.zeros(x.shape[:1], x.dtype) if previous is None else previous.aux
        collected = jnp.where(s == 0, collected + self._log_likelihood(x, t), collected)
        guidance, twist = jnp.zeros_like(x), jnp.zeros_like(collected)
        if self.guided or self.lookahead:
            values, grad = self._lookahead(x, jnp.minimum(t + 1, self.n_times - 1), n_sub - s)
            guidance = grad if self.guided else guidance
            twist = values if self.lookahead else twist
        drift = self.ssm.sde.drift(x).astype(x.dtype)
        return PathPoint(x, drift, guidance, diffusion_factor(a), collected + twist, collected)

    def terminal(self, x: jax.Array, previous: Optional[PathPoint]) -> tuple[jax.Array, jax.Array]:
        if self.n_steps == 0:  # T = 1: the point at k = 0 already holds log p(y_0 | x_0)
            return previous.aux, previous.aux
        collected = previous.aux + self._log_likelihood(x, jnp.int32(self.n_times - 1))
        return collected, collected


def filtering_log_weights(point: PathPoint, log_weights: jax.Array) -> jax.Array:
    """Normalised log-weights of the filter ``p(x_k | y_{0:t})`` from a filter's particles ``point`` and
    their (twisted) log-weights ``(n,)``: the look-ahead twist ``G_k - L_k`` removed (module docstring).
    ``L_k`` is ``point.aux`` for an :class:`SDEFilter`, ``point.aux.collected`` for the surrogate filter
    (:mod:`smcflow.surrogate_filter`). Dead particles stay at ``-inf``."""
    twist = point.log_potential - getattr(point.aux, "collected", point.aux)
    log_w = log_weights - jnp.where(jnp.isfinite(twist), twist, 0.0)
    return log_w - jax.nn.logsumexp(log_w)


def filtering_moments(point: PathPoint, log_weights: jax.Array) -> dict[str, jax.Array]:
    """Filter mean and variance ``{"mean": (d,), "var": (d,)}`` of the state: a ``summary`` for
    :func:`smcflow.run` on an :class:`SDEFilter` or a surrogate filter (defined once, so it does not
    recompile). The state is ``point.x``, or ``point.aux.state`` for the surrogate filter, whose ``x`` is
    the forecast chain's."""
    w = jnp.exp(filtering_log_weights(point, log_weights))
    state = getattr(point.aux, "state", point.x)
    mean = w @ state
    return {"mean": mean, "var": w @ (state - mean) ** 2}


def observation_array(ys: Any, missing: str, remedy: str) -> tuple[jax.Array, jax.Array]:
    """Observations ``(T, ...)`` as a float array, and ``observed`` ``(T,)`` (False where missing).

    ``missing="raise"``: a non-finite entry is refused, naming its time and ``remedy`` (under a user's
    ``jit``, where values are unknown, it is kept, so its NaN log-likelihood is reported as a numerical
    failure by the run). ``missing="skip"``: a time with any non-finite entry is unobserved; its entries
    are set to 0 so that no NaN reaches a gradient.
    """
    ys = jnp.asarray(ys)
    if ys.ndim == 0 or ys.shape[0] < 1:
        raise ValueError(f"ys must be an array with a leading time axis (T >= 1), got shape {ys.shape}")
    if not jnp.issubdtype(ys.dtype, jnp.floating):
        ys = ys.astype(jnp.result_type(float))
    if isinstance(ys, jax.core.Tracer):
        if missing == "raise":
            return ys, jnp.ones(ys.shape[:1], bool)
        finite = jnp.all(jnp.isfinite(ys).reshape(ys.shape[0], -1), axis=1)
        return jnp.where(jnp.isfinite(ys), ys, 0.0), finite
    finite = np.isfinite(np.asarray(ys)).reshape(ys.shape[0], -1).all(axis=1)
    if missing == "raise" and not finite.all():
        raise ValueError(f"ys has non-finite entries at time {int(np.argmax(~finite))}; every observation must "
                         f"be finite ({remedy})")
    return jnp.where(jnp.isfinite(ys), ys, 0.0), jnp.asarray(finite)


def _filter(ssm: Any, ys: Any, guided: bool, lookahead: bool, caller: str) -> SDEFilter:
    if not isinstance(ssm, SDEStateSpaceModel):
        raise TypeError(f"{caller} needs an smcflow.SDEStateSpaceModel as ssm, got {type(ssm).__name__}")
    ys, _ = observation_array(ys, "raise", "for sparse observations choose dt as the time between them")
    ssm.check()
    return SDEFilter(ssm, ys, guided=guided, lookahead=lookahead)


def sde_bootstrap_filter(ssm: SDEStateSpaceModel, ys: Any) -> SDEFilter:
    """Bootstrap filter of an SDE state-space model (``smcflow.bootstrap_filter`` dispatches here)."""
    return _filter(ssm, ys, guided=False, lookahead=False, caller="bootstrap_filter")


def girsanov_filter(ssm: SDEStateSpaceModel, ys: Any, *, lookahead: bool = True) -> SDEFilter:
    """Observation-guided particle filter with exact Girsanov weights (module docstring).

    Args:
      ssm: an :class:`SDEStateSpaceModel`.
      ys: observations ``(T, ...)``.
      lookahead: also twist the potentials by the look-ahead ``lambda`` (default); False keeps only the
        guided moves (weights change only through the Girsanov term and at observation times).

    Returns:
      a Feynman-Kac model for :func:`smcflow.run` whose ``log_evidence`` estimates ``log p(y_{0:T-1})`` of
      the discretised chain, the same quantity as the bootstrap filter's.
    """
    return _filter(ssm, ys, guided=True, lookahead=bool(lookahead), caller="girsanov_filter")
