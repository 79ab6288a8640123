"""Entry point of the plugin (group ``smcflow``): the ``smcflow_models`` hook."""
from smcflow.plugins import hookimpl

from .models import FiniteHMM, LinearGaussian, StochasticVolatility


@hookimpl
def smcflow_models():
    return {
        "linear_gaussian": LinearGaussian.scalar,
        "linear_gaussian_mv": LinearGaussian,
        "finite_hmm": FiniteHMM,
        "stochastic_volatility": StochasticVolatility,
    }
