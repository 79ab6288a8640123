"""smcflow's own components: one table, resolved directly and listed through the ordinary hooks.

:func:`table` is what :func:`smcflow.plugins.get` consults first (no plugin manager, no entry points:
built-ins need no registry and win a name clash). The same table is offered through the hooks
below, so this module is registered as the plugin ``"smcflow"`` and ``smcflow plugins`` lists the
built-ins like any other plugin's components.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from ..resampling import BUILTIN_RESAMPLERS
from .hookspecs import hookimpl


def _constant(component: Any) -> Callable[[], Any]:
    """A factory returning ``component`` itself (the same object every time, so no recompiling)."""

    def factory() -> Any:
        return component

    factory.__doc__ = component.__doc__
    return factory


@functools.cache
def table() -> Mapping[str, Mapping[str, Callable[..., Any]]]:
    """``kind -> name -> factory`` of every built-in component (built once; do not mutate)."""
    from ..scaling.methods import BUILTIN_METHODS  # lazily: smcflow.scaling imports the registry

    return {
        "resampler": {name: _constant(fn) for name, fn in BUILTIN_RESAMPLERS.items()},
        "method": dict(BUILTIN_METHODS),
    }


@hookimpl
def smcflow_resamplers():
    return dict(table()["resampler"])


@hookimpl
def smcflow_methods():
    return dict(table()["method"])
