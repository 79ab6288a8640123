"""Learned surrogates of stochastic Lorenz-63 and Lorenz-96 over one observation interval.

Each is a :class:`~smcflow_surrogates.conditional.ConditionalScoreSampler` of ``x_t | x_{t-1} = c``::

    x_t = center(c) + scale * z,     center(c) = c + increment_sd * m(c)     (MeanNetwork)
    z ~ the diffusion of EpsScore (VP schedule, beta from 0.1 to BETA_MAX), started at N(0, I)

trained by ``scripts/train_lorenz.py`` (fixed seeds, optax) on trajectories of the true SDE simulated with
smcflow's own Euler-Maruyama step, and shipped as ``weights/lorenz63.npz`` / ``weights/lorenz96.npz``
(:func:`smcflow.io.load_weights`, no pickle). The settings below (observation interval, substeps, noise,
initial law) are shared by the training script, the tests, the benchmark and the example.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import smcflow
from smcflow.io import load_weights
from smcflow_diffusion.schedules import VariancePreserving
from smcflow_diffusion.score_sampler import uniform_times

from .conditional import ConditionalScoreSampler
from .lorenz_nets import EpsScore, MeanNetwork

__all__ = ["LorenzSettings", "LORENZ63", "LORENZ96", "SCHEDULE", "DEFAULT_STEPS", "WEIGHTS",
           "lorenz63_surrogate", "lorenz96_surrogate", "true_sde", "lorenz96_spun_up"]

#: forward schedule of the surrogates' standardised residuals: VP with a moderate beta_max, so that the
#: denoiser's error is amplified by at most sigma / alpha ~ 12 at the start of the chain
SCHEDULE = VariancePreserving(beta_min=0.1, beta_max=10.0, horizon=1.0)
#: diffusion steps of one forecast (the accuracy against K is in docs/assimilation.md)
DEFAULT_STEPS = 20
WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class LorenzSettings:
    """One system: its SDE's parameters, the observation interval and the initial law ``N(mean, sd^2 I)``."""

    name: str
    d: int
    dt: float
    n_substeps: int
    noise: float
    forcing: float = 8.0
    initial_sd: float = 2.0

    @property
    def initial_mean(self) -> np.ndarray:
        if self.name == "lorenz63":
            return np.array([1.0, 1.0, 25.0], np.float32)
        return lorenz96_spun_up()


#: stochastic Lorenz-63 (sigma 10, rho 28, beta 8/3), a = 4 I, observed every 0.1 (10 Euler substeps)
LORENZ63 = LorenzSettings("lorenz63", d=3, dt=0.1, n_substeps=10, noise=2.0, initial_sd=2.0)
#: stochastic Lorenz-96, 40 sites, F = 8, a = 0.25 I, observed every 0.05 (10 Euler substeps: with 5 the Euler chain of the stochastic system blows up)
LORENZ96 = LorenzSettings("lorenz96", d=40, dt=0.05, n_substeps=10, noise=0.5, initial_sd=1.0)


def true_sde(settings: LorenzSettings) -> smcflow.SDE:
    from smcflow_sde.reference import lorenz63, lorenz96

    if settings.name == "lorenz63":
        return lorenz63(settings.noise)
    return lorenz96(settings.d, settings.forcing, settings.noise)


@lru_cache(maxsize=1)
def lorenz96_spun_up() -> np.ndarray:
    """A state on the Lorenz-96 attractor: 20 time units of the true SDE from ``F`` plus a small
    perturbation (fixed keys); the centre of the initial law of the benchmark and the example."""
    s = LORENZ96
    x0 = s.forcing + 0.01 * jax.random.normal(jax.random.key(96), (1, s.d))
    path = smcflow.simulate_sde(true_sde(s), jax.random.key(97), x0, s.dt, int(20 / s.dt), s.n_substeps)
    return np.asarray(path[0, -1], np.float32)


@lru_cache(maxsize=2)
def _weights(name: str) -> dict:
    return jax.tree_util.tree_map(jnp.asarray, load_weights(WEIGHTS / f"{name}.npz"))


def _surrogate(name: str, body: str, n_steps: int, t_min: float) -> ConditionalScoreSampler:
    w = _weights(name)
    stats = w["stats"]
    return ConditionalScoreSampler(
        score=EpsScore(w["eps"], {k: stats[k] for k in ("state_mean", "state_sd")}, SCHEDULE, body=body),
        schedule=SCHEDULE,
        times=uniform_times(SCHEDULE, n_steps, t_min=t_min),
        center=MeanNetwork(w["mean"], stats, body=body),
        scale=stats["residual_sd"],
        name=name,
    )


def lorenz63_surrogate(n_steps: int = DEFAULT_STEPS, t_min: float = 1e-3) -> ConditionalScoreSampler:
    """Factory of the ``lorenz63`` surrogate (weights ``weights/lorenz63.npz``; an MLP body)."""
    return _surrogate("lorenz63", "mlp", n_steps, t_min)


def lorenz96_surrogate(n_steps: int = DEFAULT_STEPS, t_min: float = 1e-3) -> ConditionalScoreSampler:
    """Factory of the ``lorenz96`` surrogate (weights ``weights/lorenz96.npz``; a periodic convolution body)."""
    return _surrogate("lorenz96", "conv", n_steps, t_min)
