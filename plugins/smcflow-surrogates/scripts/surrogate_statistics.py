#!/usr/bin/env python
"""One-step and long-run statistics of the learned Lorenz surrogates against the true SDE (a markdown table).

* One step: from 4 held-out states on the attractor, 4000 forecasts of the surrogate (K diffusion steps)
  and 4000 draws of the true SDE over one observation interval; reported: the largest |mean error| in
  units of the true forecast sd and the range of the variance ratios (surrogate / true) over coordinates
  and states, for K = 10, 20, 50.
* Long run: 16 free-running trajectories of the surrogate (its own forecasts fed back) and of the true SDE
  from the same starts, 1500 intervals after a burn-in of 100; reported: the marginal mean and sd (over
  coordinates, sites pooled for Lorenz-96 by symmetry) and the autocorrelation at lags of 1, 5 and 20
  intervals.

Usage: python plugins/smcflow-surrogates/scripts/surrogate_statistics.py   (about 2 minutes on 2 CPU cores)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import smcflow
from smcflow.surrogate_filter import _forecast
from smcflow_surrogates.lorenz import LORENZ63, LORENZ96, lorenz63_surrogate, lorenz96_surrogate, true_sde

SYSTEMS = {"lorenz63": (LORENZ63, lorenz63_surrogate), "lorenz96": (LORENZ96, lorenz96_surrogate)}
M, N_STATES, N_TRAJ, BURN, LENGTH, LAGS = 4000, 4, 16, 100, 1500, (1, 5, 20)


def held_out_states(settings, n):
    x0 = jnp.asarray(settings.initial_mean) + settings.initial_sd * jax.random.normal(jax.random.key(55), (n, settings.d))
    return smcflow.simulate_sde(true_sde(settings), jax.random.key(56), x0, settings.dt, 100, settings.n_substeps)[:, -1]


def one_step(settings, make) -> list[str]:
    sde, rows = true_sde(settings), []
    conds = held_out_states(settings, N_STATES)
    truths = [np.asarray(smcflow.simulate_sde(sde, jax.random.key(60 + i), jnp.broadcast_to(c, (M, settings.d)),
                                              settings.dt, 1, settings.n_substeps)[:, -1]) for i, c in enumerate(conds)]
    for K in (10, 20, 50):
        surrogate = make(n_steps=K)
        step = jax.jit(lambda key, c: _forecast(surrogate, key, c))
        errors, ratios = [], []
        for i, (c, truth) in enumerate(zip(conds, truths)):
            draws = np.asarray(step(jax.random.key(70 + i), jnp.broadcast_to(c, (M, settings.d))))
            errors.append(np.abs(draws.mean(0) - truth.mean(0)) / truth.std(0))
            ratios.append(draws.var(0) / truth.var(0))
        errors, ratios = np.concatenate(errors), np.concatenate(ratios)
        rows.append(f"| {settings.name} | one step, K = {K} | max |mean error| / sd {errors.max():.3f} "
                    f"(median {np.median(errors):.3f}) | variance ratio {ratios.min():.2f} .. {ratios.max():.2f} |")
    mc = np.sqrt(2.0 / M)
    rows.append(f"| {settings.name} | Monte Carlo error of these | ±{mc:.3f} (1 sd of a mean error) | "
                f"±{2 * mc:.3f} (1 sd of a ratio) |")
    return rows


def autocorrelation(paths: np.ndarray, lag: int) -> float:
    x = paths - paths.mean(axis=1, keepdims=True)
    return float(np.mean(x[:, lag:] * x[:, :-lag]) / np.mean(x * x))


def long_run(settings, make) -> list[str]:
    surrogate = make()
    starts = held_out_states(settings, N_TRAJ)
    n = BURN + LENGTH

    @jax.jit
    def free_run(key, x0):
        def body(x, k):
            x = _forecast(surrogate, k, x)
            return x, x

        return lax.scan(body, x0, jax.random.split(key, n))[1]

    learned = np.moveaxis(np.asarray(free_run(jax.random.key(80), starts)), 0, 1)[:, BURN:]
    truth = np.asarray(smcflow.simulate_sde(true_sde(settings), jax.random.key(81), starts, settings.dt, n,
                                            settings.n_substeps))[:, BURN + 1:]
    rows = []
    for label, paths in (("true SDE", truth), ("surrogate", learned)):
        pooled = paths.reshape(-1, paths.shape[-1])
        if settings.name == "lorenz96":
            moments = f"mean {pooled.mean():.2f}, sd {pooled.std():.2f} (sites pooled)"
            acf = [np.mean([autocorrelation(paths[..., i], lag) for i in range(settings.d)]) for lag in LAGS]
        else:
            moments = "mean " + " / ".join(f"{v:.2f}" for v in pooled.mean(0)) + ", sd " + " / ".join(
                f"{v:.2f}" for v in pooled.std(0))
            acf = [np.mean([autocorrelation(paths[..., i], lag) for i in range(settings.d)]) for lag in LAGS]
        finite = "" if np.isfinite(paths).all() else " (non-finite values!)"
        rows.append(f"| {settings.name} | long run, {label}{finite} | {moments} | autocorrelation at lags "
                    + ", ".join(f"{lag}: {a:.2f}" for lag, a in zip(LAGS, acf)) + " |")
    return rows


def main() -> None:
    lines = ["| system | statistic | location | spread / memory |", "|---|---|---|---|"]
    for settings, make in SYSTEMS.values():
        lines += one_step(settings, make) + long_run(settings, make)
        print("\n".join(lines), flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
