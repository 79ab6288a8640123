"""smcflow: Sequential Monte Carlo over paths in JAX.

What a user needs is here:

* the engine: :func:`run` for any :class:`FeynmanKac` model, and the one-step kernel
  (:func:`init_state`, :func:`step`, :class:`SMCState`, :class:`StepInfo`) to filter online;
* models: :class:`StateSpaceModel` with :func:`bootstrap_filter` / :func:`guided_filter` (numpyro
  distributions), and :class:`PathModel` (Euler-Maruyama paths with exact Girsanov weights);
* SDEs: :class:`SDE`, :func:`simulate_sde`, :class:`SDEStateSpaceModel` with :func:`bootstrap_filter`,
  :func:`girsanov_filter` (observation-guided, exact Girsanov weights) and
  :func:`ensemble_kalman_filter`; estimators of ``b`` and ``a`` from paths are plugins (kind ``estimator``);
* :func:`scale`: inference-time scaling of diffusion samplers by a reward (URGE and baselines);
* results: :class:`SMCResult`, :class:`ScaleResult` and :func:`diagnose` (did the run work?);
  errors: :class:`SMCNumericalError`, :class:`ModelShapeError`, :class:`Failure`;
* :mod:`smcflow.plugins` (the pluggy registry; nothing is loaded until it is used),
  :mod:`smcflow.resampling`, :mod:`smcflow.weights`.

Exact reference answers (Kalman filter, forward algorithm, tilted Gaussian mixtures) live in
:mod:`smcflow.exact`, imported on first use (it needs SciPy, which ``import smcflow`` does not load).
The numpyro bridge :mod:`smcflow.infer` (``smcflow.infer.SMC``: adaptive tempered SMC for a numpyro
model, with BlackJAX moves) is imported on first use too.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from . import plugins, resampling, weights
from .contracts import FeynmanKac
from .diagnostics import Diagnosis, diagnose
from .engine import init_state, run, step
from .enkf import EnKFResult, ensemble_kalman_filter
from .errors import Failure, ModelShapeError, SMCNumericalError
from .kernel import SMCState, StepInfo
from .path import PathModel, PathPoint, girsanov_log_weight
from .plugins import hookimpl, hookspec
from .result import SMCResult
from .scaling import ScaleResult, scale
from .sde import SDE, simulate_sde
from .sde_filters import SDEStateSpaceModel, girsanov_filter
from .ssm import StateSpaceModel, bootstrap_filter, guided_filter
from .surrogate_filter import SurrogateStateSpaceModel, surge_filter

try:
    __version__ = version("smcflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: the state of a :class:`PathModel` (the name used before the path model was unified)
PathParticles = PathPoint

__all__ = [
    "run",
    "init_state",
    "step",
    "SMCState",
    "StepInfo",
    "FeynmanKac",
    "SMCResult",
    "diagnose",
    "Diagnosis",
    "scale",
    "ScaleResult",
    "StateSpaceModel",
    "bootstrap_filter",
    "guided_filter",
    "PathModel",
    "PathPoint",
    "girsanov_log_weight",
    "SDE",
    "simulate_sde",
    "SDEStateSpaceModel",
    "girsanov_filter",
    "SurrogateStateSpaceModel",
    "surge_filter",
    "ensemble_kalman_filter",
    "EnKFResult",
    "SMCNumericalError",
    "ModelShapeError",
    "Failure",
    "hookimpl",
    "hookspec",
    "plugins",
    "resampling",
    "weights",
]

_LAZY_SUBMODULES = ("exact", "export", "io", "cli", "infer")


def __getattr__(name: str):
    """``smcflow.exact`` and the other heavier submodules, imported on first access."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'smcflow' has no attribute {name!r}")
