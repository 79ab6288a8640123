"""smcflow's own components, registered through the same hooks outside plugins use."""
from __future__ import annotations

from ..resampling import BUILTIN_RESAMPLERS
from .hookspecs import hookimpl


def _constant(component):
    def factory():
        return component

    factory.__doc__ = component.__doc__
    return factory


@hookimpl
def smcflow_resamplers():
    return {name: _constant(fn) for name, fn in BUILTIN_RESAMPLERS.items()}


@hookimpl
def smcflow_methods():
    from ..scaling.methods import BUILTIN_METHODS

    return dict(BUILTIN_METHODS)
