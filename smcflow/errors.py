"""Exceptions and numerical-failure codes of smcflow.

A run never returns a silent NaN: every numerical failure is recorded as one :class:`Failure` code
(the first one met, with the time it happened) and then, with ``errors="raise"``, turned into an
:class:`SMCNumericalError` by :func:`report_failures`. That works at the top level (a host-side check
after the run) and inside a user's ``jax.jit`` / ``jax.vmap`` (a host callback that raises; JAX then
surfaces it as a ``JaxRuntimeError`` whose message holds the same text).
"""
from __future__ import annotations

import enum
import functools
import warnings
from typing import Any

import jax
import numpy as np

__all__ = ["SMCNumericalError", "ModelShapeError", "Failure", "FAILURE_MESSAGES", "describe_failures",
           "report_failures"]


class SMCNumericalError(FloatingPointError):
    """A run hit a numerical failure (see :class:`Failure`)."""


class ModelShapeError(ValueError):
    """A model's functions return arrays of the wrong shape, dtype or structure."""


class Failure(enum.IntEnum):
    """What went wrong first in a run (stored as an int32 code in results)."""

    NONE = 0
    #: a log-potential of a live particle was NaN (that particle was given weight zero)
    POTENTIAL_NAN = 1
    #: every particle has weight zero
    ALL_DEAD = 2
    #: a log-potential of a live particle was +inf (that particle was given weight zero)
    POTENTIAL_POSINF = 3
    #: a particle of positive weight holds NaN (checked at each resampling and at the end)
    PARTICLES_NAN = 4


#: failure code -> meaning (the one message table)
FAILURE_MESSAGES: dict[int, str] = {
    Failure.NONE: "no failure",
    Failure.POTENTIAL_NAN: "a log-potential was NaN (those particles were given weight zero)",
    Failure.ALL_DEAD: "every particle has weight zero (all log-weights are -inf); log-evidence is -inf",
    Failure.POTENTIAL_POSINF: "a log-potential was +inf (those particles were given weight zero)",
    Failure.PARTICLES_NAN: "a particle of positive weight holds NaN values",
}


def describe_failures(failure: Any, failure_time: Any, limit: int = 5) -> str:
    """One line per failed run, ``""`` when nothing failed (arrays of any shape, one entry per run)."""
    codes = np.asarray(failure).reshape(-1)
    times = np.asarray(failure_time).reshape(-1)
    lines = [
        (f"run {i}: " if codes.size > 1 else "") + f"at time {times[i]}: {FAILURE_MESSAGES[int(c)]}"
        for i, c in enumerate(codes)
        if c
    ]
    return "; ".join(lines[:limit]) + (f" ... ({len(lines)} runs failed)" if len(lines) > limit else "")


def _raise_if_failed(failure: Any, failure_time: Any, context: str, hint: str) -> None:
    text = describe_failures(failure, failure_time)
    if text:
        raise SMCNumericalError(f"{context}numerical failure {text}.{hint}")


def report_failures(failure: Any, failure_time: Any, errors: str, context: str = "",
                    hint: str = " Pass errors='flag' to get the result with failure codes.") -> None:
    """Raise (``errors="raise"``) or warn (``"flag"``) about failure codes.

    Concrete codes are checked at once. Traced codes (inside a user's ``jit``/``vmap``) are checked by a
    host callback when the program runs, so ``errors="raise"`` holds there too.
    """
    context = f"{context}: " if context else "SMC "
    if isinstance(failure, jax.core.Tracer):
        if errors == "raise":
            jax.debug.callback(functools.partial(_raise_if_failed, context=context, hint=hint), failure, failure_time)
        return
    if errors == "raise":
        _raise_if_failed(failure, failure_time, context, hint)
        return
    text = describe_failures(failure, failure_time)
    if text:
        warnings.warn(f"{context}numerical failure {text}", RuntimeWarning, stacklevel=3)
