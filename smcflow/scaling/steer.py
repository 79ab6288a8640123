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

An exponent ``lambda_k`` multiplies ``phi_k`` for ``k < K`` (``lambda_K = 1``: the last potential is
always exactly ``beta r(x_K)``), and ``g`` may be clipped. The increment of the weight from grid point
``k`` to ``k + 1`` is ``Girsanov_k + lambda_{k+1} phi_{k+1} - lambda_k phi_k``, so the product of the
increments telescopes to ``exp(beta r(x_K)) dP/dQ`` for *any* exponents: for any guidance ``g``,
potential and exponents the weighted particles target ``p(x_K) exp(beta r(x_K)) / Z`` for the law ``p``
of the discretised reference chain, and for exponents fixed in advance ``exp(log Z_hat)`` is unbiased
for ``Z = E_p[exp(beta r)]``. ``reward_grad`` guidance is the gradient of the tempered potential,
``lambda_k beta grad r(xhat_k)``, so it follows the exponents. The exponents are

* a ramp ``lambda_k = (k / K)^p`` (``tempering = p``; ``p = 0``: ``lambda_k = 1``, no tempering);
* adaptive (``schedule`` an adaptive :class:`smcflow.tempering.Tempering`): after the move to grid point
  ``k + 1`` the step sees every particle's increment, affine in the new exponent,
  ``inc_i(lam) = base_i + (lam - lambda_k) phi_{k+1}(x_i)`` with
  ``base_i = Girsanov_i + lambda_k (phi_{k+1} - phi_k)(x_i)``, and picks ``lambda_{k+1}`` in
  ``[lambda_k, 1]`` by :func:`smcflow.tempering.next_exponent` (``lambda_0`` likewise from
  ``inc_i = lam phi_0``). The kernel does not pass the current weights to the model, so the rule
  treats them as equal: it targets the ESS fraction of the increments themselves (the conditional ESS
  when the step follows a resampling). Since ``lambda_K = 1`` whatever was chosen, the target is
  unchanged; only the exact unbiasedness of ``exp(log Z_hat)`` is lost, by O(1/N), because the
  potentials then depend on the particle system;
* frozen (``schedule`` a :class:`~smcflow.tempering.Tempering` with ``exponents``
  ``lambda_0 .. lambda_K``, e.g. an adaptive run's record): replayed, which restores unbiasedness.

A reward of ``-inf`` (a hard constraint) kills the particle. Exactness needs the intermediate
potentials finite wherever the target has mass: with ``-inf`` rewards, a path whose *denoised
estimate* breaks the constraint at some ``t_k`` dies even if its end would keep it, so the weights then
target the paths that keep the constraint at every grid point (and ``log Z_hat`` is lower). For a
terminal-only hard constraint use ``potential="none"`` (``importance``) or a reward that is finite
before the end.

:class:`GreedyValueSearch` is the SVDD-style baseline: at each step every particle draws several
candidate reference moves and keeps the one whose denoised estimate has the highest reward. It has no
weights and is biased (it approximates ``argmax``, not the tilted law).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from .. import tempering as T
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
    is the reward of ``estimate``; ``statistic`` is the running max / sum for those potentials;
    ``exponent`` is ``lambda_k``, the same for every particle (1 at ``k = K``).
    """

    estimate: jax.Array
    value: jax.Array
    statistic: jax.Array
    exponent: jax.Array


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
        (traced; 0: no ramp); ignored when ``schedule`` is set.
      guidance_fn: user guidance ``g(x, t)`` when ``guidance_mode == "callable"``.
      schedule: None (the ramp), or a :class:`smcflow.tempering.Tempering`: adaptive exponents chosen
        from the particles, or frozen ones ``lambda_0 .. lambda_K`` replayed (module docstring).
        With a schedule, :meth:`evaluate` returns the untempered point (``lambda = 1``, guidance not
        clipped) and :meth:`init` / :meth:`step` temper it once the exponent is known.
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
    schedule: Optional[T.Tempering] = None
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

        if self.guidance_mode == "reward_grad":  # the gradient of the potential (tempered in _temper)
            grad, (drift, estimate, value) = jax.grad(reward_of_estimate, has_aux=True)(x)
            guidance = self.guidance_scale * self.beta * grad
        else:
            _, (drift, estimate, value) = reward_of_estimate(x)
            if self.guidance_mode == "callable":
                guidance = self.guidance_scale * self.guidance_fn(x, t)
            else:
                guidance = jnp.zeros_like(x)
        start = _initial_statistic(self.potential, x.shape[0], x.dtype) if previous is None else previous.aux.statistic
        statistic = _update_statistic(self.potential, start, value)
        log_potential = jnp.zeros_like(value) if self.potential == "none" else _times(self.beta, statistic)
        ones = jnp.ones_like(value)
        point = PathPoint(x, drift, guidance, None, log_potential, SteerAux(estimate, value, statistic, ones))
        if self.schedule is not None:
            return point
        return self._temper(point, tempering_ramp(k, self.n_steps, self.tempering))

    def terminal(self, x: jax.Array, previous: Optional[PathPoint]) -> tuple[jax.Array, SteerAux]:
        """``phi_K = beta r(output(x_K))`` exactly (``lambda_K = 1``)."""
        estimate = sampler_output(self.sampler, x)
        value = self.reward(estimate).astype(x.dtype)
        return _times(self.beta, value), SteerAux(estimate, value, previous.aux.statistic, jnp.ones_like(value))

    def _temper(self, point: PathPoint, lam: jax.Array) -> PathPoint:
        """The untempered ``point`` at exponent ``lam``: potential ``lam phi`` (``0 * (-inf) = 0``),
        ``reward_grad`` guidance ``lam beta grad r``, then clipping. At ``k = K`` (``lam = 1``, zero
        guidance) it returns the terminal point unchanged."""
        lam = jnp.asarray(lam, point.log_potential.dtype)
        guidance = point.guidance * lam if self.guidance_mode == "reward_grad" else point.guidance
        if self.guided:
            guidance = clip_norm(guidance, self.guidance_clip)
        return point._replace(guidance=guidance, log_potential=_times(lam, point.log_potential),
                              aux=point.aux._replace(exponent=jnp.full_like(point.log_potential, lam)))

    def _next_exponent(self, t: jax.Array, base: jax.Array, slope: jax.Array, lam_prev: jax.Array) -> jax.Array:
        """``lambda_t`` from increments ``base + (lam - lam_prev) slope`` of equally weighted particles
        (frozen: the schedule's entry ``t``); dead particles (``base = -inf``) do not count."""
        n = base.shape[0]
        uniform = jnp.full((n,), -jnp.log(n), base.dtype)
        slope = jnp.where(jnp.isneginf(base), 0.0, slope)
        return T.exponent_at(self.schedule, t, uniform, base, slope, lam_prev)

    # -- Feynman-Kac interface with a schedule (without one: the path model's own) ---------------
    def init(self, key: jax.Array, n: int) -> tuple[PathPoint, jax.Array]:
        if self.schedule is None or self.n_steps == 0:
            return super().init(key, n)
        x, log_w = self.initial(key, n)
        point = self.evaluate(x, jnp.int32(0), None)
        lam = self._next_exponent(jnp.int32(0), log_w, point.log_potential, jnp.zeros((), x.dtype))
        point = self._temper(point, lam)
        return point, log_w + point.log_potential

    def step(self, key: jax.Array, k: jax.Array, point: PathPoint) -> tuple[PathPoint, jax.Array]:
        if self.schedule is None:
            return super().step(key, k, point)
        x_new, log_ratio = self.move(key, k, point)
        new = self.advance(x_new, k + 1, point)  # untempered phi_{k+1}; at K the exact terminal point
        lam_prev = point.aux.exponent[0]
        dead = jnp.isneginf(point.log_potential)
        base = jnp.where(dead, -jnp.inf, log_ratio + _times(lam_prev, new.log_potential) - point.log_potential)
        lam = jnp.where(k + 1 == self.n_steps, 1.0, self._next_exponent(k + 1, base, new.log_potential, lam_prev))
        new = self._temper(new, lam)
        return new, jnp.where(dead, -jnp.inf, log_ratio + new.log_potential - point.log_potential)


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
