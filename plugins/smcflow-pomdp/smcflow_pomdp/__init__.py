"""POMDP beliefs for smcflow: models, belief filters, belief metrics, belief-space analysis, OPE."""
from .beliefs import ParticleBelief, histogram
from .lightdark import LightDark1D, lightdark_1d
from .metrics import MMD, TV, BeliefMetric, Hilbert, Sinkhorn, Wasserstein, w1, w2
from .models import rocksample, switching_tiger, tiger
from .pomdp import DiscretePOMDP, discrete_pomdp

__all__ = [
    "DiscretePOMDP", "discrete_pomdp", "tiger", "switching_tiger", "rocksample", "LightDark1D", "lightdark_1d",
    "ParticleBelief", "histogram",
    "BeliefMetric", "TV", "Wasserstein", "Sinkhorn", "MMD", "Hilbert", "w1", "w2",
]
