"""Feynman-Kac models that steer a diffusion sampler towards ``p(x) exp(beta r(x))``.

:class:`SteeredDiffusion` covers every path-weighted method (URGE, FK steering, twisted SMC,
importance sampling) and the unweighted gradient-guidance baseline. Along the sampler's grid
``t_0 .. t_K`` (``h_k = |t_{k+1} - t_k|``, ``V_k = noise(t_k)``, ``v = drift``) a particle moves by

    x_{k+1} = x_k + h_k (v(x_k, t_k) + V_k^2 g(x_k, t_k)) + V_k sqrt(h_k) xi_k

and its log-weight grows by the Girsanov term for the guidance ``g`` (with the ``xi`` actually drawn)
plus a telescoping potential difference:

    log G_k = -V_k sqrt(h_k) <g, xi_k> - h_k V_k^2 |g|^2 / 2 + phi_{k+1} - phi_k,

where ``phi_k`` (``k < K``) is built from the reward of the denoised estimate
``rhat_k = r(denoise(x_k, t_k))`` and ``phi_K = beta r(output(x_K))`` exactly:

==============  =====================================================  ======================
``potential``   ``phi_k`` for ``k < K``                                 used by
==============  =====================================================  ======================
``difference``  ``beta rhat_k``                                        URGE, FK, twisted
``max``         ``beta max_{j <= k} rhat_j``                           FK steering (max)
``sum``         ``beta sum_{j <= k} rhat_j``                           FK steering (sum)
``none``        ``0``                                                  importance, best-of-N
==============  =====================================================  ======================

The product of all increments is ``exp(beta r(x_K)) dP/dQ`` along the path, so for *any* ``g`` and any
of these potentials the weighted particles target ``p(x_K) exp(beta r(x_K)) / Z`` for the law ``p``
of the discretised reference chain, and ``exp(log Z_hat)`` is unbiased for ``Z = E_p[exp(beta r)]``.

:class:`GreedyValueSearch` is the SVDD-style baseline: at each step every particle draws several
candidate moves from the reference step and keeps the one whose denoised estimate has the highest
reward. It has no weights and is biased (it approximates ``argmax``, not the tilted law).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from ..girsanov import check_path_grid, girsanov_log_weight

__all__ = ["SteerState", "SteeredDiffusion", "GreedyValueSearch", "POTENTIALS", "GUIDANCE_MODES",
           "drift_and_denoise", "sampler_output", "component_name"]

POTENTIALS = ("difference", "max", "sum", "none")
GUIDANCE_MODES = ("none", "reward_grad", "callable")


def component_name(component: Any, default: str) -> str:
    """A component's ``name`` attribute, else its type name, for messages."""
    name = getattr(component, "name", None)
    return name if isinstance(name, str) else getattr(type(component), "__name__", default)


def drift_and_denoise(sampler: Any, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(drift(x, t), denoise(x, t))``, from one network evaluation when the sampler offers it."""
    both = getattr(sampler, "drift_and_denoise", None)
    if both is not None:
        return both(x, t)
    return sampler.drift(x, t), sampler.denoise(x, t)


def sampler_output(sampler: Any, x: jax.Array) -> jax.Array:
    """The sampler's output for a final state (identity when it has no ``output``)."""
    output = getattr(sampler, "output", None)
    return x if output is None else output(x)


def _clip_norm(g: jax.Array, max_norm: jax.Array) -> jax.Array:
    """Scale each particle's ``g`` down to Euclidean norm at most ``max_norm``."""
    norm = jnp.sqrt(jnp.sum(g * g, axis=tuple(range(1, g.ndim)), keepdims=True))
    return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(g.dtype).tiny))


class SteerState(NamedTuple):
    """Particle state at grid index ``k`` (every field has leading axis ``n``).

    ``estimate`` is the denoised estimate for ``k < K`` and the sampler's output at ``k = K``;
    ``value`` is the reward of ``estimate``; ``drift`` and ``guidance`` are evaluated at ``(x_k, t_k)``
    (zeros at ``K``); ``statistic`` is the running max / sum for those potentials; ``log_potential``
    is ``phi_k``.
    """

    x: jax.Array
    drift: jax.Array
    guidance: jax.Array
    estimate: jax.Array
    value: jax.Array
    statistic: jax.Array
    log_potential: jax.Array


def _initial_statistic(potential: str, n: int, dtype) -> jax.Array:
    fill = -jnp.inf if potential == "max" else 0.0
    return jnp.full((n,), fill, dtype)


def _update_statistic(potential: str, previous: jax.Array, value: jax.Array) -> jax.Array:
    if potential == "max":
        return jnp.maximum(previous, value)
    if potential == "sum":
        return previous + value
    return value


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class SteeredDiffusion:
    """Path-weighted steering of ``sampler`` by ``reward`` (module docstring for the weight).

    Attributes:
      sampler: a diffusion sampler (``times``, ``init``, ``drift``, ``noise``, ``denoise``).
      reward: ``r(x) -> (n,)``.
      beta: inverse temperature of the tilt (traced).
      guidance_scale: multiplies ``g`` (traced).
      tempering: exponent ``p`` of the ramp ``lambda_k = (k / K)^p`` multiplying the intermediate
        potentials, ``phi_k = lambda_k * phi_k`` for ``k < K`` (traced; 0: no ramp, ``lambda_k = 1``).
        Any ramp keeps the method exact (``phi_K`` is untouched); a ramp tames potentials that are
        uninformative but wide-ranging at high noise. ``reward_grad`` guidance follows the same ramp
        (it is the gradient of the tempered potential).
      guidance_clip: largest Euclidean norm of ``g`` per particle (traced; ``inf``: no clipping).
        Clipping changes the proposal only; the weights stay exact because they use the ``g`` applied.
      guidance_fn: user guidance ``g(x, t)`` when ``guidance_mode == "callable"``.
      guidance_mode: ``"none"`` (``g = 0``), ``"reward_grad"`` (``g = beta grad_x r(denoise(x, t))``)
        or ``"callable"``.
      potential: one of :data:`POTENTIALS`.
      weighted: False drops every weight (the biased ``guidance`` baseline).
    """

    sampler: Any
    reward: Any
    beta: jax.Array
    guidance_scale: jax.Array
    guidance_clip: jax.Array
    tempering: jax.Array
    guidance_fn: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
    guidance_mode: str = field(default="none", metadata=dict(static=True))
    potential: str = field(default="difference", metadata=dict(static=True))
    weighted: bool = field(default=True, metadata=dict(static=True))

    @property
    def n_steps(self) -> int:
        return int(jnp.shape(self.sampler.times)[0]) - 1

    def validate(self) -> None:
        check_path_grid(self.sampler.times, self.sampler.noise, f"sampler {component_name(self.sampler, 'sampler')!r}")

    # -- evaluation at a grid point ------------------------------------------------------------
    def _needs_intermediate_reward(self) -> bool:
        return self.potential != "none" or self.guidance_mode == "reward_grad"

    def _evaluate(self, x: jax.Array, k: jax.Array, previous: jax.Array) -> SteerState:
        """State at an intermediate grid point ``t_k`` (``k < K``)."""
        t = self.sampler.times[k]

        def reward_of_estimate(x):
            drift, estimate = drift_and_denoise(self.sampler, x, t)
            value = self.reward(estimate) if self._needs_intermediate_reward() else jnp.zeros(x.shape[:1], x.dtype)
            return jnp.sum(value), (drift, estimate, value)

        ramp = jnp.where(self.tempering > 0, (k / self.n_steps) ** self.tempering, 1.0)
        if self.guidance_mode == "reward_grad":  # the gradient of the (tempered) potential
            grad, (drift, estimate, value) = jax.grad(reward_of_estimate, has_aux=True)(x)
            guidance = self.guidance_scale * ramp * self.beta * grad
        else:
            _, (drift, estimate, value) = reward_of_estimate(x)
            if self.guidance_mode == "callable":
                guidance = self.guidance_scale * self.guidance_fn(x, t)
            else:
                guidance = jnp.zeros_like(x)
        if self.guidance_mode != "none":
            guidance = _clip_norm(guidance, self.guidance_clip)
        statistic = _update_statistic(self.potential, previous, value)
        if self.potential == "none":
            log_potential = jnp.zeros_like(value)
        else:
            log_potential = ramp * self.beta * statistic
        return SteerState(x, drift, guidance, estimate, value, statistic, log_potential)

    def _terminal(self, x: jax.Array, k: jax.Array, previous: jax.Array) -> SteerState:
        """State at ``t_K``: ``phi_K = beta r(output(x_K))`` exactly."""
        estimate = sampler_output(self.sampler, x)
        value = self.reward(estimate).astype(x.dtype)
        zeros = jnp.zeros_like(x)
        return SteerState(x, zeros, zeros, estimate, value, previous, self.beta * value)

    # -- Feynman-Kac interface -----------------------------------------------------------------
    def init(self, key: jax.Array, n: int) -> tuple[SteerState, jax.Array]:
        x = self.sampler.init(key, n)
        start = _initial_statistic(self.potential, n, x.dtype)
        evaluate = self._terminal if self.n_steps == 0 else self._evaluate
        state = evaluate(x, jnp.int32(0), start)
        log_w = state.log_potential if self.weighted else jnp.zeros_like(state.log_potential)
        return state, log_w

    def step(self, key: jax.Array, k: jax.Array, state: SteerState) -> tuple[SteerState, jax.Array]:
        times = self.sampler.times
        t, t_next = times[k], times[k + 1]
        h = jnp.abs(t_next - t)
        noise = self.sampler.noise(t)
        xi = jax.random.normal(key, state.x.shape, state.x.dtype)
        x = state.x + h * (state.drift + noise**2 * state.guidance) + noise * jnp.sqrt(h) * xi
        new = lax.cond(k + 1 == self.n_steps, self._terminal, self._evaluate, x, k + 1, state.statistic)
        if not self.weighted:
            return new, jnp.zeros_like(new.log_potential)
        log_g = new.log_potential - state.log_potential
        if self.guidance_mode != "none":
            log_g = log_g + girsanov_log_weight(state.guidance, xi, noise, h)
        return new, log_g


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class GreedyValueSearch:
    """SVDD-style greedy decoding: ``n_candidates`` reference moves per particle and step, keep the best.

    Candidates at an intermediate step are ranked by ``r(denoise(x', t_{k+1}))``, at the last step by
    ``r(output(x'))`` (the states an unweighted, unguided :class:`SteeredDiffusion` computes). The
    particle weights stay uniform (``log_g = 0``): the method is biased.
    """

    sampler: Any
    reward: Any
    n_candidates: int = field(default=4, metadata=dict(static=True))

    @property
    def _scorer(self) -> SteeredDiffusion:
        one = jnp.ones((), jnp.zeros(()).dtype)
        return SteeredDiffusion(self.sampler, self.reward, beta=one, guidance_scale=one, guidance_clip=one * jnp.inf,
                                tempering=0 * one, potential="difference", weighted=False)

    @property
    def n_steps(self) -> int:
        return self._scorer.n_steps

    def validate(self) -> None:
        self._scorer.validate()
        if self.n_candidates < 1:
            raise ValueError(f"svdd n_candidates must be >= 1, got {self.n_candidates}")

    def init(self, key: jax.Array, n: int) -> tuple[SteerState, jax.Array]:
        return self._scorer.init(key, n)

    def step(self, key: jax.Array, k: jax.Array, state: SteerState) -> tuple[SteerState, jax.Array]:
        scorer, times = self._scorer, self.sampler.times
        h = jnp.abs(times[k + 1] - times[k])
        noise = self.sampler.noise(times[k])
        n, m, event = state.x.shape[0], self.n_candidates, state.x.shape[1:]
        xi = jax.random.normal(key, (n, m, *event), state.x.dtype)
        candidates = (state.x + h * state.drift)[:, None] + noise * jnp.sqrt(h) * xi
        previous = jnp.zeros((n * m,), state.x.dtype)
        scored = lax.cond(k + 1 == self.n_steps, scorer._terminal, scorer._evaluate,
                          candidates.reshape(n * m, *event), k + 1, previous)
        best = jnp.argmax(scored.value.reshape(n, m), axis=1) + m * jnp.arange(n)
        chosen = jax.tree_util.tree_map(lambda a: a[best], scored)
        return chosen, jnp.zeros(n, state.x.dtype)
