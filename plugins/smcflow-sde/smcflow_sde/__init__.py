"""SDE drift and diffusion estimators for smcflow (plugin kind ``estimator``).

Each estimator's ``fit(paths, dt, mask=None)`` takes paths ``(n_paths, n_steps + 1, d)`` sampled every
``dt`` (or a list of ``(n_i, d)`` paths of unequal lengths; NaN gaps marked by ``mask``) and returns an
:class:`smcflow.SDE` whose ``drift(x)`` is ``(n, d)`` and ``diffusion(x)`` ``(n, d, d)`` symmetric positive
semi-definite everywhere, also far from the data, so it plugs straight into ``smcflow.simulate_sde``
and the SDE filters.

* :class:`KramersMoyal` (``km_kernel``, ``km_binned``): local conditional moments of the increments on
  a grid, plain quadratic variation or the lag-extrapolated form that cancels the first-order bias;
* :class:`NeuralLeastSquares` (``neural``): least-squares regression of ``dX/dt`` and of the residual
  outer products onto a drift network and a Cholesky-factor diffusion network, trained with optax;
* :class:`OrnsteinUhlenbeckMLE` (``ou_mle``): closed-form maximum likelihood of a linear SDE.
"""
from .data import Increments, prepare_paths
from .fields import AddFields, ConstantMatrix, GridField, LinearMap, project_psd
from .local import KramersMoyal
from .neural import NeuralLeastSquares, NeuralSDE
from .ou import OrnsteinUhlenbeckMLE, OUParameters
from .reference import CorrelatedDiffusion2D, ornstein_uhlenbeck

__all__ = [
    "Increments",
    "prepare_paths",
    "GridField",
    "AddFields",
    "LinearMap",
    "ConstantMatrix",
    "project_psd",
    "KramersMoyal",
    "NeuralLeastSquares",
    "NeuralSDE",
    "OrnsteinUhlenbeckMLE",
    "OUParameters",
    "CorrelatedDiffusion2D",
    "ornstein_uhlenbeck",
]
