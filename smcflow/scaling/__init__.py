"""Inference-time scaling of diffusion samplers: :func:`scale`, its methods and steering models."""
from .api import HeavyTailWarning, ScaleResult, check_components, scale
from .methods import BUILTIN_METHODS, GreedySearch, PathSteering
from .steer import GreedyValueSearch, SteerAux, SteeredDiffusion

__all__ = ["scale", "ScaleResult", "check_components", "HeavyTailWarning", "BUILTIN_METHODS", "PathSteering", "GreedySearch",
           "SteeredDiffusion", "GreedyValueSearch", "SteerAux"]
