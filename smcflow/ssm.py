"""State-space models written with numpyro distributions, and particle filters for them.

Convention (times ``0 .. T-1``)::

    x_0 ~ initial(),            y_0 | x_0 ~ observation(x_0, 0)
    x_t ~ transition(x_{t-1}, t),  y_t | x_t ~ observation(x_t, t)      for t >= 1

``transition`` and ``observation`` receive particles batched along the leading axis and must return
distributions batched the same way (the event shape holds one particle's variable). The filters are
Feynman-Kac models for :func:`smcflow.run`; their ``log_evidence`` estimates ``log p(y_{0:T-1})``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .prng import streams
from .validation import register_model_pytree

__all__ = ["StateSpaceModel", "bootstrap_filter", "guided_filter", "BootstrapFilter", "GuidedFilter"]

Distribution = Any  # numpyro.distributions.Distribution


_SSM_PARTS = {
    "initial": "initial() -> numpyro distribution of x_0",
    "transition": "transition(x_prev, t) -> numpyro distribution",
    "observation": "observation(x, t) -> numpyro distribution",
}


def _check_part(owner: str, name: str, value: Any, signature: str) -> None:
    """``TypeError`` naming ``owner.name`` unless ``value`` is a callable that is not a distribution."""
    if not callable(value):
        raise TypeError(f"{owner}.{name} must be callable {signature}, got {_describe(value)}")
    if _is_distribution(value):  # numpyro distributions are callable, but are not the factory wanted
        raise TypeError(
            f"{owner}.{name} must be callable {signature}, got the distribution "
            f"{type(value).__name__} itself; wrap it in a function, e.g. "
            f"{name}=lambda{'' if name == 'initial' else ' x, t'}: dist.{type(value).__name__}(...)"
        )


def _describe(value: Any) -> str:
    return "None" if value is None else f"{type(value).__name__} {value!r}"[:120]


def _is_distribution(value: Any) -> bool:
    try:
        from numpyro.distributions import Distribution as NumpyroDistribution
    except ImportError:  # pragma: no cover - numpyro is a dependency
        return False
    return isinstance(value, NumpyroDistribution)


@dataclass(frozen=True)
class StateSpaceModel:
    """``initial() -> dist of x_0``, ``transition(x_prev, t)``, ``observation(x, t)`` (numpyro).

    Each part must be callable (a function, or a callable pytree whose array leaves are traced);
    anything else (``None``, a distribution instead of a function returning one) is refused here with
    a ``TypeError`` naming the part. The class is a pytree whose three fields are its children; the
    check runs on construction (and :func:`dataclasses.replace`), not when JAX rebuilds the pytree
    from leaves (``tree_unflatten``), which may hold placeholders while tracing.
    """

    initial: Callable[[], Distribution]
    transition: Callable[[Any, jax.Array], Distribution]
    observation: Callable[[Any, jax.Array], Distribution]

    def __post_init__(self) -> None:
        for name, signature in _SSM_PARTS.items():
            _check_part(type(self).__name__, name, getattr(self, name), signature)

    def simulate(self, key: jax.Array, n_times: int) -> tuple[jax.Array, jax.Array]:
        """Draw one trajectory: ``(xs, ys)`` with leading axis ``n_times`` (an int >= 1)."""
        n_times = _positive_int(n_times, "n_times")
        k0, ky0, kscan = jax.random.split(key, 3)
        x0 = self.initial().sample(k0, (1,))
        y0 = self.observation(x0, 0).sample(ky0)

        def body(x, inputs):
            t, k = inputs
            kx, ky = streams(k, 2)
            x = self.transition(x, t).sample(kx)
            return x, (x, self.observation(x, t).sample(ky))

        keys = jax.random.split(kscan, n_times - 1)
        _, (xs, ys) = lax.scan(body, x0, (jnp.arange(1, n_times), keys))
        xs = jnp.concatenate([x0[None], xs], axis=0)[:, 0]
        ys = jnp.concatenate([y0[None], ys], axis=0)[:, 0]
        return xs, ys


register_model_pytree(StateSpaceModel, tuple(_SSM_PARTS))


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 1``, or a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int >= 1, got the bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError as exc:
        hint = (" (it sets an array length, so it must be a Python int, not a traced value)"
                if isinstance(value, jax.core.Tracer) else "")
        raise TypeError(f"{name} must be an int >= 1, got {_describe(value)}{hint}") from exc
    if number < 1:
        raise ValueError(f"{name} must be >= 1 (the number of time points), got {number}")
    return number


def _n_times(ys: Any) -> int:
    leaves = jax.tree_util.tree_leaves(ys)
    if not leaves or jnp.ndim(leaves[0]) == 0:
        raise ValueError("ys must be an array (or pytree of arrays) with a leading time axis")
    return int(jnp.shape(leaves[0])[0])


def _at(ys: Any, t: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda a: a[t], ys)


class _Observed:
    """What both filters of observations ``ys`` of ``ssm`` offer the exports."""

    ssm: StateSpaceModel
    ys: Any

    @property
    def observations(self) -> Any:
        """The observations ``y_0 .. y_{T-1}`` (leading axis: time)."""
        return self.ys

    def pointwise_log_likelihood(self, paths: Any) -> jax.Array:
        """``log p(y_t | x_t)`` along whole paths: ``paths`` has leading axes ``(T, M)``; returns ``(M, T)``.

        With the ancestral paths of equally weighted draws this is the pointwise log-likelihood that
        ``arviz.loo`` / ``arviz.waic`` read (one "observation" per time).
        """
        def at_time(t, x_t):
            return self.ssm.observation(x_t, t).log_prob(_at(self.ys, t))

        return jax.vmap(at_time)(jnp.arange(_n_times(self.ys)), paths).T


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class BootstrapFilter(_Observed):
    """Feynman-Kac model of the bootstrap filter: move with the transition, weight by the likelihood.

    ``n_steps = T - 1``; ``step(key, t, x)`` moves to time ``t+1`` and weighs by ``p(y_{t+1} | x_{t+1})``.
    """

    ssm: StateSpaceModel
    ys: Any

    @property
    def n_steps(self) -> int:
        return _n_times(self.ys) - 1

    def init(self, key: jax.Array, n: int):
        x = self.ssm.initial().sample(key, (n,))
        return x, self.ssm.observation(x, 0).log_prob(_at(self.ys, 0))

    def step(self, key: jax.Array, t: jax.Array, x: Any):
        x = self.ssm.transition(x, t + 1).sample(key)
        return x, self.ssm.observation(x, t + 1).log_prob(_at(self.ys, t + 1))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GuidedFilter(_Observed):
    """Guided filter: propose ``x_t ~ q(. | x_{t-1}, y_t)`` and weigh by ``f(x_t|x_{t-1}) g(y_t|x_t) / q``.

    ``proposal(x_prev, t, y_t)`` returns a batched distribution; ``initial_proposal(y_0)`` an unbatched
    one for ``x_0`` (None: draw ``x_0`` from ``initial()``).
    """

    ssm: StateSpaceModel
    ys: Any
    proposal: Callable[[Any, jax.Array, Any], Distribution]
    initial_proposal: Optional[Callable[[Any], Distribution]] = None

    @property
    def n_steps(self) -> int:
        return _n_times(self.ys) - 1

    def init(self, key: jax.Array, n: int):
        y0 = _at(self.ys, 0)
        prior = self.ssm.initial()
        if self.initial_proposal is None:
            x = prior.sample(key, (n,))
            log_w = jnp.zeros(jnp.shape(jax.tree_util.tree_leaves(x)[0])[:1])
        else:
            q0 = self.initial_proposal(y0)
            x = q0.sample(key, (n,))
            log_w = prior.log_prob(x) - q0.log_prob(x)
        return x, log_w + self.ssm.observation(x, 0).log_prob(y0)

    def step(self, key: jax.Array, t: jax.Array, x_prev: Any):
        y = _at(self.ys, t + 1)
        q = self.proposal(x_prev, t + 1, y)
        x = q.sample(key)
        log_g = (
            self.ssm.transition(x_prev, t + 1).log_prob(x)
            + self.ssm.observation(x, t + 1).log_prob(y)
            - q.log_prob(x)
        )
        return x, log_g


def bootstrap_filter(ssm: StateSpaceModel, ys: Any) -> BootstrapFilter:
    """Bootstrap particle filter for observations ``ys`` (leading axis: time ``0 .. T-1``).

    A model of another kind that builds its own bootstrap filter (``ssm.bootstrap_filter(ys)``, e.g.
    :class:`smcflow.SDEStateSpaceModel`) gets that one.
    """
    if not isinstance(ssm, StateSpaceModel) and callable(getattr(ssm, "bootstrap_filter", None)):
        return ssm.bootstrap_filter(ys)
    _n_times(ys)
    return BootstrapFilter(ssm, jax.tree_util.tree_map(jnp.asarray, ys))


def guided_filter(
    ssm: StateSpaceModel,
    ys: Any,
    proposal: Callable[[Any, jax.Array, Any], Distribution],
    initial_proposal: Optional[Callable[[Any], Distribution]] = None,
) -> GuidedFilter:
    """Guided particle filter with a user proposal (see :class:`GuidedFilter`)."""
    _n_times(ys)
    return GuidedFilter(ssm, jax.tree_util.tree_map(jnp.asarray, ys), proposal, initial_proposal)
