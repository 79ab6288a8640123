"""``smcflow.scale``: sample ``q(x) ∝ p(x) exp(beta r(x))`` from a diffusion sampler and a reward.

``p`` is the law of the sampler's discretised chain at ``times[-1]`` (mapped by its ``output``); the
reward is taken on that output. See :mod:`smcflow.scaling.methods` for the methods and their NFE
accounting and :mod:`smcflow.scaling.steer` for the weights. ``scale`` is traceable in its numeric
arguments: ``jax.jit`` / ``jax.vmap`` over ``beta`` (or a method's ``guidance_scale``, ...) work, and
numerical failures still raise there.

**Heavy-tail warnings.** Outside a trace, every result of an exact method is checked on the host: the
Pareto ``k̂`` (PSIS, :func:`smcflow.diagnostics.pareto_khat`) of each run's final weights when
``N >= 20``, and with ``n_runs >= 2`` the spread of ``log Z_hat`` across runs. Above the thresholds of
:data:`smcflow.diagnostics.THRESHOLDS` (``k̂ > 0.7``: the weights' variance is effectively infinite;
sd of ``log Z_hat`` above 1 nat: ``exp(log Z_hat)`` is carried by rare runs and the mean of
``log Z_hat`` lies about ``Var / 2`` below ``log Z``) a :class:`HeavyTailWarning` names the remedy.
``k̂`` is judged only in runs whose final ESS is below ``N / 2`` (nearly equal weights make the tail
fit noisy: on a benign case a few of 32 runs exceed 0.7 with ESS above 0.9 N) and must fail in at
least half of the runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import plugins
from ..contracts import DiffusionSampler, Reward, ScalingMethod, component_name, require
from ..engine import run
from ..errors import Failure, report_failures
from ..kernel import record_failure
from ..resampling import systematic
from ..result import SMCResult
from ..path import tempering_ramp
from ..validation import check_key, check_n_particles
from .steer import sampler_output

__all__ = ["scale", "ScaleResult", "check_components", "HeavyTailWarning"]

#: k̂ is judged only in runs whose final ESS fraction is below this
_KHAT_ESS_FRACTION = 0.5


class HeavyTailWarning(UserWarning):
    """The weights of an exact ``scale`` result are too heavy-tailed for its estimates to be trusted."""


def _event_dims(sampler: Any, event_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Names of the event axes: the sampler's ``event_dims``, else ``coordinate`` / ``axis_i``."""
    names = getattr(sampler, "event_dims", None)
    if names is not None and len(tuple(names)) == len(event_shape):
        return tuple(str(n) for n in names)
    return ("coordinate",) if len(event_shape) == 1 else tuple(f"axis_{i}" for i in range(len(event_shape)))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ScaleResult:
    """What :func:`scale` returns (a pytree: it can leave a ``jit`` or a ``vmap``).

    With ``n_runs`` every array gains a leading run axis. ``particles``, ``log_weights``, ``rewards``,
    ``ess`` and ``log_evidence`` are views of the underlying SMC result ``smc``.

    Attributes:
      samples: equally weighted samples ``(num, *event)``: a final systematic resample of the weighted
        particles (exact methods), the particles themselves (``svdd``, ``guidance``), or the single
        highest-reward particle (``best_of_n``, ``num = 1``).
      sample_rewards: ``r(samples)``, ``(num,)``.
      sample_log_weights: normalised log-weight of the particle each sample was taken from.
      beta: the inverse temperature used.
      smc: the underlying :class:`~smcflow.SMCResult` (particles are
        :class:`~smcflow.path.PathPoint` with :class:`~smcflow.scaling.steer.SteerAux`).
      nfe: sampler network evaluations per run (see :mod:`smcflow.scaling.methods`).
      reward_evaluations: reward calls per run, counted per particle.
      method, exact: what ran; has_evidence: whether ``log_evidence`` estimates anything.
      event_dims: names of the event axes (for exports).
      selection: how ``samples`` were taken: ``"resample"`` (systematic, from the weights), ``"best"``
        (the highest reward) or ``"all"`` (the unweighted particles themselves).
      wall_time: seconds for the run (compilation included on a first call; NaN when traced).
      tempering: the exponents ``lambda_0 .. lambda_K`` that multiplied the intermediate potentials
        ``(K+1,)`` (``(R, K+1)`` with runs; the last is 1), whether a ramp, adaptive or replayed; pass
        one run's row back as ``tempering=`` to replay it. None for ``svdd``.
      pareto_khat: Pareto ``k̂`` of each run's final weights (``()`` or ``(R,)``); NaN when not
        computed (inexact methods, fewer than 20 live particles, equal weights, or traced).
      tempering_rule: how ``tempering`` was chosen, in words: ``"none"``, ``"ramp (k/K)^2"`` (the
        default of fk / urge / twisted), ``"adaptive (target ESS 0.5)"``, ``"frozen (replayed schedule)"``;
        ``"n/a"`` for methods that do not say.
    """

    samples: jax.Array
    sample_rewards: jax.Array
    sample_log_weights: jax.Array
    beta: jax.Array
    smc: SMCResult
    nfe: int = field(metadata=dict(static=True))
    reward_evaluations: int = field(metadata=dict(static=True))
    method: str = field(metadata=dict(static=True))
    exact: bool = field(metadata=dict(static=True))
    has_evidence: bool = field(metadata=dict(static=True))
    event_dims: tuple[str, ...] = field(metadata=dict(static=True))
    selection: str = field(default="resample", metadata=dict(static=True))
    wall_time: float = field(default=math.nan, metadata=dict(static=True))
    tempering: Any = None
    pareto_khat: Any = None
    tempering_rule: str = field(default="n/a", metadata=dict(static=True))

    @property
    def particles(self) -> jax.Array:
        """Sampler outputs of the final particles ``(N, *event)``, before the final resample."""
        return self.smc.particles.aux.estimate

    @property
    def rewards(self) -> jax.Array:
        """``r(particles)``, ``(N,)``."""
        return self.smc.particles.aux.value

    @property
    def log_weights(self) -> jax.Array:
        """Normalised log-weights of ``particles`` ``(N,)``."""
        return self.smc.log_weights

    @property
    def ess(self) -> jax.Array:
        """Effective sample size after reweighting at each grid time ``(K+1,)``."""
        return self.smc.ess

    @property
    def log_evidence(self) -> jax.Array:
        """Estimate of ``log E_p[exp(beta r)]``; NaN for methods without one (``svdd``, ``guidance``).
        For ``best_of_n`` it is the importance estimate from the same draws."""
        if self.has_evidence:
            return self.smc.log_evidence
        return jnp.full_like(self.smc.log_evidence, jnp.nan)

    @property
    def weights(self) -> jax.Array:
        """Normalised weights ``exp(log_weights)``."""
        return jnp.exp(self.log_weights)

    def weighted_mean(self, values: jax.Array) -> jax.Array:
        """``sum_i W_i values_i`` per run, for per-particle ``values`` of shape ``(..., N)``."""
        return jnp.sum(self.weights * values, axis=-1)

    def __repr__(self) -> str:
        from ..diagnostics import brief

        return brief(self.smc, f"ScaleResult[{self.method}]")

    def summary(self) -> str:
        """A readable diagnosis in a few lines (see :func:`smcflow.diagnose`)."""
        from ..diagnostics import diagnose

        return diagnose(self).summary()

    def to_inference_data(self):
        """arviz ``InferenceData``: posterior ``x`` (= ``samples``) and ``reward``; SMC statistics in
        ``sample_stats``; method, beta and NFE in the attributes. See :mod:`smcflow.export`."""
        from ..export import scale_inference_data

        return scale_inference_data(self)

    def to_datatree(self):
        """The same content as an ``xarray.DataTree`` (the arviz >= 1.0 form)."""
        return self.to_inference_data().to_datatree()


def _resolve(kind: str, component: Any) -> Any:
    return plugins.get(kind, component) if isinstance(component, str) else component


def _resolve_method(method: Any, config: dict[str, Any]) -> Any:
    if isinstance(method, str):
        return plugins.get("method", method, **config)
    if config:
        raise TypeError(f"method options {sorted(config)} need a method name; the method object is already built")
    require(method, ScalingMethod, f"method {method!r}")
    return method


def _check_beta(beta: Any) -> Any:
    if isinstance(beta, jax.core.Tracer):
        if jnp.shape(beta) != ():
            raise ValueError(f"beta must be a scalar, got shape {jnp.shape(beta)}")
        return beta
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a real number, got {beta!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"beta must be finite, got {value}")
    return value


def check_components(sampler: Any, reward: Any, n_particles: int = 5) -> tuple[int, ...]:
    """Check the sampler and reward contracts and their shapes (abstractly, with ``n_particles``
    particles); return the sample shape."""
    s_name, r_name = component_name(sampler, "sampler"), component_name(reward, "reward")
    n = n_particles
    require(sampler, DiffusionSampler, f"sampler {s_name!r}")
    require(reward, Reward, f"reward {r_name!r}", skip=("differentiable",))
    try:
        x = jax.eval_shape(lambda k: sampler.init(k, n), jax.random.key(0))
    except Exception as exc:
        raise TypeError(f"sampler {s_name!r}: init(key, {n}) failed while tracing: {exc}") from exc
    if not hasattr(x, "shape") or len(x.shape) < 1 or x.shape[0] != n:
        raise ValueError(f"sampler {s_name!r}: init(key, {n}) must return an array with leading axis {n}, got {x}")
    try:
        out = jax.eval_shape(lambda a: sampler_output(sampler, a), x)
    except Exception as exc:
        raise TypeError(f"sampler {s_name!r}: output(x) failed while tracing on x of shape {x.shape}: {exc}") from exc
    try:
        r = jax.eval_shape(reward, out)
    except Exception as exc:
        raise ValueError(f"reward {r_name!r} failed on samples of shape {out.shape} from sampler {s_name!r}: {exc}") from exc
    if getattr(r, "shape", None) != (n,):
        raise ValueError(
            f"reward {r_name!r} returned shape {getattr(r, 'shape', r)} for {n} samples of shape "
            f"{tuple(out.shape[1:])} from sampler {s_name!r}; a reward must return one value per sample, shape (n,)"
        )
    return tuple(out.shape[1:])


def _heavy_tail_findings(log_weights: Any, log_evidence: Any, n_runs: int | None) -> tuple[Any, list[str]]:
    """Host-side checks of an exact result: ``(k̂ per run, messages)``; module docstring."""
    from ..diagnostics import THRESHOLDS, pareto_khat  # arviz only when a result is checked

    log_w = np.atleast_2d(np.asarray(log_weights, dtype=np.float64))
    khat = np.full(log_w.shape[0], np.nan)
    if log_w.shape[1] >= 20:
        khat = pareto_khat(log_w)
    messages = []
    w = np.exp(log_w - np.max(log_w, axis=1, keepdims=True))
    ess_fraction = np.sum(w, axis=1) ** 2 / np.sum(w * w, axis=1) / log_w.shape[1]
    heavy = (khat > THRESHOLDS["khat"]) & (ess_fraction < _KHAT_ESS_FRACTION)
    if 2 * heavy.sum() >= heavy.size:
        messages.append(f"Pareto k̂ of the final weights > {THRESHOLDS['khat']} (worst {np.nanmax(khat[heavy]):.2f}) "
                        f"with ESS below N/2 in {int(heavy.sum())} of {heavy.size} run(s): the weights' variance is "
                        "effectively infinite")
    log_z = np.asarray(log_evidence, dtype=np.float64).ravel()
    log_z = log_z[np.isfinite(log_z)]
    if n_runs is not None and log_z.size >= 2:
        sd = float(np.std(log_z, ddof=1))
        if sd > THRESHOLDS["log_evidence_sd"]:
            messages.append(f"log Ẑ varies across runs with sd {sd:.3g} nats > {THRESHOLDS['log_evidence_sd']:g}: "
                            f"exp(log Ẑ) is carried by rare runs and mean log Ẑ lies about {sd * sd / 2:.3g} nats "
                            "below log Z")
    return khat if n_runs is not None else khat[0], messages


def _pick(key: jax.Array, log_w: jax.Array, rewards: jax.Array, mode: str) -> jax.Array:
    """Indices of the handed-out samples among one run's particles."""
    if mode == "best":
        return jnp.argmax(rewards)[None]
    if mode == "resample":
        return systematic(key, log_w, log_w.shape[0])
    return jnp.arange(log_w.shape[0], dtype=jnp.int32)


def scale(
    sampler: Any,
    reward: Any,
    key: jax.Array,
    *,
    n_particles: int,
    method: Any = "urge",
    beta: Any = 1.0,
    n_runs: int | None = None,
    errors: str = "raise",
    progress: bool = False,
    mesh: Any = None,
    scope: str = "global",
    island_exchange: int | None = None,
    chunk_size: int | None = None,
    **method_config: Any,
) -> ScaleResult:
    """Steer ``sampler`` towards ``p(x) exp(beta r(x))`` with ``n_particles`` particles.

    Args:
      sampler: a sampler component or the name of a ``sampler`` plugin (built with defaults).
      reward: a reward component or the name of a ``reward`` plugin.
      key: one PRNG key; the same key gives the same result.
      n_particles: particles per run (for ``best_of_n``: N candidates).
      method: ``"urge"`` (default), ``"fk"``, ``"twisted"``, ``"importance"``, ``"best_of_n"``,
        ``"svdd"``, ``"guidance"``, another ``method`` plugin's name, or a method object.
      beta: inverse temperature of the tilt (may be traced: jit / vmap over it).
      n_runs: independent runs, vmapped.
      errors: ``"raise"`` (default) raises :class:`~smcflow.SMCNumericalError` naming the components
        when the reward or the weights fail (also under a user's jit); ``"flag"`` returns the result
        with ``smc.failure`` set.
      progress: show a progress bar of the diffusion steps (off by default; on in ``smcflow demo``).
      mesh: a ``jax.sharding.Mesh`` to shard the particles over, as in :func:`smcflow.run`.
      scope: ``"global"`` or ``"island"`` resampling with a mesh, as in :func:`smcflow.run`.
      island_exchange: with ``scope="island"``, resample whole islands every this many steps, as in
        :func:`smcflow.run`.
      chunk_size: evaluate the sampler over chunks of this many particles, as in :func:`smcflow.run`.
      **method_config: options of the named method, e.g. ``guidance="reward_grad"`` for ``urge``,
        ``potential="max"`` for ``fk``, ``n_candidates=8`` for ``svdd``; for ``fk`` / ``urge`` /
        ``twisted``, ``tempering=`` the exponents of the intermediate potentials: a ramp ``p``
        (``(k/K)^p``; default 2, the ramp ``(k/K)^2``; 0: none), ``"adaptive"`` (chosen from the
        particles; not with ``chunk_size`` or ``scope="island"``) or a schedule to replay, e.g.
        ``result.tempering[0]`` (:class:`~smcflow.scaling.methods.PathSteering`; docs/scaling.md
        section 4 says why the default is the ramp).

    Raises:
      TypeError / ValueError: a component breaks its contract (named in the message), before compiling.
      SMCNumericalError: the reward returned NaN / +inf or every weight vanished (components named).

    Warns:
      HeavyTailWarning: an exact method's weights are heavy-tailed or its ``log Z_hat`` spreads over
        more than 1 nat across runs (module docstring), with the remedy.
    """
    sampler, reward = _resolve("sampler", sampler), _resolve("reward", reward)
    method = _resolve_method(method, method_config)
    n_particles = check_n_particles(n_particles)
    check_key(key)
    beta = _check_beta(beta)
    if errors not in ("raise", "flag"):
        raise ValueError(f"errors={errors!r}; use 'raise' or 'flag'")
    event_shape = check_components(sampler, reward, n_particles)
    model = method.build(sampler, reward, beta)
    adaptive = getattr(method, "tempering_mode", None) == "adaptive"
    if adaptive and (scope == "island" and mesh is not None or chunk_size is not None and chunk_size < n_particles):
        raise ValueError(
            f"method {method.name!r}: tempering='adaptive' chooses each exponent from all particles at once, but "
            f"{'scope=' + repr(scope) if scope == 'island' else 'chunk_size=' + str(chunk_size)} shows a step only "
            "some of them; run a pilot without it and pass its schedule, tempering=pilot.tempering (one run's row)")
    key_run, key_final = jax.random.split(key)
    start = time.perf_counter()
    with warnings.catch_warnings():  # failures are reported below with the components named
        warnings.simplefilter("ignore", RuntimeWarning)
        smc = run(model, key_run, n_particles, n_runs=n_runs, errors="flag", progress=progress, mesh=mesh,
                  scope=scope, island_exchange=island_exchange, chunk_size=chunk_size,
                  summary=_exponent if adaptive else None, **method.run_options)

    traced = isinstance(smc.log_weights, jax.core.Tracer)  # under the user's jit / vmap
    weighted = bool(getattr(method, "weighted", True))
    rewards = smc.particles.aux.value
    # unweighted methods never pass the reward to the engine's screen: check live particles here
    live = ~jnp.isneginf(smc.log_weights)
    bad_reward = jnp.where(jnp.any(jnp.isnan(rewards) & live, axis=-1), Failure.POTENTIAL_NAN, Failure.NONE)
    failure, failure_time = record_failure(smc.failure, smc.failure_time, bad_reward, model.n_steps)
    smc = dataclasses.replace(smc, failure=failure, failure_time=failure_time)
    names = f"sampler {component_name(sampler, 'sampler')!r}, reward {component_name(reward, 'reward')!r}, method {method.name!r}"
    report_failures(smc.failure, smc.failure_time, errors, context=names,
                    hint=" Pass errors='flag' to get the result with failure codes (result.smc.failure).")

    mode = "best" if getattr(method, "pick_best", False) else ("resample" if weighted else "all")
    pick = lambda k, lw, r: _pick(k, lw, r, mode)  # noqa: E731
    if n_runs is None:
        idx = pick(key_final, smc.log_weights, rewards)
    else:
        idx = jax.vmap(pick)(jax.random.split(key_final, n_runs), smc.log_weights, rewards)
    take = lambda a: jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - idx.ndim)), axis=idx.ndim - 1)  # noqa: E731
    exponents = _exponents(model, smc, adaptive, n_runs)
    if adaptive:
        smc = dataclasses.replace(smc, summaries=None)
    khat = jnp.full(smc.log_evidence.shape, jnp.nan, smc.log_weights.dtype)
    wall_time = math.nan
    if not traced:
        jax.block_until_ready(smc.log_weights)
        wall_time = time.perf_counter() - start
        if method.exact and weighted:
            khat, messages = _heavy_tail_findings(smc.log_weights, smc.log_evidence, n_runs)
            for message in messages:
                warnings.warn(f"scale({names}): {message}. Remedy: {_remedy(method)}", HeavyTailWarning, stacklevel=2)
    return ScaleResult(
        samples=take(smc.particles.aux.estimate),
        sample_rewards=take(rewards),
        sample_log_weights=take(smc.log_weights),
        beta=jnp.asarray(beta, smc.log_weights.dtype),
        smc=smc,
        nfe=int(model.nfe_per_particle) * n_particles,
        reward_evaluations=int(model.reward_evaluations_per_particle) * n_particles,
        method=method.name,
        exact=bool(method.exact),
        has_evidence=weighted,
        event_dims=_event_dims(sampler, event_shape),
        selection=mode,
        wall_time=wall_time,
        tempering=exponents,
        pareto_khat=jnp.asarray(khat, smc.log_weights.dtype),
        tempering_rule=str(getattr(method, "tempering_rule", "n/a")),
    )


def _exponent(particles: Any, log_weights: jax.Array) -> jax.Array:
    """``lambda_k``, read off the particles after each step (the same for all of them)."""
    return particles.aux.exponent[0]


def _exponents(model: Any, smc: SMCResult, adaptive: bool, n_runs: int | None) -> Any:
    """The exponents ``lambda_0 .. lambda_K`` of the run(s): recorded (adaptive) or known in advance."""
    if adaptive:
        return smc.summaries
    if getattr(model, "schedule", None) is not None:
        table = jnp.asarray(model.schedule.exponents)
    elif hasattr(model, "tempering"):
        table = tempering_ramp(jnp.arange(model.n_steps + 1), model.n_steps, model.tempering)
    else:
        return None
    table = table.astype(smc.log_weights.dtype)
    return table if n_runs is None else jnp.broadcast_to(table, (n_runs,) + table.shape)


def _remedy(method: Any) -> str:
    """What to try first. For a method with intermediate potentials: the ramp ``tempering=2`` (the
    default) when it ran untempered or adaptively (on the digits the ramp fixes what adaptive
    tempering does not, docs/scaling.md section 4), a steeper ramp when it already ran one."""
    more = "more particles per run, or a proposal closer to the target (guidance)"
    mode = getattr(method, "tempering_mode", None)
    if mode is None or method.potential == "none":
        return more
    value = method.tempering
    if mode == "ramp" and not isinstance(value, jax.core.Tracer) and float(value) > 0.0:
        return (f"a steeper ramp of the intermediate potentials, e.g. tempering={2.0 * float(value):g} "
                f"(now (k/K)^{float(value):g}), {more}")
    return f"tempering=2 (the default ramp (k/K)^2 on the intermediate potentials), {more}"
