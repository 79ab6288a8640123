"""The hook specifications of smcflow: what a plugin may provide.

Every hook takes no argument and returns a mapping ``name -> factory``. A factory is a callable taking
keyword configuration and returning a component (pure functions plus a params pytree, or any plain
object with the right methods). Hooks are called only when a program is built (``plugins.get``,
``plugins.available``), never inside traced code.

A plugin is a module or object carrying functions decorated with :data:`hookimpl` whose names are the
hook names below. It is found through the entry-point group ``smcflow`` or registered with
:func:`smcflow.plugins.register`.

=====================  ==================  =========================================================
hook                   kind                component contract (see docs/plugins.md)
=====================  ==================  =========================================================
smcflow_samplers       ``sampler``         diffusion sampler: ``times``, ``init``, ``drift``, ``noise``,
                                           ``denoise``
smcflow_rewards        ``reward``          ``reward(x) -> (n,)`` with attribute ``differentiable``
smcflow_estimators     ``estimator``       ``fit(paths, dt)`` -> object with ``drift``, ``diffusion``
smcflow_belief_metrics ``belief_metric``   ``metric(b1, b2) -> scalar``
smcflow_models         ``model``           Feynman-Kac model or state-space model factory
smcflow_methods        ``method``          inference-time scaling algorithm
smcflow_resamplers     ``resampler``       ``resample(key, log_weights, num) -> ancestors``
=====================  ==================  =========================================================
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

PROJECT = "smcflow"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Factory = Callable[..., Any]

#: plugin kind -> hook name
KIND_TO_HOOK: dict[str, str] = {
    "sampler": "smcflow_samplers",
    "reward": "smcflow_rewards",
    "estimator": "smcflow_estimators",
    "belief_metric": "smcflow_belief_metrics",
    "model": "smcflow_models",
    "method": "smcflow_methods",
    "resampler": "smcflow_resamplers",
}


@hookspec
def smcflow_samplers() -> Mapping[str, Factory]:
    """Diffusion samplers: name -> factory returning a sampler component."""


@hookspec
def smcflow_rewards() -> Mapping[str, Factory]:
    """Reward models: name -> factory returning a reward component."""


@hookspec
def smcflow_estimators() -> Mapping[str, Factory]:
    """SDE drift/diffusion estimators: name -> factory returning an estimator."""


@hookspec
def smcflow_belief_metrics() -> Mapping[str, Factory]:
    """Distances between POMDP beliefs: name -> factory returning a metric."""


@hookspec
def smcflow_models() -> Mapping[str, Factory]:
    """Ready-made Feynman-Kac / state-space models: name -> factory."""


@hookspec
def smcflow_methods() -> Mapping[str, Factory]:
    """Inference-time scaling methods: name -> factory."""


@hookspec
def smcflow_resamplers() -> Mapping[str, Factory]:
    """Resampling schemes: name -> factory returning ``resample(key, log_weights, num)``."""
