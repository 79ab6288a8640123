"""The result of an SMC run and what can be done with it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .errors import describe_failures
from .resampling import BUILTIN_RESAMPLERS

__all__ = ["SMCResult", "trace_paths"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SMCResult:
    """Weighted particles at the final time plus per-time diagnostics.

    With ``n_runs`` independent runs every field has a leading run axis ``R``; shapes below omit it.

    Attributes:
      particles: pytree, leading axis N: particles at the final time (before any final resample).
      log_weights: ``(N,)`` normalised log-weights (``logsumexp == 0``).
      log_evidence: ``()`` estimate of log Z (``exp`` of it is unbiased for Z).
      ess: ``(T+1,)`` effective sample size after reweighting at each time ``0..T``.
      resampled: ``(T+1,)`` bool, whether particles were resampled just before moving to time t.
      log_evidence_increments: ``(T+1,)`` ``log Z_t - log Z_{t-1}`` (for a state-space model:
        estimates of ``log p(y_t | y_{0:t-1})``); they sum to ``log_evidence``.
      failure: ``()`` int code of the first numerical failure, a :class:`smcflow.errors.Failure`
        (0: none).
      failure_time: ``()`` time of that failure, -1 if none.
      ancestors: ``(T+1, N)`` int32 or None: ``ancestors[t, i]`` is the index at time ``t-1`` of the
        parent of particle ``i`` at time ``t`` (``ancestors[0]`` is the identity).
      history: pytree with leading axes ``(T+1, N)`` or None: particles at every time.
      summaries: pytree with leading axis ``T+1`` or None: ``summary(x_t, log W_t)`` at every time.
    """

    particles: Any
    log_weights: jax.Array
    log_evidence: jax.Array
    ess: jax.Array
    resampled: jax.Array
    log_evidence_increments: jax.Array
    failure: jax.Array
    failure_time: jax.Array
    ancestors: Any = None
    history: Any = None
    summaries: Any = None

    # -- shape helpers ---------------------------------------------------------------------------
    @property
    def n_runs(self) -> int | None:
        """Number of vmapped runs, or None for a single run."""
        return None if jnp.ndim(self.log_evidence) == 0 else int(jnp.shape(self.log_evidence)[0])

    @property
    def n_particles(self) -> int:
        return int(jnp.shape(self.log_weights)[-1])

    @property
    def failed(self) -> jax.Array:
        """Boolean (per run): a numerical failure happened."""
        return self.failure != 0

    def failure_message(self) -> str:
        """Human-readable failure summary (empty string when none)."""
        return describe_failures(self.failure, self.failure_time, limit=len(self.failure.reshape(-1)))

    def __repr__(self) -> str:
        from .diagnostics import brief

        return brief(self)

    def summary(self) -> str:
        """A readable diagnosis in a few lines (see :func:`smcflow.diagnose`)."""
        from .diagnostics import diagnose

        return diagnose(self).summary()

    # -- operations ------------------------------------------------------------------------------
    def resample(self, key: jax.Array, num: int | None = None, resampler: Any = "systematic") -> Any:
        """Equally weighted draws from the final weighted particles.

        ``resampler`` is a built-in scheme name or a callable ``resample(key, log_weights, num)`` (for a
        plugin's scheme pass ``smcflow.plugins.get("resampler", name)``). Returns a pytree with leading
        axis ``num`` (default N), per run if there are runs.
        """
        scheme = BUILTIN_RESAMPLERS[resampler] if isinstance(resampler, str) else resampler
        num = self.n_particles if num is None else int(num)

        def one(k, particles, log_w):
            idx = scheme(k, log_w, num)
            return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), particles)

        if self.n_runs is None:
            return one(key, self.particles, self.log_weights)
        keys = jax.random.split(key, self.n_runs)
        return jax.vmap(one)(keys, self.particles, self.log_weights)

    def paths(self) -> Any:
        """Whole trajectories of the final particles, traced back through their ancestors.

        Needs ``keep_history=True`` and ``keep_ancestors=True``. Returns a pytree with leading axes
        ``(T+1, N)``: entry ``[t, i]`` is the time-t ancestor of final particle ``i``.
        """
        if self.history is None or self.ancestors is None:
            raise ValueError("paths() needs a run with keep_history=True and keep_ancestors=True")
        if self.n_runs is None:
            return trace_paths(self.history, self.ancestors)
        return jax.vmap(trace_paths)(self.history, self.ancestors)

    # -- exports ---------------------------------------------------------------------------------
    def to_inference_data(self, key: jax.Array | None = None, **kwargs: Any):
        """arviz ``InferenceData``: posterior = equally weighted draws after a final resample
        (``model=`` the filter that made the result adds the pointwise log-likelihood for ``az.loo``).

        See :func:`smcflow.export.to_inference_data`.
        """
        from .export import to_inference_data

        return to_inference_data(self, key=key, **kwargs)

    def to_datatree(self, key: jax.Array | None = None, **kwargs: Any):
        """The same content as an ``xarray.DataTree`` (the arviz >= 1.0 form)."""
        from .export import to_datatree

        return to_datatree(self, key=key, **kwargs)


def trace_paths(history: Any, ancestors: jax.Array) -> Any:
    """Genealogy of the final particles.

    Args:
      history: pytree with leading axes ``(T+1, N)``.
      ancestors: ``(T+1, N)`` parent indices (``ancestors[t]`` indexes time ``t-1``).

    Returns:
      pytree like ``history`` whose ``[t, i]`` is the time-t ancestor of final particle ``i``.
    """
    n_times, n = ancestors.shape

    def back(idx, t):
        # idx: indices at time t of the lineages; returns indices at time t-1
        return jnp.take(ancestors[t], idx), idx

    _, lineage = lax.scan(back, jnp.arange(n, dtype=jnp.int32), jnp.arange(n_times - 1, -1, -1))
    lineage = lineage[::-1]  # (T+1, N): index at time t of each final particle's ancestor
    return jax.tree_util.tree_map(lambda h: jax.vmap(lambda ht, it: jnp.take(ht, it, axis=0))(h, lineage), history)
