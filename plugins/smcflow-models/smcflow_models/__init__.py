"""Ready-made state-space models for smcflow, each with its exact reference where one exists."""
from .models import FiniteHMM, LinearGaussian, StochasticVolatility

__all__ = ["LinearGaussian", "FiniteHMM", "StochasticVolatility"]
