"""Rejuvenation moves: BlackJAX kernels leaving a tempered target invariant, run in whitened coordinates.

A move of one particle ``u (d,)`` targets ``log pi(u)`` through the linear change of variables
``u = scale * v`` (``scale (d,)``, e.g. the particles' standard deviations): the kernel runs on
``log pi(scale * v)`` (the constant Jacobian drops out of every acceptance ratio), so one step size in
``v`` suits every coordinate. Kernels, with their step sizes in ``v``:

* ``"rmh"``: :func:`blackjax.additive_step_random_walk.normal_random_walk`, proposal ``v + step * xi``;
  default ``step = 2.38 / sqrt(d)`` (the optimal random-walk scale for a Gaussian target);
* ``"mala"``: :func:`blackjax.mala` with ``step_size`` (proposal variance ``2 * step_size``);
  default ``step_size = 0.5 * d^(-1/3)``;
* ``"hmc"``: :func:`blackjax.hmc` with identity mass matrix, ``step_size`` and
  ``num_integration_steps``; default ``step_size = 0.5 * d^(-1/4)``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["KERNELS", "MoveConfig", "move_config", "move"]

KERNELS = ("rmh", "mala", "hmc")


class MoveConfig(NamedTuple):
    """Static configuration of the moves (hashable)."""

    kernel: str
    step_size: float
    n_moves: int
    num_integration_steps: int


def move_config(kernel: str, dim: int, step_size: float | None, n_moves: int,
                num_integration_steps: int) -> MoveConfig:
    """Check the options (naming the bad one) and fill in the default step size for ``dim``."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is not a move kernel; use one of {', '.join(KERNELS)}")
    for name, value in (("n_moves", n_moves), ("num_integration_steps", num_integration_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if step_size is None:
        step_size = {"rmh": 2.38 / dim ** 0.5, "mala": 0.5 * dim ** (-1 / 3), "hmc": 0.5 * dim ** (-0.25)}[kernel]
    elif isinstance(step_size, bool) or not float(step_size) > 0.0:
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    return MoveConfig(kernel, float(step_size), int(n_moves), int(num_integration_steps))


def _algorithm(cfg: MoveConfig, log_density: Callable[[jax.Array], jax.Array], dim: int):
    if cfg.kernel == "rmh":
        return blackjax.additive_step_random_walk.normal_random_walk(log_density, jnp.full((dim,), cfg.step_size))
    if cfg.kernel == "mala":
        return blackjax.mala(log_density, cfg.step_size)
    return blackjax.hmc(log_density, cfg.step_size, jnp.ones((dim,)), cfg.num_integration_steps)


def move(cfg: MoveConfig, key: jax.Array, u: jax.Array, log_pi: Callable[[jax.Array], jax.Array],
         scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``cfg.n_moves`` kernel steps from ``u (d,)`` targeting ``log_pi``; returns ``(u', mean acceptance)``."""
    algorithm = _algorithm(cfg, lambda v: log_pi(scale * v), u.shape[0])

    def one(i, carry):
        state, accepted = carry
        state, info = algorithm.step(jax.random.fold_in(key, i), state)
        return state, accepted + info.acceptance_rate

    state, accepted = lax.fori_loop(0, cfg.n_moves, one, (algorithm.init(u / scale), jnp.zeros((), u.dtype)))
    return scale * state.position, accepted / cfg.n_moves
