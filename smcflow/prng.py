"""Deriving independent PRNG streams inside traced loops."""
from __future__ import annotations

import jax

__all__ = ["streams"]


def streams(key: jax.Array, n: int) -> tuple[jax.Array, ...]:
    """``n`` independent keys ``fold_in(key, 0), ..., fold_in(key, n - 1)``.

    Used instead of ``jax.random.split`` wherever the split may end up inside a ``lax.scan``: with the
    ``threefry4x32`` implementation, XLA's CPU compiler stalls for minutes on a split in a loop body
    (seen with jax 0.10.2), while ``fold_in`` compiles at once.
    """
    return tuple(jax.random.fold_in(key, i) for i in range(n))
