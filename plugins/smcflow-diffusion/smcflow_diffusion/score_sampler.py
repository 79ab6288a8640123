"""Turn a score function and a noise schedule into a diffusion sampler (the ``sampler`` contract).

Generation runs along ``times`` from a large diffusion time down to the data end. With
``h_k = |t_{k+1} - t_k|``, the reverse-time Euler-Maruyama step of the forward SDE
``dX = f(t) X dt + g(t) dW`` is

    x_{k+1} = x_k + h_k [ -f(t_k) x_k + g(t_k)^2 score(x_k, t_k) ] + g(t_k) sqrt(h_k) xi_k,

so ``drift(x, t) = -f(t) x + g(t)^2 score(x, t)`` and ``noise(t) = g(t)``. The denoiser is Tweedie's
formula ``E[x_0 | x_t] = (x_t + sigma(t)^2 score(x_t, t)) / alpha(t)``. ``drift_and_denoise`` returns
both from one score evaluation (one network evaluation, one NFE).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

__all__ = ["ScoreSampler", "uniform_times", "score_sampler", "as_event_shape"]


def as_event_shape(event_shape: Any, where: str = "score_sampler") -> tuple[int, ...]:
    """``event_shape`` as a non-empty tuple of positive ints, or a clear error naming ``event_shape``.

    An int is refused with a ``TypeError`` that shows the fix (``event_shape=(64,)``), as are
    strings and non-integer entries; an empty shape or an entry ``<= 0`` is a ``ValueError``.
    """
    try:
        entries = None if isinstance(event_shape, (bool, str, bytes)) else tuple(event_shape)
    except TypeError:  # not iterable: an int, a 0-d array, None, ...
        entries = None
    if entries is None:
        if _is_int(event_shape):
            size = operator.index(event_shape)
            raise TypeError(f"{where}: event_shape must be a tuple of ints (the shape of one sample), "
                            f"got the int {size}; use event_shape=({size},)")
        raise TypeError(f"{where}: event_shape must be a tuple of ints (the shape of one sample), "
                        f"e.g. event_shape=(64,) or (8, 8), got {type(event_shape).__name__} {event_shape!r}")
    if not entries:
        raise ValueError(f"{where}: event_shape must not be empty; a sample of one number has "
                         "event_shape=(1,)")
    for i, entry in enumerate(entries):
        if not _is_int(entry):
            raise TypeError(f"{where}: event_shape must be a tuple of ints, but entry {i} of "
                            f"{event_shape!r} is {type(entry).__name__} {entry!r}")
    shape = tuple(operator.index(entry) for entry in entries)
    if min(shape) < 1:
        raise ValueError(f"{where}: every entry of event_shape must be >= 1, got {shape}")
    return shape


def _is_int(value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def uniform_times(schedule: Any, n_steps: int, t_min: float = 0.0, horizon: float | None = None) -> jax.Array:
    """Decreasing grid of ``n_steps + 1`` diffusion times from ``horizon`` (default: the schedule's) to ``t_min``."""
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    start = getattr(schedule, "horizon", 1.0) if horizon is None else horizon
    return jnp.linspace(float(start), float(t_min), int(n_steps) + 1)


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class ScoreSampler:
    """A diffusion sampler built from ``score(x, t)`` (``(n, *event_shape) -> same``) and a schedule.

    Attributes:
      score: the score ``grad_x log p_t(x)``; a plain function (static) or a callable pytree whose
        array leaves are traced (new parameters do not recompile).
      schedule: forward process with ``alpha``, ``sigma``, ``drift_coefficient``, ``diffusion_squared``.
      times: ``(K+1,)`` decreasing generation grid.
      prior: object with ``sample(key, n) -> (n, *event_shape)`` drawing ``x`` at ``times[0]``, or None
        for ``N(0, I)`` (the stationary law of both built-in schedules).
      event_shape: shape of one sample.
      final_denoise: map the last state to ``denoise(x_K, t_K)`` (one more NFE); rewards are then
        taken on that output.
      name: label used in error messages.
      event_dims: names of the event axes in exports (e.g. ``("pixel",)``), or None for the default.
    """

    score: Callable[[jax.Array, jax.Array], jax.Array]
    schedule: Any
    times: jax.Array
    prior: Optional[Any] = None
    event_shape: tuple[int, ...] = field(default=(1,), metadata=dict(static=True))
    final_denoise: bool = field(default=False, metadata=dict(static=True))
    name: str = field(default="score_sampler", metadata=dict(static=True))
    event_dims: Optional[tuple[str, ...]] = field(default=None, metadata=dict(static=True))

    def __post_init__(self) -> None:
        # event_shape is static (metadata), so it holds the real value on every unflatten too
        object.__setattr__(self, "event_shape", as_event_shape(self.event_shape, self.name))

    def init(self, key: jax.Array, n: int) -> jax.Array:
        """Draw ``n`` states at ``times[0]``."""
        if self.prior is not None:
            return self.prior.sample(key, n)
        return jax.random.normal(key, (n, *self.event_shape))

    def drift(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.drift_and_denoise(x, t)[0]

    def noise(self, t: jax.Array) -> jax.Array:
        return jnp.sqrt(self.schedule.diffusion_squared(t))

    def denoise(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.drift_and_denoise(x, t)[1]

    def drift_and_denoise(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reverse drift and Tweedie denoiser from one score evaluation."""
        s = self.score(x, t)
        sched = self.schedule
        drift = -sched.drift_coefficient(t) * x + sched.diffusion_squared(t) * s
        denoised = (x + sched.sigma(t) ** 2 * s) / sched.alpha(t)
        return drift, denoised

    def output(self, x: jax.Array) -> jax.Array:
        """The sample handed to the user (and the reward) for a final state ``x_K``."""
        return self.denoise(x, self.times[-1]) if self.final_denoise else x

    @property
    def output_nfe(self) -> int:
        """Network evaluations spent by :meth:`output` per particle."""
        return int(self.final_denoise)


def score_sampler(
    score: Callable[[jax.Array, jax.Array], jax.Array],
    event_shape: tuple[int, ...],
    schedule: Any = "vp",
    n_steps: int = 100,
    t_min: float = 1e-3,
    horizon: float | None = None,
    final_denoise: bool = True,
    name: str = "score_sampler",
) -> ScoreSampler:
    """Factory of the ``score`` sampler: wrap any ``score(x, t)`` (a plain JAX callable or callable pytree).

    Args:
      score: ``(n, *event_shape), t -> (n, *event_shape)``, the score of the noised data law at time ``t``
        (for a noise-prediction network ``eps(x, t)``: ``score = -eps / sigma(t)``).
      event_shape: shape of one sample, a tuple of positive ints (``(64,)`` for vectors of 64, not
        ``64``).
      schedule: ``"vp"`` (default), ``"ou"`` or a schedule object (``alpha``, ``sigma``,
        ``drift_coefficient``, ``diffusion_squared``).
      n_steps, t_min, horizon: the uniform generation grid.
      final_denoise: return Tweedie's estimate at ``t_min`` instead of the last noisy state.
    """
    from .schedules import make_schedule

    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {type(score).__name__}")
    shape = as_event_shape(event_shape, name)
    sched = make_schedule(schedule)
    return ScoreSampler(
        score=score,
        schedule=sched,
        times=uniform_times(sched, n_steps, t_min=t_min, horizon=horizon),
        event_shape=shape,
        final_denoise=bool(final_denoise),
        name=name,
    )
