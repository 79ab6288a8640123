"""The SMC engine: one jitted ``lax.scan`` over time for any Feynman-Kac model.

A Feynman-Kac model is any object with

* ``n_steps`` (static int): number of moves; times are indexed ``0 .. n_steps``;
* ``init(key, n) -> (x, log_w)``: ``n`` particles at time 0 (pytree, leading axis ``n``) and their
  initial log-weights ``(n,)``;
* ``step(key, t, x) -> (x, log_g)``: move every particle from time ``t`` to ``t + 1``
  (``t = 0 .. n_steps-1``, traced int) and return the incremental log-weights ``(n,)``.

One run, with normalised log-weights ``log W`` (``logsumexp = 0``) carried between times::

    x_0, lw = init(k0, N);  log Z = logsumexp(lw) - log N;  log W_0 = lw - logsumexp(lw)
    for t = 1 .. n_steps:
        if schedule says so (e.g. ESS(W_{t-1}) < threshold * N):
            a ~ resampler(W_{t-1});  x_{t-1} <- x_{t-1}[a];  log W_{t-1} <- -log N
        x_t, log g_t = step(k_t, t-1, x_{t-1})
        log Z += logsumexp(log W_{t-1} + log g_t)
        log W_t = log W_{t-1} + log g_t - logsumexp(log W_{t-1} + log g_t)

so weights are multiplied (not overwritten) when a time does not resample, and ``exp(log Z)`` is an
unbiased estimate of the normalising constant in every schedule. Per-time outputs have length
``n_steps + 1`` (index 0 is time 0).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import weights as W
from .errors import FAILURE_MESSAGES, SMCNumericalError
from .resampling import Resampler
from .result import SMCResult
from .schedule import Schedule, ScheduleSpec, make_schedule
from .validation import (
    check_model,
    check_n_particles,
    check_threshold,
    merge_static,
    resolve_resampler,
    split_static,
)

__all__ = ["run", "RunConfig"]

FAIL_NONE, FAIL_POTENTIAL, FAIL_ALL_DEAD = 0, 1, 2


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


def _screen(log_g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Replace NaN/+inf log-potentials by -inf; return them and whether any were found."""
    bad = jnp.isnan(log_g) | jnp.isposinf(log_g)
    return jnp.where(bad, -jnp.inf, log_g), jnp.any(bad)


def _reweigh(log_w: jax.Array, log_g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Normalised ``log_w + log_g``, its log-sum and ESS, and whether a potential was NaN/+inf.

    The fast path trusts ``log_g``; a NaN/+inf potential shows up as a NaN/+inf log-sum, and only then
    are the bad potentials replaced by ``-inf`` and the sums redone (``lax.cond``).
    """
    new = W.normalise_with_ess(log_w + log_g)
    bad = jnp.isnan(new[1]) | jnp.isposinf(new[1])

    def screened(_):
        return W.normalise_with_ess(log_w + _screen(log_g)[0])

    log_w, log_sum, ess = lax.cond(bad, screened, lambda _: new, None)
    return log_w, log_sum, ess, bad


def _record_failure(failure, failure_time, t, bad_potential, log_sum):
    """Keep the first failure (code, time); NaN/+inf potentials take precedence at equal time."""
    code = jnp.where(bad_potential, FAIL_POTENTIAL, jnp.where(jnp.isneginf(log_sum), FAIL_ALL_DEAD, FAIL_NONE))
    first = (failure == FAIL_NONE) & (code != FAIL_NONE)
    return jnp.where(first, code, failure), jnp.where(first, t, failure_time)


def _gather(x: Any, idx: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, idx, axis=0), x)


def _single_run(model, key: jax.Array, ess_threshold: jax.Array, cfg: RunConfig) -> dict:
    """One SMC run; returns a dict of the result's fields (no run axis)."""
    n = cfg.n_particles
    log_n = jnp.log(n)
    key_init, key_move, key_resample = jax.random.split(key, 3)
    identity = jnp.arange(n, dtype=jnp.int32)

    x, log_w0 = model.init(key_init, n)
    x0 = x
    log_w, log_sum, ess0, bad0 = _reweigh(jnp.zeros_like(log_w0), log_w0)
    log_z0 = log_sum - log_n
    failure, failure_time = _record_failure(jnp.int32(FAIL_NONE), jnp.int32(-1), jnp.int32(0), bad0, log_sum)
    summary0 = cfg.summary(x, log_w) if cfg.summary is not None else None
    threshold = jnp.asarray(ess_threshold, log_w.dtype)

    def resample(k, x, lw):
        ancestors = cfg.resampler(k, lw, n)
        return _gather(x, ancestors), jnp.full_like(lw, -log_n), ancestors

    def keep(k, x, lw):
        return x, lw, identity

    def body(carry, t):
        x, log_w, ess_prev, log_z, failure, failure_time = carry
        k_res = jax.random.fold_in(key_resample, t)
        if not cfg.schedule.may_resample:
            did_resample, ancestors = jnp.bool_(False), identity
        elif cfg.schedule.kind == "always":
            did_resample = jnp.bool_(True)
            x, log_w, ancestors = resample(k_res, x, log_w)
        else:
            did_resample = cfg.schedule.decide(t, ess_prev, n, threshold)
            x, log_w, ancestors = lax.cond(did_resample, resample, keep, k_res, x, log_w)
        x, log_g = model.step(jax.random.fold_in(key_move, t), t - 1, x)
        log_w, log_sum, ess_t, bad = _reweigh(log_w, log_g)
        failure, failure_time = _record_failure(failure, failure_time, t, bad, log_sum)
        out = {"ess": ess_t, "resampled": did_resample, "log_evidence_increments": log_sum}
        if cfg.keep_ancestors:
            out["ancestors"] = ancestors
        if cfg.keep_history:
            out["history"] = x
        if cfg.summary is not None:
            out["summaries"] = cfg.summary(x, log_w)
        return (x, log_w, ess_t, log_z + log_sum, failure, failure_time), out

    carry0 = (x, log_w, ess0, log_z0, failure, failure_time)
    times = jnp.arange(1, cfg.n_steps + 1, dtype=jnp.int32)
    (x, log_w, _, log_z, failure, failure_time), outs = lax.scan(body, carry0, times)

    fields = {
        "particles": x,
        "log_weights": log_w,
        "log_evidence": log_z,
        "ess": _prepend(ess0, outs["ess"]),
        "resampled": _prepend(False, outs["resampled"]),
        "log_evidence_increments": _prepend(log_z0, outs["log_evidence_increments"]),
        "failure": failure,
        "failure_time": failure_time,
        "ancestors": _prepend(identity, outs["ancestors"]) if cfg.keep_ancestors else None,
        "history": _prepend(x0, outs["history"]) if cfg.keep_history else None,
        "summaries": _prepend(summary0, outs["summaries"]) if cfg.summary is not None else None,
    }
    return fields


def _prepend(first: Any, rest: Any) -> Any:
    """Put the time-0 value in front of the per-time scan outputs."""
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None].astype(b.dtype), b], axis=0), first, rest)


@partial(jax.jit, static_argnames=("cfg",))
def _run_compiled(model_arrays, model_static, key, ess_threshold, cfg: RunConfig) -> dict:
    """One run for a single key; ``cfg.n_runs`` vmapped runs for a stacked ``(n_runs,)`` key array."""
    model = merge_static(model_arrays, model_static)
    if cfg.n_runs is None:
        return _single_run(model, key, ess_threshold, cfg)
    return jax.vmap(_single_run, in_axes=(None, 0, None, None))(model, key, ess_threshold, cfg)


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
) -> SMCResult:
    """Run SMC on a Feynman-Kac ``model`` with ``n_particles`` particles.

    Args:
      model: object with ``n_steps``, ``init(key, n)`` and ``step(key, t, x)`` (module docstring).
        A registered pytree's array leaves are traced arguments (changing them does not recompile);
        its other leaves (functions) and any unregistered object are static, keyed by identity.
      key: a JAX PRNG key; the same key gives the same result.
      n_particles: N >= 1.
      resampler: a scheme name from the ``resampler`` plugins (``multinomial``, ``systematic``,
        ``stratified``, ``residual``, ``ssp``, ``killing``, ...) or a callable
        ``resample(key, log_weights, num) -> ancestors``.
      ess_threshold: in [0, 1]; with ``schedule="adaptive"`` resample when ESS < threshold * N
        (0: never, 1: always). Traced: changing it does not recompile.
      schedule: ``"adaptive"``, ``"always"``, ``"never"``, an int k (resample at times divisible
        by k) or a list of times in [1, n_steps].
      n_runs: if given, that many independent runs are vmapped; every field gains a leading run axis.
      keep_ancestors: also return ancestor indices per time, shape ``(n_steps+1, N)``.
      keep_history: also return the particles at every time (O(n_steps * N * d) memory); with
        ``keep_ancestors`` it allows :meth:`SMCResult.paths`.
      summary: optional ``summary(x, log_W) -> pytree`` evaluated on the weighted particles at every
        time (e.g. filtering moments); stacked along a leading time axis in ``result.summaries``.
        Use a function defined once (it is static: a new function object recompiles).
      errors: ``"raise"`` raises :class:`SMCNumericalError` if a run had a NaN/+inf potential or lost
        every particle; ``"flag"`` returns the result with ``failure`` codes set and warns.

    Returns:
      :class:`SMCResult`.
    """
    n_particles = check_n_particles(n_particles)
    check_threshold(ess_threshold)
    if errors not in ("raise", "flag"):
        raise ValueError(f"errors={errors!r}; use 'raise' or 'flag'")
    if n_runs is not None:
        n_runs = check_n_particles(n_runs, name="n_runs")
    n_steps = check_model(model, n_particles)
    cfg = RunConfig(
        n_particles=n_particles,
        n_steps=n_steps,
        resampler=resolve_resampler(resampler),
        schedule=make_schedule(schedule, n_steps),
        keep_ancestors=bool(keep_ancestors),
        keep_history=bool(keep_history),
        n_runs=n_runs,
        summary=summary,
    )
    model_arrays, model_static = split_static(model)
    # Run keys are split outside the compiled program: XLA's CPU compiler can stall for minutes on a
    # split fused into the vmapped scan for some PRNG implementations (threefry4x32).
    keys = key if n_runs is None else jax.random.split(key, n_runs)
    fields = _run_compiled(model_arrays, model_static, keys, ess_threshold, cfg=cfg)
    result = SMCResult(**fields)
    _report_failures(result, errors)
    return result


def _report_failures(result: SMCResult, errors: str) -> None:
    """Host-side check after the run (never inside it)."""
    if isinstance(result.failure, jax.core.Tracer):
        return
    codes = np.asarray(result.failure).reshape(-1)
    if not codes.any():
        return
    times = np.asarray(result.failure_time).reshape(-1)
    lines = [
        f"run {i}: at time {times[i]}: {FAILURE_MESSAGES[int(c)]}" if codes.size > 1 else f"at time {times[i]}: {FAILURE_MESSAGES[int(c)]}"
        for i, c in enumerate(codes)
        if c
    ]
    message = "SMC numerical failure " + "; ".join(lines[:5]) + (" ..." if len(lines) > 5 else "")
    if errors == "raise":
        raise SMCNumericalError(message + ". Pass errors='flag' to get the result with failure flags.")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
