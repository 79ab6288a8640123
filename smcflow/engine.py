"""The SMC engine: ``run`` is one jitted ``lax.scan`` of the kernel (:mod:`smcflow.kernel`) over time.

A Feynman-Kac model (:class:`smcflow.FeynmanKac`) has a static ``n_steps``, ``init(key, n)`` and
``step(key, t, x)``; times are ``0 .. n_steps`` and per-time outputs have length ``n_steps + 1``
(index 0 is time 0). This module also holds the public one-step API (:func:`init_state`,
:func:`step`), which checks and resolves its arguments and then calls the same pure kernel, so that
stepping by hand reproduces :func:`run` bitwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import plugins
from . import progress as progress_module
from .chunking import chunked
from .errors import Failure, report_failures
from .kernel import SMCState, StepInfo, advance, initial_state, nan_in_live_particles, record_failure
from .resampling import BUILTIN_RESAMPLERS, Resampler
from .result import SMCResult
from .schedule import Schedule, ScheduleSpec, make_schedule
from .sharding import IslandExchange, Placement, ReplicatedResampler, combine_islands, exchange_rule, placement
from .validation import (
    check_key,
    check_model,
    check_n_particles,
    check_threshold,
    merge_static,
    split_static,
)

__all__ = ["run", "init_state", "step", "RunConfig", "resolve_resampler"]


@dataclass(frozen=True)
class RunConfig:
    """Static configuration of a run (changing any field recompiles)."""

    n_particles: int
    n_steps: int
    resampler: Resampler
    schedule: Schedule
    keep_ancestors: bool = False
    keep_history: bool = False
    n_runs: int | None = None
    summary: Callable[[Any, jax.Array], Any] | None = None
    progress_every: int = 0  # steps between progress-bar updates (0: no bar)
    placement: Placement | None = None  # particles sharded over a mesh (global or island scope)
    exchange: IslandExchange | None = None  # island scope: resample whole islands every k steps


def resolve_resampler(resampler: str | Resampler) -> Resampler:
    """A scheme name (built-ins first, no registry; then ``resampler`` plugins) or a callable."""
    if isinstance(resampler, str):
        builtin = BUILTIN_RESAMPLERS.get(resampler)
        return builtin if builtin is not None else plugins.get("resampler", resampler)
    if callable(resampler):
        return resampler
    raise TypeError(f"resampler must be a scheme name or a callable resample(key, log_weights, num), got {resampler!r}")


def _one_run(model: Any, key: jax.Array, ess_threshold: jax.Array, cfg: RunConfig) -> dict:
    """One SMC run; returns a dict of the result's fields (no run axis).

    One ``lax.scan`` over time. With ``scope="island"`` the state has a leading axis of ``D`` islands of
    ``N / D`` particles, island ``d`` drawing from ``fold_in(key, d)``: the body advances every island
    at once (the kernel vmapped), applies ``cfg.exchange`` under ``lax.cond`` at its times, and the
    islands combine at the end (:func:`smcflow.sharding.combine_islands`). Otherwise the state is one
    run's, with its particles laid along the mesh axis for ``scope="global"``.
    """
    where = cfg.placement
    n_islands = where.n_devices if where is not None and where.scope == "island" else None
    if n_islands is None:
        each = lambda f: f  # noqa: E731
        constrain = where.constrain if where is not None else (lambda tree: tree)

        def place(s: SMCState) -> SMCState:
            return s._replace(particles=constrain(s.particles), log_weights=constrain(s.log_weights))

        n, keys = cfg.n_particles, key
    else:
        each, place = jax.vmap, where.constrain
        n = cfg.n_particles // n_islands
        keys = place(jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.arange(n_islands)))

    def start(key):
        k_init, k_steps = jax.random.split(key)
        return initial_state(model, k_init, n), k_steps

    state, k_steps = each(start)(keys)
    state = place(state)
    identity = jnp.arange(n, dtype=jnp.int32)
    first = {"ess": state.ess, "resampled": jnp.zeros_like(state.ess, dtype=bool),
             "log_evidence_increments": state.log_evidence}
    if cfg.keep_ancestors:
        first["ancestors"] = identity if n_islands is None else jnp.broadcast_to(identity, (n_islands, n))
    if cfg.exchange is not None:
        k_exchange = jax.random.fold_in(key, n_islands)  # the index after the last island's
        first.update(island_ancestors=jnp.arange(n_islands, dtype=jnp.int32), running_log_evidence=state.log_evidence)

    def exchange(t, state, out):
        state, source = cfg.exchange.apply(jax.random.fold_in(k_exchange, t + 1), state, where)
        take = lambda a: jnp.take(a, source, axis=0)  # noqa: E731
        out = {**out, "ess": state.ess, "resampled": jnp.ones_like(out["resampled"]), "island_ancestors": source,
               "running_log_evidence": state.log_evidence}
        if cfg.keep_ancestors:
            out["ancestors"] = take(out["ancestors"])
        return state, out

    def no_exchange(t, state, out):
        return state, {**out, "island_ancestors": first["island_ancestors"], "running_log_evidence": state.log_evidence}

    def body(state: SMCState, t: jax.Array):
        advance_one = lambda s, k: advance(model, s, k, t, cfg.resampler, ess_threshold, cfg.schedule)  # noqa: E731
        state, info = each(advance_one)(state, k_steps)
        out = {"ess": info.ess, "resampled": info.resampled, "log_evidence_increments": info.log_evidence_increment}
        if cfg.keep_ancestors:
            out["ancestors"] = info.ancestors
        if cfg.exchange is not None:  # islands sharded going in: the gathers stay inside the exchange branch
            state, out = lax.cond(cfg.exchange.due(t + 1, cfg.n_steps), exchange, no_exchange, t, place(state), out)
        state = place(state)
        if cfg.progress_every:
            progress_module.report(t, cfg.progress_every, cfg.n_steps)
        if cfg.keep_history:
            out["history"] = state.particles
        if cfg.summary is not None:
            out["summaries"] = cfg.summary(state.particles, state.log_weights)
        return state, out

    if cfg.keep_history:
        first["history"] = state.particles
    if cfg.summary is not None:
        first["summaries"] = cfg.summary(state.particles, state.log_weights)
    state, outs = lax.scan(body, state, jnp.arange(cfg.n_steps, dtype=jnp.int32))
    nan = each(lambda s: nan_in_live_particles(s.particles, s.log_weights))(state)
    failure, failure_time = record_failure(state.failure, state.failure_time,
                                           jnp.where(nan, Failure.PARTICLES_NAN, Failure.NONE), cfg.n_steps)
    per_time = jax.tree_util.tree_map(_prepend, first, outs)  # (T+1, ...), or (T+1, D, ...) for islands
    if n_islands is not None:
        per_time = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, 1), per_time)
    fields = {
        "particles": state.particles,
        "log_weights": state.log_weights,
        "log_evidence": state.log_evidence,
        "failure": failure,
        "failure_time": failure_time,
        "ancestors": None,
        "history": None,
        "summaries": None,
        **per_time,
    }
    return fields if n_islands is None else combine_islands(place(fields))


def _prepend(first: Any, rest: Any) -> Any:
    """Put the time-0 value in front of the per-time scan outputs."""
    return jnp.concatenate([jnp.asarray(first)[None].astype(rest.dtype), rest], axis=0)


@partial(jax.jit, static_argnames=("cfg",))
def _run_compiled(model_arrays, model_static, key, ess_threshold, cfg: RunConfig) -> dict:
    """One run for a single key; ``cfg.n_runs`` vmapped runs for a stacked ``(n_runs,)`` key array."""
    model = merge_static(model_arrays, model_static)
    if cfg.n_runs is None:
        return _one_run(model, key, ess_threshold, cfg)
    return jax.vmap(_one_run, in_axes=(None, 0, None, None))(model, key, ess_threshold, cfg)


def run(
    model: Any,
    key: jax.Array,
    n_particles: int,
    *,
    resampler: str | Resampler = "systematic",
    ess_threshold: float = 0.5,
    schedule: ScheduleSpec = "adaptive",
    n_runs: int | None = None,
    keep_ancestors: bool = False,
    keep_history: bool = False,
    summary: Callable[[Any, jax.Array], Any] | None = None,
    errors: str = "raise",
    progress: bool = False,
    mesh: Any = None,
    scope: str = "global",
    mesh_axis: str | None = None,
    island_exchange: int | None = None,
    chunk_size: int | None = None,
) -> SMCResult:
    """Run SMC on a Feynman-Kac ``model`` with ``n_particles`` particles.

    Args:
      model: object with ``n_steps``, ``init(key, n)`` and ``step(key, t, x)`` (:class:`smcflow.FeynmanKac`).
        A registered pytree's array leaves are traced arguments (changing them does not recompile);
        its other leaves (functions, configuration) and any unregistered object are static, compared
        by value.
      key: one JAX PRNG key; the same key gives the same result.
      n_particles: N >= 1.
      resampler: a built-in scheme (``multinomial``, ``systematic``, ``stratified``, ``residual``,
        ``ssp``, ``killing``), another ``resampler`` plugin's name (``plugin:name`` to pick one), or a
        callable ``resample(key, log_weights, num) -> ancestors``.
      ess_threshold: in [0, 1]; with ``schedule="adaptive"`` resample when ESS < threshold * N
        (0: never, 1: always). Traced: changing it does not recompile.
      schedule: ``"adaptive"``, ``"always"``, ``"never"``, an int k (resample at times divisible
        by k) or a list of times in [1, n_steps].
      n_runs: if given, that many independent runs are vmapped; every field gains a leading run axis.
      keep_ancestors: also return ancestor indices per time, shape ``(n_steps+1, N)``.
      keep_history: also return the particles at every time (O(n_steps * N * d) memory); with
        ``keep_ancestors`` it allows :meth:`SMCResult.paths`.
      summary: optional ``summary(x, log_W) -> pytree`` evaluated on the weighted particles at every
        time (e.g. :func:`smcflow.weights.moments`); stacked along a leading time axis in
        ``result.summaries``. Use a function defined once (a new function object recompiles).
      errors: ``"raise"`` raises :class:`SMCNumericalError` when a run records a failure (a NaN/+inf
        potential, every particle dead, NaN in a live particle), also inside a user's ``jit``/``vmap``
        (as a ``JaxRuntimeError`` carrying the same message); ``"flag"`` returns the result with
        ``failure`` codes set (and warns at the top level).
      progress: show a tqdm progress bar of the steps (updated from inside the compiled scan about
        ten times, at most every 25 steps; off by default). Only for calls outside a user's ``jit``.
      mesh: a ``jax.sharding.Mesh``: the particles are sharded along ``mesh_axis`` (default its first
        axis; N must be a multiple of its size). See :mod:`smcflow.sharding`.
      scope: with a mesh, ``"global"`` (one run over all particles, resampling across devices) or
        ``"island"`` (one run per device, combined at the end; no collective per step, except the
        exchanges of ``island_exchange``).
      mesh_axis: the mesh axis of the particles.
      island_exchange: with ``scope="island"``, resample whole islands every this many steps (after
        the steps into times k, 2k, ... before the last): island ``d`` copies island ``A_d``, drawn with
        probability proportional to its ``Ẑ``, and every island's ``log Ẑ`` becomes the log of their mean,
        so ``exp(log Ẑ)`` stays unbiased. None (default): the islands never interact.
      chunk_size: evaluate the model's ``init`` / ``step`` over chunks of this many particles to bound
        memory (N must be a multiple); see :mod:`smcflow.chunking`.

    Equivalent to stepping by hand (bitwise)::

        k_init, k_steps = jax.random.split(key)
        state = init_state(model, k_init, n_particles)
        for t in range(model.n_steps):
            state, info = step(model, state, k_steps, t, resampler=..., ...)

    Returns:
      :class:`SMCResult`.
    """
    n_particles = check_n_particles(n_particles)
    check_key(key)
    check_threshold(ess_threshold)
    if errors not in ("raise", "flag"):
        raise ValueError(f"errors={errors!r}; use 'raise' or 'flag'")
    if n_runs is not None:
        n_runs = check_n_particles(n_runs, name="n_runs")
    n_steps = check_model(model, n_particles)
    where = placement(mesh, scope, n_particles, mesh_axis)
    exchange = exchange_rule(island_exchange, where)
    if where is not None and where.scope == "island" and summary is not None:
        raise ValueError("summary= is not available with scope='island' (islands' summaries do not combine)")
    resolved = resolve_resampler(resampler)
    if where is not None and where.scope == "global":
        resolved = ReplicatedResampler(resolved, where)
    per_island = n_particles // where.n_devices if where is not None and where.scope == "island" else n_particles
    model = chunked(model, chunk_size, per_island)
    model_arrays, model_static = split_static(model)
    # a run traced inside a user's jit executes after this call returns: no bar for it
    progress = bool(progress) and not any(isinstance(leaf, jax.core.Tracer)
                                          for leaf in jax.tree_util.tree_leaves((model_arrays, key)))
    cfg = RunConfig(
        n_particles=n_particles,
        n_steps=n_steps,
        resampler=resolved,
        schedule=make_schedule(schedule, n_steps),
        keep_ancestors=bool(keep_ancestors),
        keep_history=bool(keep_history),
        n_runs=n_runs,
        summary=summary,
        progress_every=progress_module.updates_every(n_steps, progress),
        placement=where,
        exchange=exchange,
    )
    # Run keys are split outside the compiled program: XLA's CPU compiler can stall for minutes on a
    # split fused into the vmapped scan for some PRNG implementations (threefry4x32).
    keys = key if n_runs is None else jax.random.split(key, n_runs)
    with progress_module.bar(n_steps, "smcflow.run", progress):
        fields = _run_compiled(model_arrays, model_static, keys, jnp.asarray(ess_threshold), cfg=cfg)
    result = SMCResult(**fields)
    report_failures(result.failure, result.failure_time, errors)
    return result


@partial(jax.jit, static_argnames=("n_particles",))
def _init_compiled(model_arrays, model_static, key, n_particles: int) -> SMCState:
    return initial_state(merge_static(model_arrays, model_static), key, n_particles)


@partial(jax.jit, static_argnames=("resampler", "schedule"))
def _step_compiled(model_arrays, model_static, state, key, t, ess_threshold, resampler, schedule):
    return advance(merge_static(model_arrays, model_static), state, key, t, resampler, ess_threshold, schedule)


def init_state(model: Any, key: jax.Array, n_particles: int) -> SMCState:
    """The state at time 0 for stepping by hand with :func:`step` (the model is checked first).

    Compiled once per model configuration (static parts compared by value, array leaves traced)."""
    n_particles = check_n_particles(n_particles)
    check_key(key)
    check_model(model, n_particles)
    return _init_compiled(*split_static(model), key, n_particles=n_particles)


def step(
    model: Any,
    state: SMCState,
    key: jax.Array,
    t: Any,
    *,
    resampler: str | Resampler = "systematic",
    ess_threshold: Any = 0.5,
    schedule: ScheduleSpec = "adaptive",
) -> tuple[SMCState, StepInfo]:
    """Resample if the schedule says so, move every particle from time ``t`` to ``t + 1``, reweigh.

    A pure function of ``state``, compiled once per model configuration: ``model``'s array leaves
    (its data, say) are traced arguments, so stepping through newly arrived observations in a
    fixed-size buffer does not recompile. It may also be called inside a user's ``jit``/``vmap``.

    Args:
      model: the Feynman-Kac model.
      state: the state at time ``t`` (from :func:`init_state` or a previous :func:`step`).
      key: a PRNG key; the step draws from ``fold_in(key, 2t)`` (resampling) and ``fold_in(key, 2t + 1)``
        (the move), so the same key may serve every step of a run (as in :func:`run`).
      t: the move's index ``0 .. n_steps - 1`` (int or traced int32).
      resampler: as in :func:`run`.
      ess_threshold: as in :func:`run`.
      schedule: as in :func:`run`; schedules speak of times, so "resample at time s" happens in the
        step with ``t = s - 1``.

    Returns:
      ``(new_state, info)`` (:class:`~smcflow.kernel.SMCState`, :class:`~smcflow.kernel.StepInfo`).
    """
    check_key(key)
    check_threshold(ess_threshold)
    plan = schedule if isinstance(schedule, Schedule) else make_schedule(schedule, getattr(model, "n_steps", 0))
    return _step_compiled(*split_static(model), state, key, jnp.asarray(t, jnp.int32), jnp.asarray(ess_threshold),
                          resampler=resolve_resampler(resampler), schedule=plan)
