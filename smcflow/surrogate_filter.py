"""Data assimilation with a diffusion-model surrogate ("SURGE"): an exact particle filter whose forecast
is a conditional diffusion model, guided towards each observation with path-space Girsanov weights.

Model (DESIGN.md section 3), observation times ``0 .. T-1``::

    x_0 ~ initial(),                                   y_0 | x_0 ~ observation(x_0, 0)
    x_t = output(z_K, x_{t-1}),  z = the surrogate's chain run with cond = x_{t-1},   y_t | x_t ~ observation(x_t, t)

where the surrogate (:class:`smcflow.contracts.ConditionalDiffusionSampler`) draws ``z_0 ~ init(key, n, cond)``
and moves ``z_{s+1} = z_s + h_s drift(z_s, tau_s, cond) + V(tau_s) sqrt(h_s) xi`` along its ``times``
``tau_0 .. tau_K``. This is the *surrogate model*: the filter's ``log Z_hat`` is unbiased for its
``p(y_{0:T-1})``, discretisation included.

The filter is one path model (:class:`smcflow.path.PathFeynmanKac`) on the grid ``k = 0 .. (T-1) K`` of
every diffusion step of every forecast: step ``k`` is diffusion step ``s = k mod K`` of the forecast of
``x_j``, ``j = k // K + 1``. Each particle carries its chain state ``z``, its last assimilated state
``x_{j-1}`` (the conditioning) and ``L``, the observation log-likelihood collected so far. Its potential
at diffusion step ``s`` is::

    G_k = L + lambda_s * ell_s(z_s),      ell_s(z) ~ log p(y_j | z_s = z)   (the coming observation),

and at the end of a forecast ``G = L + log p(y_j | x_j)`` exactly, so the increments telescope, the
product of each forecast's increments is ``p(y_j | x_j)`` times its Girsanov ratio, and resampling may
happen at any diffusion step. On arrival (``s = K``) the chain is restarted from ``init(key, n, x_j)``,
a draw from the reference law, which needs no weight.

Guidance. The guided chain moves with drift ``drift + V^2 g`` (the package's one Euler-Maruyama step, with
the exact log-ratio ``-sqrt(h) V <g, xi> - h V^2 |g|^2 / 2``), ``g = scale * lambda_s * grad ell_s`` (norm
clipped to ``max_guidance_norm``). ``ell`` approximates the h-function ``log p(y_j | z_s)`` of the chain,
for which ``g`` would be Doob's zero-variance drift:

* ``uncertainty="none"`` (the plain guidance): ``ell(z) = log p(y_j | x = denoise(z))``, the clean state
  taken as known. When the observation noise is small against the forecast spread this is over-confident
  (it pulls hard long before the forecast has decided), and the weights pay for it in variance.
* ``uncertainty="tweedie"`` (default): ``x | z_s`` is taken Gaussian with the denoiser's mean ``D(z)`` and
  the covariance ``C = dD/dz diag(c(tau_s))`` of Tweedie's second-order formula (the surrogate's
  ``tweedie_factor``), and the observation is moment-matched to ``N(mu(x), R)`` (its ``mean``/``variance``,
  or ``covariance_matrix``), linearised at ``D(z)`` (``H = dmu/dx``)::

      ell(z) = log N(y_j; mu(D(z)), S),     S = R + H C H^T   (S held fixed in the gradient),
      g     = (H dD/dz)^T S^{-1} (y_j - mu(D(z))).

  Early in the forecast (``C`` large) the pull is weak; at the end (``C -> 0``) it is the plain one. For a
  linear-Gaussian surrogate and observation it is the exact h-function of the continuous-time chain.
  Cost per step: one forward and ``dy`` reverse passes of the network.

``lookahead=False`` drops the twist ``lambda ell`` from the potentials (the weights then change only by
the Girsanov term and at observation times). ``tempering=p`` ramps ``lambda_s = (s / K)^p`` (0: 1). With
``guidance="none"`` the surrogate is a plain transition: the bootstrap filter of the surrogate model.

Outputs. Per-step outputs of :func:`smcflow.run` are on the diffusion grid; ``observation_steps`` are the
indices ``0, K, 2K, ..`` at which the particles' ``aux.state`` is ``x_t``. There, with the twist, the
weights target ``p(x_t | y_{0:t})`` times the twist of the next observation: :func:`filtering_moments`
(the same summary as for the SDE filters) removes it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .contracts import ConditionalDiffusionSampler, component_name, require
from .path import PathFeynmanKac, PathPoint, check_path_grid, clip_norm, euler_maruyama, tempering_ramp
from .prng import streams
from .sde_filters import (filtering_log_weights, filtering_moments, gaussian_moments, observation_array,
                          simulate_state_space)
from .ssm import _check_part
from .validation import real_scalar, register_model_pytree

__all__ = ["SurrogateStateSpaceModel", "SurrogateFilter", "SurrogateAux", "surge_filter", "filtering_moments",
           "filtering_log_weights", "GUIDANCES", "UNCERTAINTIES"]

Distribution = Any
GUIDANCES = ("observation", "none")
UNCERTAINTIES = ("tweedie", "none")
MISSING = ("raise", "skip")


def _accepts_cond(method: Callable, n_before: int) -> bool:
    """Whether ``method`` takes a conditioning argument after ``n_before`` positional ones."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # no signature (a C function): assume it does
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) > n_before


def _drift_and_denoise(surrogate: Any, z: jax.Array, t: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
    both = getattr(surrogate, "drift_and_denoise", None)
    if both is not None:
        return both(z, t, cond)
    return surrogate.drift(z, t, cond), surrogate.denoise(z, t, cond)


def _output(surrogate: Any, z: jax.Array, cond: jax.Array) -> jax.Array:
    out = getattr(surrogate, "output", None)
    return z if out is None else out(z, cond)


@dataclass(frozen=True)
class SurrogateStateSpaceModel:
    """``x_0 ~ initial()``, ``x_t`` drawn by the conditional diffusion ``surrogate`` given ``x_{t-1}``,
    ``y_t | x_t ~ observation(x_t, t)`` (module docstring).

    Attributes:
      initial: ``() -> numpyro distribution`` of ``x_0`` with event shape ``(d,)``.
      surrogate: a :class:`smcflow.contracts.ConditionalDiffusionSampler` (``init(key, n, cond)``,
        ``drift(z, t, cond)``, ``noise(t)``, ``denoise(z, t, cond)``, ``times``).
      observation: ``(x, t) -> numpyro distribution`` of ``y_t`` batched over the particles of ``x``.

    A pytree (all three are children). Bad parts are refused on construction with errors naming them;
    shapes are checked at draws from ``initial`` when a filter is built (:meth:`check`).
    """

    initial: Callable[[], Distribution]
    surrogate: Any
    observation: Callable[[Any, jax.Array], Distribution]

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_part(owner, "initial", self.initial, "initial() -> numpyro distribution of x_0")
        _check_part(owner, "observation", self.observation, "observation(x, t) -> numpyro distribution")
        what = f"{owner}.surrogate ({component_name(self.surrogate, 'surrogate')})"
        require(self.surrogate, ConditionalDiffusionSampler, what)
        for method, n_before in (("init", 2), ("drift", 2), ("denoise", 2)):
            if not _accepts_cond(getattr(self.surrogate, method), n_before):
                raise TypeError(
                    f"{what}.{method} takes no conditioning argument: a surrogate is a conditional diffusion "
                    f"sampler, {method}({'key, n' if method == 'init' else 'z, t'}, cond) with cond (n, d) the "
                    "previous state (smcflow.contracts.ConditionalDiffusionSampler); an unconditional sampler "
                    "belongs in smcflow.scale")

    @property
    def n_diffusion_steps(self) -> int:
        """``K``, the surrogate's diffusion steps per forecast."""
        return int(np.shape(self.surrogate.times)[0]) - 1

    def check(self, n: int = 4) -> int:
        """Check the parts' shapes at ``n`` draws of ``x_0`` (before compiling); return ``d``."""
        owner = type(self).__name__
        x0 = self.initial().sample(jax.random.key(0), (n,))
        if jnp.ndim(x0) != 2:
            raise ValueError(f"{owner}.initial() must have event shape (d,) (draws of shape (n, d)), got draws "
                             f"of shape {jnp.shape(x0)}; use e.g. dist.Normal(...).to_event(1)")
        sur, name = self.surrogate, f"{owner}.surrogate"
        t0 = jnp.asarray(sur.times)[0]
        parts = {
            "init(key, n, cond)": lambda: sur.init(jax.random.key(1), n, x0),
            "drift(z, t, cond)": lambda: sur.drift(x0, t0, x0),
            "denoise(z, t, cond)": lambda: sur.denoise(x0, t0, x0),
            "output(z, cond)": lambda: _output(sur, x0, x0),
        }
        for label, call in parts.items():
            try:
                shape = jax.eval_shape(call).shape
            except Exception as exc:  # a shape error deep inside the user's network: name the part
                raise ValueError(f"{name}.{label} fails on states of shape {x0.shape} drawn from initial(): "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
            if shape != x0.shape:
                raise ValueError(f"{name}.{label} returned shape {shape}; it must be shaped like the state "
                                 f"{x0.shape} (n particles x d = {x0.shape[1]} from initial())")
        check_path_grid(sur.times, sur.noise, name)
        return int(x0.shape[1])

    def simulate(self, key: jax.Array, n_times: int) -> tuple[jax.Array, jax.Array]:
        """One trajectory of the surrogate model at the observation times: ``(xs (T, d), ys (T, ...))``."""
        self.check()
        return simulate_state_space(self, key, int(n_times))

    def forecast(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """``x_t`` ``(n, d)`` from ``x_{t-1} = x``: the surrogate's chain run to its end, unguided."""
        return _forecast(self.surrogate, key, x)

    def bootstrap_filter(self, ys: Any) -> "SurrogateFilter":
        """``smcflow.bootstrap_filter`` dispatches here: the unguided filter ``surge_filter(guidance="none")``."""
        return surge_filter(self, ys, guidance="none")


register_model_pytree(SurrogateStateSpaceModel, ("initial", "surrogate", "observation"))


def _forecast(surrogate: Any, key: jax.Array, cond: jax.Array) -> jax.Array:
    """One unguided forecast ``x_t`` ``(n, d)`` from ``x_{t-1} = cond``: the surrogate's chain run to its end."""
    k_init, k_steps = streams(key, 2)
    times = jnp.asarray(surrogate.times)

    def body(z, s):
        t = times[s]
        xi = jax.random.normal(jax.random.fold_in(k_steps, s), z.shape, z.dtype)
        h = jnp.abs(times[s + 1] - t)
        return euler_maruyama(z, surrogate.drift(z, t, cond), None, surrogate.noise(t), xi, h)[0], None

    z, _ = lax.scan(body, surrogate.init(k_init, cond.shape[0], cond), jnp.arange(times.shape[0] - 1))
    return _output(surrogate, z, cond)


class SurrogateAux(NamedTuple):
    """What a surrogate-filter particle carries besides its chain state (``(n, ...)`` arrays).

    Attributes:
      state: the last assimilated state ``x_{j-1}`` (the forecast's conditioning) ``(n, d)``; at the
        observation steps ``0, K, 2K, ..`` it is ``x_t``, and at the last step ``x_{T-1}``.
      collected: ``L``, the observation log-likelihood collected so far ``(n,)``.
    """

    state: jax.Array
    collected: jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SurrogateFilter(PathFeynmanKac):
    """The surrogate particle filter as a path model (module docstring); build it with :func:`surge_filter`.

    It builds its particles in :meth:`init` and :meth:`advance` (a forecast's end assimilates and
    restarts), so the path model's ``evaluate`` / ``terminal`` are not used; moves are the path model's.

    Attributes:
      ssm: the :class:`SurrogateStateSpaceModel`.
      ys: observations ``(T, ...)`` (missing ones set to 0 and masked by ``observed``).
      observed: ``(T,)`` bool, False where an observation is missing (``missing="skip"``).
      guidance_scale, max_guidance_norm, tempering: traced leaves (new values do not recompile).
      guidance, uncertainty, lookahead: static configuration.
    """

    ssm: SurrogateStateSpaceModel
    ys: jax.Array
    observed: jax.Array
    guidance_scale: jax.Array
    max_guidance_norm: jax.Array
    tempering: jax.Array
    guidance: str = field(default="observation", metadata=dict(static=True))
    uncertainty: str = field(default="tweedie", metadata=dict(static=True))
    lookahead: bool = field(default=True, metadata=dict(static=True))

    diffusion_kind = "scalar"
    weighted = True

    # -- grid ----------------------------------------------------------------------------------
    @property
    def guided(self) -> bool:
        return self.guidance == "observation"

    @property
    def n_times(self) -> int:
        return int(np.shape(self.ys)[0])

    @property
    def n_diffusion_steps(self) -> int:
        return self.ssm.n_diffusion_steps

    @property
    def n_steps(self) -> int:
        return (self.n_times - 1) * self.n_diffusion_steps

    @property
    def observation_steps(self) -> np.ndarray:
        """Indices of the observation times ``0 .. T-1`` among the ``n_steps + 1`` grid points."""
        return np.arange(self.n_times) * self.n_diffusion_steps

    @property
    def nfe_per_evaluation(self) -> int:
        """Network passes per particle and diffusion step: one forward, plus one reverse pass for the
        plain guidance or ``dy`` for the Tweedie guidance."""
        if not (self.guided or self.lookahead):
            return 1
        return 1 + (1 if self.uncertainty == "none" else int(np.prod(np.shape(self.ys)[1:], dtype=np.int64)))

    def noise(self, t: jax.Array) -> jax.Array:
        return self.ssm.surrogate.noise(t)

    def step_time(self, k: jax.Array) -> jax.Array:
        return jnp.asarray(self.ssm.surrogate.times)[k % self.n_diffusion_steps]

    def step_size(self, k: jax.Array) -> jax.Array:
        grid, s = jnp.asarray(self.ssm.surrogate.times), k % self.n_diffusion_steps
        return jnp.abs(grid[s + 1] - grid[s])

    def validate(self) -> None:
        check_path_grid(self.ssm.surrogate.times, self.ssm.surrogate.noise, f"{self.owner}.ssm.surrogate")

    # -- observation terms ---------------------------------------------------------------------
    def _log_likelihood(self, x: jax.Array, t: jax.Array) -> jax.Array:
        value = self.ssm.observation(x, t).log_prob(self.ys[t]).astype(x.dtype)
        return jnp.where(self.observed[t], value, 0.0)

    def _guidance_terms(self, z: jax.Array, t: jax.Array, cond: jax.Array, j: jax.Array):
        """``(drift, ell(z), grad ell(z))`` for observation ``j`` at diffusion time ``t`` (module docstring)."""
        sur, observation, y = self.ssm.surrogate, self.ssm.observation, self.ys[j]
        (drift, clean), pullback = jax.vjp(lambda z: _drift_and_denoise(sur, z, t, cond), z)
        no_drift = jnp.zeros_like(drift)
        if self.uncertainty == "none":
            def log_lik(x):
                values = observation(x, j).log_prob(y).astype(x.dtype)
                return jnp.sum(values), values

            grad_x, ell = jax.grad(log_lik, has_aux=True)(clean)
            return drift, ell, pullback((no_drift, grad_x))[0]
        n, y_shape = z.shape[0], tuple(np.shape(self.ys)[1:])
        mean, obs_cov = gaussian_moments(observation(clean, j), n, y_shape)
        jac_mean = jax.vmap(jax.jacfwd(lambda x: gaussian_moments(observation(x[None], j), 1, y_shape)[0][0]))(
            lax.stop_gradient(clean))  # H, (n, dy, d)
        h_jac = jax.vmap(lambda rows: pullback((no_drift, rows))[0], in_axes=1, out_axes=1)(jac_mean)  # H dD/dz
        factor = jnp.broadcast_to(jnp.asarray(sur.tweedie_factor(t), z.dtype), z.shape[1:])
        spread = jnp.einsum("nid,d,njd->nij", h_jac, factor, jac_mean)
        spread = 0.5 * (spread + jnp.swapaxes(spread, 1, 2))
        values, vectors = jnp.linalg.eigh(spread)  # a learned Jacobian need not give a PSD spread: clip it
        spread = jnp.einsum("nij,nj,nkj->nik", vectors, jnp.maximum(values, 0.0), vectors)
        chol = lax.stop_gradient(jnp.linalg.cholesky(obs_cov.astype(z.dtype) + spread))
        residual = (y.reshape(-1).astype(z.dtype) - mean)[..., None]
        white = jax.scipy.linalg.solve_triangular(chol, residual, lower=True)
        precision_residual = jax.scipy.linalg.solve_triangular(jnp.swapaxes(chol, 1, 2), white, lower=False)[..., 0]
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        ell = -0.5 * jnp.sum(white[..., 0] ** 2, axis=-1) - log_det - 0.5 * mean.shape[1] * jnp.log(2 * jnp.pi)
        return drift, ell.astype(z.dtype), jnp.einsum("nid,ni->nd", h_jac, precision_residual)

    def _evaluate(self, z: jax.Array, s: jax.Array, cond: jax.Array, collected: jax.Array, j: jax.Array) -> PathPoint:
        """The particle at diffusion step ``s`` of the forecast of ``x_j`` from ``cond``."""
        t = jnp.asarray(self.ssm.surrogate.times)[s]
        twist, guidance = jnp.zeros_like(collected), jnp.zeros_like(z)
        if self.guided or self.lookahead:
            drift, ell, grad = self._guidance_terms(z, t, cond, j)
            weight = tempering_ramp(s, self.n_diffusion_steps, self.tempering).astype(z.dtype)
            weight = jnp.where(self.observed[j], weight, 0.0)
            if self.lookahead:
                twist = weight * ell
            if self.guided:
                guidance = clip_norm(self.guidance_scale * weight * grad, self.max_guidance_norm)
        else:
            drift = self.ssm.surrogate.drift(z, t, cond)
        return PathPoint(z, drift.astype(z.dtype), guidance.astype(z.dtype), None, collected + twist,
                         SurrogateAux(cond, collected))

    def _assimilated(self, x: jax.Array, collected: jax.Array) -> PathPoint:
        zeros = jnp.zeros_like(x)
        return PathPoint(x, zeros, zeros, None, collected, SurrogateAux(x, collected))

    def _restart(self, key: jax.Array, x: jax.Array, collected: jax.Array, j: jax.Array) -> PathPoint:
        """A fresh forecast chain from the assimilated state ``x = x_{j-1}``, at diffusion step 0."""
        z = self.ssm.surrogate.init(key, x.shape[0], x).astype(x.dtype)
        return self._evaluate(z, jnp.int32(0), x, collected, j)

    # -- path model ----------------------------------------------------------------------------
    def init(self, key: jax.Array, n: int) -> tuple[PathPoint, jax.Array]:
        k_x, k_z = streams(key, 2)
        x = self.ssm.initial().sample(k_x, (n,))
        collected = self._log_likelihood(x, jnp.int32(0))
        if self.n_steps == 0:
            point = self._assimilated(x, collected)
        else:
            point = self._restart(k_z, x, collected, jnp.int32(1))
        return point, point.log_potential

    def advance(self, z: jax.Array, k: jax.Array, previous: PathPoint, key: Optional[jax.Array] = None) -> PathPoint:
        """The particle at grid index ``k >= 1``: mid-forecast, or (``k mod K = 0``) the forecast's end, where
        ``x_j`` is assimilated and, unless it is the last, a new forecast chain starts."""
        K = self.n_diffusion_steps
        cond, collected = previous.aux

        def mid_forecast(z):
            return self._evaluate(z, k % K, cond, collected, k // K + 1)

        def arrived(z):
            j = k // K
            x = _output(self.ssm.surrogate, z, cond).astype(z.dtype)
            gathered = collected + self._log_likelihood(x, j)
            return lax.cond(k == self.n_steps, lambda: self._assimilated(x, gathered),
                            lambda: self._restart(jax.random.fold_in(key, 1), x, gathered, j + 1))

        return lax.cond(k % K == 0, arrived, mid_forecast, z)


def _parameter(value: Any, name: str, what: str, ok: Callable[[float], bool]) -> Any:
    """``value`` unchanged if it is a real scalar ``what`` says (traced values pass unchecked)."""
    number = real_scalar(value, f"surge_filter {name}", what)
    if number is not None and not ok(number):
        raise ValueError(f"surge_filter {name} must be {what}, got {number}")
    return value


def surge_filter(
    ssm: SurrogateStateSpaceModel,
    ys: Any,
    *,
    guidance: str = "observation",
    uncertainty: str = "tweedie",
    guidance_scale: float = 1.0,
    max_guidance_norm: float = float("inf"),
    tempering: float = 0.0,
    lookahead: bool = True,
    missing: str = "raise",
) -> SurrogateFilter:
    """The surrogate particle filter (SURGE) of ``ssm`` for observations ``ys`` (module docstring).

    Args:
      ssm: a :class:`SurrogateStateSpaceModel`.
      ys: observations ``(T, ...)``, ``ys[t]`` shaped like a draw of ``observation(x, t)`` for one particle.
      guidance: ``"observation"`` (guide each forecast towards its observation) or ``"none"`` (the
        surrogate as a plain transition: a bootstrap filter of the surrogate model).
      uncertainty: ``"tweedie"`` (default: allow for the denoiser's uncertainty; the surrogate must have
        ``tweedie_factor``) or ``"none"`` (the plain ``grad log p(y | denoise(z))``).
      guidance_scale: multiplies the guidance (0: unguided moves; the weights stay exact for any value).
      max_guidance_norm: clip each particle's guidance to this Euclidean norm (``inf``: no clipping).
      tempering: exponent ``p`` of the ramp ``lambda_s = (s / K)^p`` on the intermediate potentials and
        the guidance (0: none).
      lookahead: twist the potentials by ``lambda ell`` (default) so that resampling acts on the coming
        observation; False leaves them at the collected log-likelihood.
      missing: ``"raise"`` (default) refuses non-finite observations; ``"skip"`` treats a time with any
        non-finite entry as unobserved.

    Returns:
      a Feynman-Kac model for :func:`smcflow.run`; its ``log_evidence`` estimates ``log p(y_{0:T-1})`` of the
      surrogate model. Use ``summary=smcflow.surrogate_filter.filtering_moments`` and
      ``observation_steps`` for filter means.
    """
    if not isinstance(ssm, SurrogateStateSpaceModel):
        raise TypeError(f"surge_filter needs an smcflow.SurrogateStateSpaceModel as ssm, got {type(ssm).__name__}")
    for name, value, allowed in (("guidance", guidance, GUIDANCES), ("uncertainty", uncertainty, UNCERTAINTIES),
                                 ("missing", missing, MISSING)):
        if value not in allowed:
            raise ValueError(f"surge_filter: {name}={value!r}; use one of {allowed}")
    if guidance == "observation" and uncertainty == "tweedie" and not callable(
            getattr(ssm.surrogate, "tweedie_factor", None)):
        raise TypeError(f"surge_filter: uncertainty='tweedie' needs the surrogate "
                        f"({component_name(ssm.surrogate, 'surrogate')}) to have tweedie_factor(t) (the denoiser's "
                        "uncertainty, smcflow.contracts.ConditionalDiffusionSampler); pass uncertainty='none' for "
                        "the plain guidance")
    ys, observed = observation_array(ys, missing, "or pass missing='skip' to treat such times as unobserved")
    ssm.check()
    x0 = ssm.initial().sample(jax.random.key(0), (2,))
    y_shape = jax.eval_shape(lambda x: ssm.observation(x, 0).sample(jax.random.key(0)), x0).shape[1:]
    if tuple(ys.shape[1:]) != tuple(y_shape):
        raise ValueError(f"ys has shape {ys.shape}: each ys[t] must have the shape {tuple(y_shape)} of one "
                         f"particle's observation (observation(x, t) for x of shape {x0.shape})")
    scale = _parameter(guidance_scale, "guidance_scale", "a finite real number", np.isfinite)
    clip = _parameter(max_guidance_norm, "max_guidance_norm", "a number > 0 (inf: no clipping)", lambda v: v > 0)
    exponent = _parameter(tempering, "tempering", "a finite number >= 0", lambda v: np.isfinite(v) and v >= 0)
    dtype = ys.dtype
    guided = guidance == "observation"
    return SurrogateFilter(ssm, ys, observed, jnp.asarray(scale, dtype), jnp.asarray(clip, dtype),
                           jnp.asarray(exponent, dtype), guidance=guidance,
                           uncertainty=uncertainty if guided else "none", lookahead=bool(lookahead) and guided)
