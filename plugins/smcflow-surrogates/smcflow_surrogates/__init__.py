"""Conditional diffusion surrogates for smcflow's surrogate data assimilation (:func:`smcflow.surge_filter`)."""
from .conditional import ConditionalScoreSampler
from .linear import exact_transition, linear_gaussian_surrogate

__all__ = ["ConditionalScoreSampler", "linear_gaussian_surrogate", "exact_transition"]
