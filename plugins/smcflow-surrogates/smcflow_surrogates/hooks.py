"""Entry point of the plugin (group ``smcflow``): conditional diffusion surrogates as ``sampler`` components."""
from smcflow.plugins import hookimpl

from .linear import linear_gaussian_surrogate


@hookimpl
def smcflow_samplers():
    from .lorenz import lorenz63_surrogate, lorenz96_surrogate

    return {
        "linear_gaussian": linear_gaussian_surrogate,
        "lorenz63": lorenz63_surrogate,
        "lorenz96": lorenz96_surrogate,
    }
