"""When to resample: adaptive (ESS below a threshold), fixed schedules, or never.

A schedule is static configuration (it changes the program); the ESS threshold is a traced number
(changing it does not recompile). Times are indexed 0..n_steps; resampling may happen at time
``t >= 1``, between the reweighting at time ``t-1`` and the move to time ``t``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Schedule", "make_schedule", "ScheduleSpec"]

ScheduleSpec = Union[str, int, Sequence[int], "Schedule"]


@dataclass(frozen=True)
class Schedule:
    """Static description of a resampling schedule.

    ``kind`` is one of ``"adaptive"`` (resample when ``ESS < ess_threshold * N``; a threshold of 1
    means every time, 0 never), ``"always"``, ``"never"``, ``"every"`` (times divisible by ``every``)
    or ``"times"`` (the listed ``times``).
    """

    kind: str
    every: int = 1
    times: tuple[int, ...] = ()

    @property
    def may_resample(self) -> bool:
        return self.kind != "never" and not (self.kind == "times" and not self.times)

    def decide(self, t: jax.Array, ess: jax.Array, n: int, ess_threshold: jax.Array) -> jax.Array:
        """Boolean: resample just before moving to time ``t``, for the weight-dependent and periodic
        kinds (the engine handles ``"always"`` and ``"never"`` without a decision)."""
        if self.kind == "adaptive":
            return (ess < ess_threshold * n) | (ess_threshold >= 1.0)
        if self.kind == "every":
            return t % self.every == 0
        return jnp.any(t == jnp.asarray(self.times, dtype=jnp.int32))


def make_schedule(spec: ScheduleSpec, n_steps: int) -> Schedule:
    """Parse a user schedule: ``"adaptive"``, ``"always"``, ``"never"``, an int ``k`` (every k-th
    time) or a sequence of times in ``[1, n_steps]``."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        if spec not in ("adaptive", "always", "never"):
            raise ValueError(
                f"schedule={spec!r} is not a schedule; use 'adaptive', 'always', 'never', "
                "an int k (every k-th step) or a list of steps"
            )
        return Schedule(spec)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 1:
            raise ValueError(f"schedule={spec}: resampling every k steps needs k >= 1")
        return Schedule("every", every=int(spec))
    try:
        times = tuple(sorted({int(t) for t in spec}))
    except TypeError:
        raise TypeError(f"schedule={spec!r} is not a schedule specification") from None
    bad = [t for t in times if not 1 <= t <= n_steps]
    if bad:
        raise ValueError(f"schedule lists times {bad} outside [1, n_steps={n_steps}]")
    return Schedule("times", times=times)
