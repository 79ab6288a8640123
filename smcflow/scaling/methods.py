"""Inference-time scaling methods (plugin kind ``method``) and their compute accounting.

A method is an object with

* ``name`` (str) and ``exact`` (bool: its weighted particles target ``p(x) exp(beta r(x)) / Z`` and its
  ``log_evidence`` is an unbiased-in-``Z`` estimate);
* ``build(sampler, reward, beta) -> model``: a Feynman-Kac model for :func:`smcflow.run` whose
  particles are :class:`~smcflow.path.PathPoint` states with :class:`~smcflow.scaling.steer.SteerAux`
  (``estimate``, ``value``) and which says what it spends: ``nfe_per_particle`` and
  ``reward_evaluations_per_particle``;
* ``run_options``: keyword arguments for :func:`smcflow.run` (resampler, ESS threshold, schedule);
* ``weighted`` (bool, default True): the run's weights and evidence mean something;
* ``pick_best`` (bool): return only the highest-reward particle of each run (best-of-N).

NFE accounting (the same for every method, so comparisons at equal compute are fair), counted by the
model that spends it: one evaluation of the sampler's network at one particle and one grid time is
1 NFE; it yields both the drift and the denoised estimate. A gradient through the network (a
vector-Jacobian product) costs 1 more NFE. The final ``output`` map costs ``output_nfe`` (1 for a
final denoising step). Reward evaluations are not NFE; they are reported separately.

=============  ======  ================================================  =====================
name           exact   proposal / weights                                NFE per particle
=============  ======  ================================================  =====================
``urge``       yes     any guidance ``g``; Girsanov + telescoping        ``K (1 + [grad]) + o``
``fk``         yes     reference (``g = 0``); difference / max / sum     ``K + o``
``twisted``    yes     ``g = beta grad r(denoise)``; Girsanov + diff.    ``2K + o``
``importance`` yes     reference; weight ``exp(beta r(x_K))`` only       ``K + o``
``best_of_n``  no      reference; keep the highest-reward sample         ``K + o``
``svdd``       no      ``M`` candidates per step, keep the best value    ``1 + (K-1) M + M o``
``guidance``   no      ``g = beta grad r(denoise)``, no weights          ``2K + o``
=============  ======  ================================================  =====================
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from .. import tempering as T
from ..contracts import component_name
from .steer import POTENTIALS, GreedyValueSearch, SteeredDiffusion

__all__ = ["PathSteering", "GreedySearch", "BUILTIN_METHODS", "TEMPERING_MODES", "DEFAULT_TEMPERING",
           "default_tempering", "urge", "fk", "twisted", "importance",
           "best_of_n", "svdd", "guidance"]

Guidance = Union[str, Callable[[Any, Any], Any], None]

#: how the exponents ``lambda_k`` of the intermediate potentials are chosen (:mod:`smcflow.scaling.steer`)
TEMPERING_MODES = ("ramp", "adaptive", "frozen")

#: the default ``tempering`` of the methods with intermediate potentials (fk, urge, twisted): the ramp
#: ``lambda_k = (k/K)^2``. Why a ramp and not the adaptive rule: docs/scaling.md section 4 (on a trained
#: network the conditional ESS measures how *spread* the early potentials are, not how well they
#: predict the final reward, and the adaptive exponents reach 1 while those potentials are still noise)
DEFAULT_TEMPERING = 2.0


def default_tempering(potential: str, weighted: bool) -> float:
    """The ``tempering`` used when none is given: :data:`DEFAULT_TEMPERING` for a weighted method with
    intermediate potentials, else 0 (nothing to temper; gradient guidance is then left untempered)."""
    return DEFAULT_TEMPERING if potential != "none" and weighted else 0.0


def _check_tempering(method: str, value: Any) -> Any:
    """``tempering`` normalised: a ramp exponent ``p >= 0`` (kept as given, may be traced),
    ``"adaptive"`` or a :class:`~smcflow.tempering.Tempering` (kept), or a sequence of exponents
    ``lambda_0 .. lambda_K`` (a tuple of floats: frozen)."""
    if isinstance(value, T.Tempering):
        if value.is_frozen:
            return T.Tempering(T.check_target_ess(value.target_ess, f"method {method!r}: tempering.target_ess"),
                               _check_schedule(method, value.exponents))
        return T.adaptive(T.check_target_ess(value.target_ess, f"method {method!r}: tempering.target_ess"))
    if isinstance(value, str):
        if value != "adaptive":
            raise ValueError(f"method {method!r}: tempering={value!r}; use 'adaptive', a ramp exponent p >= 0 "
                             "or a schedule lambda_0 .. lambda_K (e.g. a result's .tempering)")
        return value
    if isinstance(value, jax.core.Tracer) or np.ndim(value) == 0:
        _check_number(method, "tempering", value, low=0.0)
        return value
    return _check_schedule(method, value)


def _check_schedule(method: str, exponents: Any) -> tuple[float, ...]:
    if isinstance(exponents, jax.core.Tracer):
        raise TypeError(f"method {method!r}: a tempering schedule must be concrete (it is checked), not traced")
    arr = T.check_exponents(exponents, f"method {method!r}: tempering schedule", strict=False)
    return tuple(float(v) for v in arr)


def _check_number(method: str, name: str, value: Any, low: float, allow_inf: bool = False) -> None:
    """A real number >= ``low`` (finite unless ``allow_inf``), else a ValueError naming the option.

    Traced values (a ``scale`` call under the user's ``jit``/``vmap``) are accepted unchecked."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"method {method!r}: {name} must be a number, got {value!r}") from None
    if math.isnan(v) or v < low or (math.isinf(v) and not allow_inf):
        bound = f">= {low}" + ("" if allow_inf else " and finite")
        raise ValueError(f"method {method!r}: {name} must be {bound}, got {value!r}")


def _check_differentiable(method: str, reward: Any) -> None:
    """Gradient guidance needs a reward that says it is differentiable."""
    name = component_name(reward, "reward")
    flag = getattr(reward, "differentiable", None)
    if flag is None:
        raise ValueError(
            f"method {method!r} uses the reward gradient as guidance, but reward {name!r} has no "
            "'differentiable' attribute; set reward.differentiable = True if r(x) is differentiable in x "
            "with jax.grad (or False), or use guidance='none' or a callable guidance"
        )
    if not flag:
        raise ValueError(
            f"method {method!r} uses the reward gradient as guidance, but reward {name!r} is not "
            "differentiable (differentiable=False); use guidance='none' or a callable guidance"
        )


@dataclass(frozen=True)
class PathSteering:
    """A method built on :class:`~smcflow.scaling.steer.SteeredDiffusion`.

    Attributes:
      name: method name.
      exact: whether the method is exact (see the module table).
      guidance: ``"none"``, ``"reward_grad"`` or a callable ``g(x, t) -> (n, *event)``.
      guidance_scale: multiplies ``g``.
      guidance_clip: largest norm of ``g`` per particle (None: no clipping); exactness is kept.
      tempering: the exponents ``lambda_k`` of the intermediate potentials (:mod:`~smcflow.scaling.steer`):
        None (the default): :func:`default_tempering`, the ramp ``(k/K)^2`` for weighted methods with
        intermediate potentials, else 0; a number ``p >= 0``, the ramp ``(k/K)^p`` (0: none);
        ``"adaptive"`` (target ESS fraction 0.5) or
        :func:`smcflow.tempering.adaptive(target_ess) <smcflow.tempering.adaptive>`, chosen from the
        particles; or a schedule ``lambda_0 .. lambda_K`` (non-decreasing in [0, 1], last exactly 1,
        e.g. an adaptive result's ``.tempering`` of one run), replayed.
      potential: ``"difference"``, ``"max"``, ``"sum"`` or ``"none"``.
      weighted: False drops the weights (``guidance`` baseline).
      resampler, ess_threshold, schedule: passed to :func:`smcflow.run`.
      pick_best: keep only the highest-reward particle per run (``best_of_n``).
    """

    name: str
    exact: bool
    guidance: Guidance = "none"
    guidance_scale: float = 1.0
    guidance_clip: float | None = None
    tempering: Any = None
    potential: str = "difference"
    weighted: bool = True
    resampler: Any = "systematic"
    ess_threshold: float = 0.5
    schedule: Any = "adaptive"
    pick_best: bool = False

    def __post_init__(self):
        _check_number(self.name, "guidance_scale", self.guidance_scale, low=0.0)
        if self.tempering is None:
            object.__setattr__(self, "tempering", default_tempering(self.potential, self.weighted))
        object.__setattr__(self, "tempering", _check_tempering(self.name, self.tempering))
        if self.tempering_mode != "ramp" and (self.potential == "none" or not self.weighted):
            raise ValueError(f"method {self.name!r}: tempering={self.tempering!r} chooses exponents of intermediate "
                             "potentials from the weights; this method has none (potential='none' or no weights)")
        if self.guidance_clip is not None:
            _check_number(self.name, "guidance_clip", self.guidance_clip, low=0.0, allow_inf=True)
        if self.potential not in POTENTIALS:
            raise ValueError(f"method {self.name!r}: potential={self.potential!r}; use one of {POTENTIALS}")
        if not (callable(self.guidance) or self.guidance in ("none", "reward_grad", None)):
            raise ValueError(
                f"method {self.name!r}: guidance={self.guidance!r}; use 'none', 'reward_grad' or a callable g(x, t)"
            )

    @property
    def guidance_mode(self) -> str:
        if callable(self.guidance):
            return "callable"
        return "none" if self.guidance is None else self.guidance

    @property
    def tempering_mode(self) -> str:
        """One of :data:`TEMPERING_MODES`."""
        if isinstance(self.tempering, T.Tempering):  # before tuple: a Tempering is a NamedTuple
            return "frozen" if self.tempering.is_frozen else "adaptive"
        if isinstance(self.tempering, tuple):
            return "frozen"
        return "adaptive" if isinstance(self.tempering, str) else "ramp"

    @property
    def tempering_rule(self) -> str:
        """How the exponents are chosen, in words (recorded in results and exports): ``"none"``,
        ``"ramp (k/K)^2"``, ``"adaptive (target ESS 0.5)"`` or ``"frozen (replayed schedule)"``."""
        mode, value = self.tempering_mode, self.tempering
        if mode == "frozen":
            return "frozen (replayed schedule)"
        if mode == "adaptive":
            target = value.target_ess if isinstance(value, T.Tempering) else 0.5
            return f"adaptive (target ESS {float(target):g})"
        if isinstance(value, jax.core.Tracer):
            return "ramp (k/K)^p (p traced)"
        return "none" if float(value) == 0.0 else f"ramp (k/K)^{float(value):g}"

    def _schedule(self, n_steps: int, dtype) -> T.Tempering | None:
        """The model's ``schedule`` (None for the ramp); a frozen one must have ``K + 1`` exponents."""
        mode, value = self.tempering_mode, self.tempering
        if mode == "ramp":
            return None
        if mode == "adaptive":
            target = value.target_ess if isinstance(value, T.Tempering) else 0.5
            return T.Tempering(jnp.asarray(target, dtype))
        exponents = value.exponents if isinstance(value, T.Tempering) else value
        if len(exponents) != n_steps + 1:
            raise ValueError(f"method {self.name!r}: the tempering schedule has {len(exponents)} exponents; the "
                             f"sampler has K = {n_steps} steps, so it needs K + 1 = {n_steps + 1} (lambda_0 .. lambda_K)")
        return T.Tempering(jnp.asarray(0.5, dtype), jnp.asarray(exponents, dtype))

    @property
    def run_options(self) -> dict[str, Any]:
        return {"resampler": self.resampler, "ess_threshold": self.ess_threshold, "schedule": self.schedule}

    def build(self, sampler: Any, reward: Any, beta: float) -> SteeredDiffusion:
        mode = self.guidance_mode
        if mode == "reward_grad":
            _check_differentiable(self.name, reward)
        dtype = jnp.zeros(()).dtype
        n_steps = int(np.shape(sampler.times)[0]) - 1
        ramp = self.tempering if self.tempering_mode == "ramp" else 0.0
        return SteeredDiffusion(
            sampler=sampler,
            reward=reward,
            beta=jnp.asarray(beta, dtype),
            guidance_scale=jnp.asarray(self.guidance_scale, dtype),
            guidance_clip=jnp.asarray(jnp.inf if self.guidance_clip is None else self.guidance_clip, dtype),
            tempering=jnp.asarray(ramp, dtype),
            guidance_fn=self.guidance if mode == "callable" else None,
            schedule=self._schedule(n_steps, dtype),
            guidance_mode=mode,
            potential=self.potential,
            weighted=self.weighted,
        )


@dataclass(frozen=True)
class GreedySearch:
    """The ``svdd`` method: greedy value-based decoding with ``n_candidates`` moves per step."""

    name: str = "svdd"
    exact: bool = False
    n_candidates: int = 4
    pick_best: bool = False
    weighted: bool = field(default=False, init=False)

    def __post_init__(self):
        if int(self.n_candidates) < 1:
            raise ValueError(f"method 'svdd': n_candidates must be >= 1, got {self.n_candidates}")

    @property
    def run_options(self) -> dict[str, Any]:
        return {"schedule": "never"}

    def build(self, sampler: Any, reward: Any, beta: float) -> GreedyValueSearch:
        return GreedyValueSearch(sampler=sampler, reward=reward, n_candidates=int(self.n_candidates))


def urge(guidance: Guidance = "none", guidance_scale: float = 1.0, guidance_clip: float | None = None,
         tempering: Any = None, potential: str = "difference", resampler: Any = "systematic",
         ess_threshold: float = 0.5, schedule: Any = "adaptive") -> PathSteering:
    """URGE: Girsanov path weights for any guidance, telescoping potentials on the denoised estimate."""
    return PathSteering("urge", True, guidance=guidance, guidance_scale=guidance_scale, guidance_clip=guidance_clip,
                        tempering=tempering, potential=potential, resampler=resampler,
                        ess_threshold=ess_threshold, schedule=schedule)


def fk(potential: str = "difference", tempering: Any = None, resampler: Any = "systematic",
       ess_threshold: float = 0.5, schedule: Any = "adaptive") -> PathSteering:
    """Feynman-Kac steering: reference proposal, ``difference`` / ``max`` / ``sum`` potentials, exact final correction."""
    return PathSteering("fk", True, potential=potential, tempering=tempering, resampler=resampler,
                        ess_threshold=ess_threshold, schedule=schedule)


def twisted(guidance_scale: float = 1.0, guidance_clip: float | None = None, tempering: Any = None,
            resampler: Any = "systematic", ess_threshold: float = 0.5, schedule: Any = "adaptive") -> PathSteering:
    """Twisted SMC (TDS / DAS style): proposal guided by ``beta grad r(denoise)``, twisted weights."""
    return PathSteering("twisted", True, guidance="reward_grad", guidance_scale=guidance_scale,
                        guidance_clip=guidance_clip, tempering=tempering, resampler=resampler,
                        ess_threshold=ess_threshold, schedule=schedule)


def importance() -> PathSteering:
    """Importance sampling: reference paths, weight ``exp(beta r(x_K))`` at the end, no resampling."""
    return PathSteering("importance", True, potential="none", schedule="never")


def best_of_n() -> PathSteering:
    """Best-of-N: N reference samples, keep the one with the highest reward (biased)."""
    return PathSteering("best_of_n", False, potential="none", schedule="never", pick_best=True)


def svdd(n_candidates: int = 4) -> GreedySearch:
    """SVDD-style greedy value decoding: keep the best of ``n_candidates`` moves per step (biased)."""
    return GreedySearch(n_candidates=n_candidates)


def guidance(guidance_scale: float = 1.0, guidance_clip: float | None = None) -> PathSteering:
    """Gradient guidance without weights (classifier-guidance style; biased)."""
    return PathSteering("guidance", False, guidance="reward_grad", guidance_scale=guidance_scale,
                        guidance_clip=guidance_clip, potential="none", weighted=False, schedule="never")


BUILTIN_METHODS: dict[str, Callable[..., Any]] = {
    "urge": urge,
    "fk": fk,
    "twisted": twisted,
    "importance": importance,
    "best_of_n": best_of_n,
    "svdd": svdd,
    "guidance": guidance,
}
