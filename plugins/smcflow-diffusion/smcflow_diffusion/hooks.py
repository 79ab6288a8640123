"""Entry point of the plugin (group ``smcflow``): the ``smcflow_samplers`` hook."""
from smcflow.plugins import hookimpl

from .mixture import mixture_diffusion
from .score_sampler import score_sampler


@hookimpl
def smcflow_samplers():
    from .digits import digits_sampler

    return {
        "gaussian_mixture": mixture_diffusion,
        "score": score_sampler,
        "digits": digits_sampler,
    }
