"""Entry point of the plugin (group ``smcflow``): conditional diffusion surrogates as ``sampler`` components."""
from smcflow.plugins import hookimpl

from .linear import linear_gaussian_surrogate


@hookimpl
def smcflow_samplers():
    return {
        "linear_gaussian": linear_gaussian_surrogate,
    }
