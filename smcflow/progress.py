"""Progress of long runs: a tqdm bar advanced from inside the compiled scan by a host callback.

The compiled step calls :func:`report` with the (unbatched) time index ``t``; when ``t + 1`` is a
multiple of ``every`` or the last step, a ``jax.debug.callback`` tells the host that one more block of
steps is done, and the host moves the innermost open bar on by ``every`` (never past its total). About
ten callbacks per run, so the cost does not grow with the number of steps, and none of them carries an
operand: the host counts calls instead of reading ``t``. That is what keeps the bar cheap, because a
callback with operands first moves them into a device array (about 0.1 ms on CPU), whereas an
argument-free one costs a few tens of microseconds (``benchmarks/bench_progress.py``). Callbacks may
arrive in any order; counting does not care. The bar is opened and closed on the host by :func:`bar`
around the compiled call. A run traced inside a user's ``jit`` gets
neither bar nor callbacks (its program executes after ``run`` has returned).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import jax
from jax import lax

__all__ = ["updates_every", "report", "bar"]

_UPDATES = 10
_OPEN_BARS: list = []  # innermost last


def updates_every(n_steps: int, enabled: bool) -> int:
    """Steps between two updates (0: progress off)."""
    return max(1, n_steps // _UPDATES) if enabled and n_steps > 0 else 0


def _advance_by(steps: int) -> None:
    """Host side: move the innermost open bar on by ``steps``, stopping at its total."""
    if _OPEN_BARS:
        open_bar = _OPEN_BARS[-1]
        open_bar.update(min(steps, open_bar.total - open_bar.n))


def _tick(steps: int) -> None:
    """The host callback compiled into the program; looks its handler up when called."""
    _advance_by(steps)


def report(t: jax.Array, every: int, n_steps: int) -> None:
    """Inside the scan: tell the host that the block of steps ending at ``t`` (0-based, of
    ``n_steps``) is done. ``every`` is a Python int bound into the callback, not an operand."""
    due = ((t + 1) % every == 0) | (t + 1 == n_steps)
    lax.cond(due, lambda: jax.debug.callback(functools.partial(_tick, every)), lambda: None)


@contextmanager
def bar(total: int, description: str, enabled: bool) -> Iterator[None]:
    """Open a tqdm bar of ``total`` steps for the block when ``enabled``; close it at the end."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    open_bar = tqdm(total=total, desc=description, unit="step")
    _OPEN_BARS.append(open_bar)
    try:
        yield
        jax.effects_barrier()  # the last callbacks land before the bar closes
    finally:
        _OPEN_BARS.remove(open_bar)
        open_bar.close()
