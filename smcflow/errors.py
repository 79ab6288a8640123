"""Exceptions raised by smcflow."""
from __future__ import annotations

__all__ = ["SMCNumericalError", "ModelShapeError", "FAILURE_MESSAGES"]


class SMCNumericalError(FloatingPointError):
    """A run hit a numerical failure: a NaN/+inf potential or every weight -inf."""


class ModelShapeError(ValueError):
    """A model's functions return arrays of the wrong shape, dtype or structure."""


#: failure code stored in a result -> meaning
FAILURE_MESSAGES = {
    0: "no failure",
    1: "a log-potential was NaN or +inf (those particles were given weight 0)",
    2: "every particle has weight zero (all log-weights are -inf); log-evidence is -inf",
}
