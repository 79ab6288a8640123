"""The contracts other people's code implements, stated once as typing Protocols.

Every check of a user's object against a contract goes through :func:`require`, so the lists of
required members live here and nowhere else. Shapes use ``n`` for the particle axis.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

__all__ = ["FeynmanKac", "DiffusionSampler", "ConditionalDiffusionSampler", "Reward", "ScalingMethod", "members", "require", "component_name"]


@runtime_checkable
class FeynmanKac(Protocol):
    """A Feynman-Kac model for :func:`smcflow.run`.

    Times are ``0 .. n_steps``. ``init(key, n)`` draws ``n`` particles at time 0 (a pytree with leading
    axis ``n``) and returns them with their initial log-weights ``(n,)``; ``step(key, t, x)`` moves every
    particle from time ``t`` to ``t + 1`` (``t`` a traced int32 in ``0 .. n_steps - 1``) and returns the
    moved particles (same structure, shapes and dtypes) and the incremental log-weights ``log G_t (n,)``.
    Both are pure functions of their arguments and of the model's own fields. An optional ``validate()``
    is called before compiling, to refuse bad configurations with a clear message.
    """

    n_steps: int

    def init(self, key: jax.Array, n: int) -> tuple[Any, jax.Array]: ...

    def step(self, key: jax.Array, t: jax.Array, x: Any) -> tuple[Any, jax.Array]: ...


@runtime_checkable
class DiffusionSampler(Protocol):
    """A diffusion sampler (plugin kind ``sampler``); generation runs along ``times`` from noise to data.

    With ``h_k = |t_{k+1} - t_k|`` and ``xi ~ N(0, I)`` the reference step is
    ``x_{k+1} = x_k + h_k drift(x_k, t_k) + noise(t_k) sqrt(h_k) xi``. ``t`` is always a scalar (a 0-d
    array: one time for the whole batch); ``init(key, n)`` draws ``(n, *event)`` at ``times[0]``;
    ``noise(t) > 0`` is a scalar; ``denoise(x, t)`` estimates the clean sample. Optional: ``output(x)``
    maps a final state to the sample handed out (reward taken on it) with ``output_nfe`` network
    evaluations, ``drift_and_denoise(x, t)`` returns both from one network evaluation, ``event_dims``
    names the event axes in exports, ``name`` labels messages.
    """

    times: jax.Array

    def init(self, key: jax.Array, n: int) -> jax.Array: ...

    def drift(self, x: jax.Array, t: jax.Array) -> jax.Array: ...

    def noise(self, t: jax.Array) -> jax.Array: ...

    def denoise(self, x: jax.Array, t: jax.Array) -> jax.Array: ...


@runtime_checkable
class ConditionalDiffusionSampler(Protocol):
    """A diffusion model of a transition ``x_t | x_{t-1} = cond`` (plugin kind ``sampler``; the surrogate of
    :func:`smcflow.surge_filter`). ``cond`` is ``(n, d)``, one previous state per particle.

    The chain state ``z`` ``(n, d)`` starts at ``init(key, n, cond)`` on ``times[0]`` and moves by the reference
    step ``z_{k+1} = z_k + h_k drift(z_k, t_k, cond) + noise(t_k) sqrt(h_k) xi`` (as :class:`DiffusionSampler`);
    the next state is ``output(z_K, cond)`` (identity when absent). ``denoise(z, t, cond)`` estimates that
    next state (in state space) from ``z`` at ``t``. Optional: ``drift_and_denoise(z, t, cond)`` (both from one
    network evaluation), ``output(z, cond)``, ``tweedie_factor(t)`` (``()`` or ``(d,)``: the denoiser's
    uncertainty ``Cov[x_t | z] ~ d denoise / d z * diag(tweedie_factor(t))``, used by the default guidance),
    ``name``.
    """

    times: jax.Array

    def init(self, key: jax.Array, n: int, cond: jax.Array) -> jax.Array: ...

    def drift(self, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array: ...

    def noise(self, t: jax.Array) -> jax.Array: ...

    def denoise(self, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array: ...


@runtime_checkable
class Reward(Protocol):
    """A reward model (plugin kind ``reward``): ``reward(x) -> (n,)`` and ``differentiable`` (bool)."""

    differentiable: bool

    def __call__(self, x: jax.Array) -> jax.Array: ...


@runtime_checkable
class ScalingMethod(Protocol):
    """An inference-time scaling method (plugin kind ``method``), see :mod:`smcflow.scaling.methods`."""

    name: str
    exact: bool
    run_options: dict

    def build(self, sampler: Any, reward: Any, beta: Any) -> FeynmanKac: ...


def members(protocol: type) -> list[str]:
    """Names a protocol requires (attributes and methods), in declaration order."""
    names = list(getattr(protocol, "__annotations__", {}))
    names += [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    if "__call__" in vars(protocol):
        names.append("__call__")
    return [n for n in dict.fromkeys(names)]


def component_name(component: Any, default: str) -> str:
    """A component's ``name`` attribute, else its type name, for messages."""
    name = getattr(component, "name", None)
    return name if isinstance(name, str) else getattr(type(component), "__name__", default)


def require(obj: Any, protocol: type, what: str, skip: tuple[str, ...] = ()) -> None:
    """Raise ``TypeError`` naming ``what`` and the members ``obj`` lacks to satisfy ``protocol``."""
    missing = [m for m in members(protocol) if m not in skip and not hasattr(obj, m)]
    if "__call__" in missing:
        missing.remove("__call__")
        if not callable(obj):
            missing.append("__call__ (it must be callable)")
    if missing:
        raise TypeError(f"{what} has no {', '.join(repr(m) for m in missing)}; a {protocol.__name__} needs "
                        f"{', '.join(members(protocol))} (see smcflow.contracts.{protocol.__name__})")
