"""Inference-time scaling of diffusion samplers: :func:`scale`, its methods and steering models."""
from .api import ScaleResult, check_components, scale
from .methods import BUILTIN_METHODS, GreedySearch, PathSteering
from .steer import GreedyValueSearch, SteerAux, SteeredDiffusion

__all__ = ["scale", "ScaleResult", "check_components", "BUILTIN_METHODS", "PathSteering", "GreedySearch",
           "SteeredDiffusion", "GreedyValueSearch", "SteerAux"]
