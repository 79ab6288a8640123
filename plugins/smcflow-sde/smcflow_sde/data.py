"""Checking paths and turning them into increments: the input side every estimator shares.

``paths`` is an array ``(n_paths, n_steps + 1, d)`` sampled every ``dt``, or a list of ``(n_i, d)`` arrays
of unequal lengths (padded here, with a mask). Missing samples (NaN gaps) are marked by a boolean
``mask`` of shape ``(n_paths, n_steps + 1)``, False where a sample is missing; a NaN where the mask says
present, or anywhere when no mask is given, is refused with its position. An increment at lag ``l`` is
a pair of present samples ``(x_i, x_{i+l})`` of one path (the samples between them may be missing).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
from smcflow.sde import check_step

__all__ = ["Paths", "Increments", "prepare_paths", "check_dt"]


class Increments(NamedTuple):
    """Valid pairs at one lag: ``start`` ``(m, d)`` = ``x_i``, ``delta`` ``(m, d)`` = ``x_{i+l} - x_i``,
    ``path`` ``(m,)`` the path index of each pair, ``tau`` the time lag ``l dt``."""

    start: np.ndarray
    delta: np.ndarray
    path: np.ndarray
    tau: float


class Paths(NamedTuple):
    """Checked paths: ``values`` ``(n_paths, L, d)`` float64 (0 where missing), ``mask`` ``(n_paths, L)``."""

    values: np.ndarray
    mask: np.ndarray
    dt: float

    @property
    def dim(self) -> int:
        return int(self.values.shape[2])

    def increments(self, lag: int = 1, paths: Optional[np.ndarray] = None) -> Increments:
        """The valid pairs ``(x_i, x_{i+lag})``, of the listed ``paths`` only when given."""
        values, mask = self.values, self.mask
        ok = mask[:, :-lag] & mask[:, lag:]
        if paths is not None:
            keep = np.zeros(values.shape[0], bool)
            keep[paths] = True
            ok &= keep[:, None]
        p, i = np.nonzero(ok)
        start = values[p, i]
        return Increments(start, values[p, i + lag] - start, p, lag * self.dt)

    def present(self) -> np.ndarray:
        """Every present sample ``(m, d)``."""
        return self.values[self.mask]


def check_dt(dt: Any) -> float:
    """``dt`` (the time between samples) as a float > 0, or an error naming ``dt``."""
    check_step(dt, "dt")
    return float(np.asarray(dt, dtype=np.float64))


def _stack_ragged(paths: list | tuple) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(p, dtype=np.float64) for p in paths]
    if not arrays:
        raise ValueError("paths is an empty list; pass at least one path of shape (n_i, d)")
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"paths[{i}] must have shape (n_i, d), got {a.shape}")
    dims = {a.shape[1] for a in arrays}
    if len(dims) != 1:
        raise ValueError(f"paths have different state dimensions {sorted(dims)}; every path needs the same d")
    length = max(a.shape[0] for a in arrays)
    values = np.full((len(arrays), length, dims.pop()), np.nan)
    mask = np.zeros((len(arrays), length), bool)
    for i, a in enumerate(arrays):
        values[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return values, mask


def prepare_paths(paths: Any, dt: Any, mask: Any = None, min_lag: int = 1) -> Paths:
    """Check ``paths``, ``dt`` and ``mask`` (module docstring); errors name the argument at fault.

    Refused: a non-array, the wrong number of axes, ``d = 0``, a mask of the wrong shape or dtype,
    NaN/inf on samples marked present (or anywhere without a mask), fewer than two time points, and
    data without a single valid pair at lag ``min_lag``.
    """
    dt = check_dt(dt)
    if isinstance(paths, (list, tuple)) and paths and np.ndim(paths[0]) == 2 and not isinstance(paths[0], (int, float)):
        values, ragged_mask = _stack_ragged(paths)
    else:
        try:
            values = np.asarray(paths, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"paths must be a numeric array (n_paths, n_steps + 1, d) or a list of (n_i, d) "
                            f"arrays: {exc}") from None
        ragged_mask = None
        if values.ndim != 3:
            hint = " (one path: pass paths[None])" if values.ndim == 2 else ""
            raise ValueError(f"paths must have shape (n_paths, n_steps + 1, d), got {values.shape}{hint}")
    n_paths, length, d = values.shape
    if d < 1 or n_paths < 1:
        raise ValueError(f"paths must have shape (n_paths, n_steps + 1, d) with n_paths, d >= 1, got {values.shape}")
    if length < 2:
        raise ValueError(f"paths must have at least two time points (n_steps + 1 >= 2), got {length}")
    if mask is None:
        present = np.ones((n_paths, length), bool) if ragged_mask is None else ragged_mask
        where = "" if ragged_mask is None else " inside a listed path"
        hint = "; mark missing samples with mask= (False there)"
    else:
        present = np.asarray(mask)
        if present.dtype != bool:
            raise TypeError(f"mask must be a boolean array (True where a sample is present), got dtype {present.dtype}")
        if present.shape != (n_paths, length):
            raise ValueError(f"mask must have shape (n_paths, n_steps + 1) = {(n_paths, length)}, got {present.shape}")
        if ragged_mask is not None:
            present = present & ragged_mask
        where, hint = " where mask is True", ""
    bad = present & ~np.isfinite(values).all(-1)
    if bad.any():
        p, i = np.argwhere(bad)[0]
        raise ValueError(f"paths has a non-finite sample{where} (path {p}, time index {i}: {values[p, i].tolist()})"
                         f"{hint}")
    values = np.where(present[..., None], values, 0.0)
    out = Paths(values, present, dt)
    pairs = (present[:, :-min_lag] & present[:, min_lag:]).sum() if length > min_lag else 0
    if pairs < 1:
        raise ValueError(f"paths have no pair of present samples {min_lag} step(s) apart: nothing to estimate from")
    return out
