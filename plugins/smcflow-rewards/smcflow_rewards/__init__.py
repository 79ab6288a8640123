"""smcflow-rewards: reward models for smcflow (plugin kind ``reward``).

* ``linear``, ``quadratic``, ``indicator`` (half-space, not differentiable), ``weighted_sum``;
* ``digits_log_prob``: log p(class | x) of a small JAX classifier on scikit-learn's 8x8 digits;
* ``digits_vote``: 1 when that classifier's vote is the class (not differentiable).
"""
from .basic import HalfspaceIndicator, LinearReward, QuadraticReward, WeightedSum, indicator, linear, quadratic, weighted_sum

__all__ = ["HalfspaceIndicator", "LinearReward", "QuadraticReward", "WeightedSum", "indicator", "linear",
           "quadratic", "weighted_sum"]
