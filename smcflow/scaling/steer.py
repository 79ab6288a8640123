"""Path models that steer a diffusion sampler towards ``p(x) exp(beta r(x))``.

Both are built on the one path model (:mod:`smcflow.path`): the sampler's reference step is the
Euler-Maruyama step there, the Girsanov term and the telescoping potentials are computed there, and
this module only says what is evaluated at a grid point.

:class:`SteeredDiffusion` covers every path-weighted method (URGE, FK steering, twisted SMC,
importance sampling) and the unweighted gradient-guidance baseline. At grid point ``t_k`` one network
evaluation gives the drift and the denoised estimate ``xhat_k = denoise(x_k, t_k)``; its reward
``rhat_k = r(xhat_k)`` builds the potential ``phi_k`` (``k < K``), and ``phi_K = beta r(output(x_K))``
exactly:

==============  =====================================================  ======================
``potential``   ``phi_k`` for ``k < K``                                 used by
==============  =====================================================  ======================
``difference``  ``beta rhat_k``                                        URGE, FK, twisted
``max``         ``beta max_{j <= k} rhat_j``                           FK steering (max)
``sum``         ``beta sum_{j <= k} rhat_j``                           FK steering (sum)
``none``        ``0``                                                  importance, best-of-N
==============  =====================================================  ======================

A ramp ``lambda_k = (k / K)^p`` may multiply ``phi_k`` (``tempering = p``) and ``g`` may be clipped; for
*any* guidance ``g``, potential and ramp the weighted particles target ``p(x_K) exp(beta r(x_K)) / Z`` for
the law ``p`` of the discretised reference chain, and ``exp(log Z_hat)`` is unbiased for
``Z = E_p[exp(beta r)]``. A reward of ``-inf`` (a hard constraint) kills the particle. Exactness needs
the intermediate potentials finite wherever the target has mass: with ``-inf`` rewards, a path whose
*denoised estimate* breaks the constraint at some ``t_k`` dies even if its end would keep it, so the
weights then target the paths that keep the constraint at every grid point (and ``log Z_hat`` is
lower). For a terminal-only hard constraint use ``potential="none"`` (``importance``) or a reward
that is finite before the end.

:class:`GreedyValueSearch` is the SVDD-style baseline: at each step every particle draws several
candidate reference moves and keeps the one whose denoised estimate has the highest reward. It has no
weights and is biased (it approximates ``argmax``, not the tilted law).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..path import PathFeynmanKac, PathPoint, clip_norm, tempering_ramp

__all__ = ["SteerAux", "SteeredDiffusion", "GreedyValueSearch", "POTENTIALS", "GUIDANCE_MODES",
           "drift_and_denoise", "sampler_output"]

POTENTIALS = ("difference", "max", "sum", "none")
GUIDANCE_MODES = ("none", "reward_grad", "callable")


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


class SteerAux(NamedTuple):
    """What steering caches per particle besides the path state (leading axis ``n``).

    ``estimate`` is the denoised estimate for ``k < K`` and the sampler's output at ``k = K``; ``value``
    is the reward of ``estimate``; ``statistic`` is the running max / sum for those potentials.
    """

    estimate: jax.Array
    value: jax.Array
    statistic: jax.Array


def _times(scale: jax.Array, value: jax.Array) -> jax.Array:
    """``scale * value`` with ``0 * (-inf) = 0``: a zero weight (``beta = 0``, or the ramp at ``k = 0``)
    ignores a hard constraint instead of producing NaN."""
    return jnp.where(scale == 0, 0.0, scale * value).astype(value.dtype)


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
class SteeredDiffusion(PathFeynmanKac):
    """Path-weighted steering of ``sampler`` by ``reward`` (module docstring for the weight).

    Attributes:
      sampler: a diffusion sampler (:class:`smcflow.contracts.DiffusionSampler`).
      reward: ``r(x) -> (n,)``.
      beta: inverse temperature of the tilt (traced).
      guidance_scale: multiplies ``g`` (traced).
      guidance_clip: largest Euclidean norm of ``g`` per particle (traced; ``inf``: no clipping).
        Clipping changes the proposal only; the weights stay exact because they use the ``g`` applied.
      tempering: exponent ``p`` of the ramp ``lambda_k = (k / K)^p`` on the intermediate potentials
        (traced; 0: no ramp). ``reward_grad`` guidance follows the same ramp (it is the gradient of
        the tempered potential).
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

    diffusion_kind = "scalar"

    @property
    def times(self) -> jax.Array:
        return self.sampler.times

    @property
    def guided(self) -> bool:
        return self.guidance_mode != "none"

    @property
    def owner(self) -> str:
        name = getattr(self.sampler, "name", None)
        return f"sampler {name if isinstance(name, str) else type(self.sampler).__name__!r}"

    @property
    def nfe_per_evaluation(self) -> int:
        """One network evaluation per particle and grid point, one more for a gradient through it."""
        return 2 if self.guidance_mode == "reward_grad" else 1

    @property
    def output_nfe(self) -> int:
        return int(getattr(self.sampler, "output_nfe", 0))

    @property
    def uses_intermediate_reward(self) -> bool:
        return self.potential != "none" or self.guidance_mode == "reward_grad"

    @property
    def reward_evaluations_per_particle(self) -> int:
        """At every grid point when potentials or reward guidance need it, else once at the end."""
        return self.n_steps + 1 if self.uses_intermediate_reward else 1

    def noise(self, t: jax.Array) -> jax.Array:
        return self.sampler.noise(t)

    # -- path model ----------------------------------------------------------------------------
    def initial(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        x = self.sampler.init(key, n)
        return x, jnp.zeros(x.shape[:1], x.dtype)

    def evaluate(self, x: jax.Array, k: jax.Array, previous: Optional[PathPoint]) -> PathPoint:
        t = self.sampler.times[k]

        def reward_of_estimate(x):
            drift, estimate = drift_and_denoise(self.sampler, x, t)
            if self.uses_intermediate_reward:
                value = self.reward(estimate).astype(x.dtype)
            else:
                value = jnp.zeros(x.shape[:1], x.dtype)
            return jnp.sum(value), (drift, estimate, value)

        ramp = tempering_ramp(k, self.n_steps, self.tempering)
        if self.guidance_mode == "reward_grad":  # the gradient of the (tempered) potential
            grad, (drift, estimate, value) = jax.grad(reward_of_estimate, has_aux=True)(x)
            guidance = self.guidance_scale * ramp * self.beta * grad
        else:
            _, (drift, estimate, value) = reward_of_estimate(x)
            if self.guidance_mode == "callable":
                guidance = self.guidance_scale * self.guidance_fn(x, t)
            else:
                guidance = jnp.zeros_like(x)
        if self.guided:
            guidance = clip_norm(guidance, self.guidance_clip)
        start = _initial_statistic(self.potential, x.shape[0], x.dtype) if previous is None else previous.aux.statistic
        statistic = _update_statistic(self.potential, start, value)
        log_potential = jnp.zeros_like(value) if self.potential == "none" else _times(ramp * self.beta, statistic)
        return PathPoint(x, drift, guidance, None, log_potential, SteerAux(estimate, value, statistic))

    def terminal(self, x: jax.Array, previous: Optional[PathPoint]) -> tuple[jax.Array, SteerAux]:
        """``phi_K = beta r(output(x_K))`` exactly."""
        estimate = sampler_output(self.sampler, x)
        value = self.reward(estimate).astype(x.dtype)
        return _times(self.beta, value), SteerAux(estimate, value, previous.aux.statistic)


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class GreedyValueSearch:
    """SVDD-style greedy decoding: ``n_candidates`` reference moves per particle and step, keep the best.

    Candidates come from the path model's own step (:meth:`PathFeynmanKac.move` of an unweighted,
    unguided :class:`SteeredDiffusion`) and are ranked by the reward of their denoised estimate (of the
    sampler's output at the last step). Particle weights stay uniform (``log_g = 0``): the method is
    biased.
    """

    sampler: Any
    reward: Any
    n_candidates: int = field(default=4, metadata=dict(static=True))

    @property
    def scorer(self) -> SteeredDiffusion:
        one = jnp.ones((), jnp.zeros(()).dtype)
        return SteeredDiffusion(self.sampler, self.reward, beta=one, guidance_scale=one, guidance_clip=one * jnp.inf,
                                tempering=0 * one, potential="difference", weighted=False)

    @property
    def n_steps(self) -> int:
        return self.scorer.n_steps

    @property
    def nfe_per_particle(self) -> int:
        """One evaluation at ``t_0``, then ``M`` candidates at each later grid point (``output`` at ``K``)."""
        scorer, m = self.scorer, int(self.n_candidates)
        return 1 + max(self.n_steps - 1, 0) * m + m * scorer.output_nfe

    @property
    def reward_evaluations_per_particle(self) -> int:
        return 1 + self.n_steps * int(self.n_candidates)

    def validate(self) -> None:
        self.scorer.validate()
        if self.n_candidates < 1:
            raise ValueError(f"svdd n_candidates must be >= 1, got {self.n_candidates}")

    def init(self, key: jax.Array, n: int) -> tuple[PathPoint, jax.Array]:
        return self.scorer.init(key, n)

    def step(self, key: jax.Array, k: jax.Array, point: PathPoint) -> tuple[PathPoint, jax.Array]:
        scorer, n, m = self.scorer, point.x.shape[0], self.n_candidates
        copies = jax.tree_util.tree_map(lambda a: jnp.repeat(a, m, axis=0), point)
        x_new, _ = scorer.move(key, k, copies)
        scored = scorer.advance(x_new, k + 1, copies)
        best = jnp.argmax(scored.aux.value.reshape(n, m), axis=1) + m * jnp.arange(n)
        return jax.tree_util.tree_map(lambda a: a[best], scored), jnp.zeros(n, point.x.dtype)
