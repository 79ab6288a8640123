"""smcflow: Sequential Monte Carlo over paths in JAX.

Public API:

* :func:`run` - the SMC engine for any Feynman-Kac model (``n_steps``, ``init``, ``step``);
* :class:`SMCResult` - its result (weights, log-evidence, ESS, genealogy, arviz export);
* :class:`StateSpaceModel`, :func:`bootstrap_filter`, :func:`guided_filter` - numpyro-distribution
  state-space models;
* :class:`PathModel`, :func:`girsanov_log_weight` - path-space (Girsanov) weighting of SDE paths;
* :func:`scale` - inference-time scaling of diffusion samplers by a reward (URGE and baselines);
* :mod:`smcflow.plugins` - the pluggy registry; :mod:`smcflow.resampling` - resampling schemes.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import exact, plugins, resampling, weights
from .engine import RunConfig, run
from .errors import ModelShapeError, SMCNumericalError
from .plugins import hookimpl, hookspec
from .girsanov import PathModel, PathParticles, girsanov_log_weight
from .result import SMCResult
from .scaling import ScaleResult, scale
from .ssm import StateSpaceModel, bootstrap_filter, guided_filter

try:
    __version__ = version("smcflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "run",
    "scale",
    "ScaleResult",
    "RunConfig",
    "SMCResult",
    "StateSpaceModel",
    "bootstrap_filter",
    "guided_filter",
    "PathModel",
    "PathParticles",
    "girsanov_log_weight",
    "SMCNumericalError",
    "ModelShapeError",
    "exact",
    "hookimpl",
    "hookspec",
    "plugins",
    "resampling",
    "weights",
]
