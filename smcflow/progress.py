"""Progress of long runs: a tqdm bar advanced from inside the compiled scan by a host callback.

The compiled step calls :func:`report` with the (unbatched) time index; every ``every``-th step and at
the last one a ``jax.debug.callback`` moves the innermost open bar to ``t + 1``. About ten
callbacks per run, so the cost does not grow with N or with the number of steps. The bar is opened and
closed on the host by :func:`bar` around the compiled call. A run traced inside a user's ``jit`` gets
neither bar nor callbacks (its program executes after ``run`` has returned).
"""
from __future__ import annotations

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


def _advance_to(t) -> None:
    if _OPEN_BARS:
        open_bar = _OPEN_BARS[-1]
        done = int(t) + 1
        if done > open_bar.n:  # callbacks are unordered: never move back
            open_bar.update(done - open_bar.n)


def _tick(t) -> None:
    """The host callback compiled into the program; looks its handler up when called."""
    _advance_to(t)


def report(t: jax.Array, every: int, n_steps: int) -> None:
    """Inside the scan: tell the host that step ``t`` (0-based, of ``n_steps``) is done."""
    due = ((t + 1) % every == 0) | (t + 1 == n_steps)
    lax.cond(due, lambda: jax.debug.callback(_tick, t), lambda: None)


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
