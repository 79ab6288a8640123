"""smcflow-diffusion: diffusion samplers for smcflow (plugin kind ``sampler``).

* ``gaussian_mixture`` (:func:`mixture_diffusion`): analytic Gaussian-mixture diffusion in any
  dimension with OU or VP noising, exact score / denoiser and exact tilted targets;
* ``score`` (:func:`score_sampler`): any score function plus a noise schedule;
* ``digits``: a small score network trained on scikit-learn's 8x8 digits (weights shipped).
"""
from .mixture import GaussianMixture, HalfspaceTilt, MixtureScore, data_mixture, mixture_diffusion
from .schedules import OrnsteinUhlenbeck, VariancePreserving, make_schedule
from .score_sampler import ScoreSampler, score_sampler, uniform_times

__all__ = ["GaussianMixture", "HalfspaceTilt", "MixtureScore", "data_mixture", "mixture_diffusion",
           "OrnsteinUhlenbeck", "VariancePreserving", "make_schedule", "ScoreSampler", "score_sampler",
           "uniform_times"]
