#!/usr/bin/env python
"""Train the learned Lorenz surrogates (``smcflow_surrogates.lorenz``) and write their weight files.

For each system: simulate trajectories of the true SDE on its attractor with smcflow's Euler-Maruyama
step (observation interval and substeps from ``LORENZ63`` / ``LORENZ96``), take consecutive pairs
``(c, x) = (x_{t-1}, x_t)``, then

1. fit the mean network ``m`` by least squares on the standardised increment ``(x - c) / increment_sd``;
2. standardise the residual ``z = (x - center(c)) / residual_sd``;
3. fit the noise-prediction network by denoising score matching: ``tau ~ U(t_min, 1)``,
   ``z_tau = alpha z + sigma eps``, loss ``|eps_hat(z_tau, tau, c) - eps|^2``.

Adam with a cosine decay (optax), fixed seeds; held-out losses are printed. Lorenz-96 uses one scalar
for every standardisation (the ring is symmetric) and periodic convolutions.

Usage: python plugins/smcflow-surrogates/scripts/train_lorenz.py [lorenz63] [lorenz96]   (both by default;
about 3 and 8 minutes on 2 CPU cores)
"""
from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import smcflow
from smcflow.io import save_weights
from smcflow_surrogates.lorenz import LORENZ63, LORENZ96, SCHEDULE, WEIGHTS, LorenzSettings, true_sde
from smcflow_surrogates.lorenz_nets import EpsScore, MeanNetwork, conv, init_conv, init_mlp, mlp

CONFIG = {
    # paths x intervals of training data (after a burn-in), network sizes, training steps, batch
    "lorenz63": dict(paths=100, intervals=1000, burn=50, body="mlp", mean_sizes=[3, 64, 64, 3],
                     eps_sizes=[3 + 3 + 16, 128, 128, 128, 3], mean_steps=4000, eps_steps=12000, batch=512),
    "lorenz96": dict(paths=40, intervals=500, burn=200, body="conv", mean_channels=[1, 32, 32, 1],
                     eps_channels=[1 + 1 + 16, 48, 48, 48, 1], radius=2, mean_steps=3000, eps_steps=8000,
                     batch=128),
}
T_MIN = 1e-3
CHUNK = 200  # training steps per compiled call


def simulate_pairs(settings: LorenzSettings, cfg: dict, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    k0, k1 = jax.random.split(key)
    if settings.name == "lorenz63":
        x0 = jnp.array([1.0, 1.0, 25.0]) + 8.0 * jax.random.normal(k0, (cfg["paths"], 3))
    else:
        x0 = settings.forcing + jax.random.normal(k0, (cfg["paths"], settings.d))
    paths = np.asarray(smcflow.simulate_sde(true_sde(settings), k1, x0, settings.dt, cfg["burn"] + cfg["intervals"],
                                            settings.n_substeps))[:, cfg["burn"]:]
    return paths[:, :-1].reshape(-1, settings.d), paths[:, 1:].reshape(-1, settings.d)


def _sd(a: np.ndarray, symmetric: bool) -> np.ndarray:
    return np.asarray(a.std() if symmetric else a.std(axis=0), np.float32)


def _mean(a: np.ndarray, symmetric: bool) -> np.ndarray:
    return np.asarray(a.mean() if symmetric else a.mean(axis=0), np.float32)


def fit(loss, params, data, steps: int, batch: int, lr: float, key: jax.Array, label: str):
    """Adam with cosine decay on minibatches of ``data`` (a tuple of arrays with a common leading axis)."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = opt.init(params)
    n = data[0].shape[0]

    @jax.jit
    def chunk(params, state, key):
        def body(carry, k):
            params, state = carry
            kb, kl = jax.random.split(k)
            idx = jax.random.randint(kb, (batch,), 0, n)
            value, grads = jax.value_and_grad(loss)(params, tuple(a[idx] for a in data), kl)
            updates, state = opt.update(grads, state)
            return (optax.apply_updates(params, updates), state), value

        (params, state), values = jax.lax.scan(body, (params, state), jax.random.split(key, CHUNK))
        return params, state, values.mean()

    start = time.perf_counter()
    for i in range(steps // CHUNK):
        params, state, value = chunk(params, state, jax.random.fold_in(key, i))
        if i % max(1, (steps // CHUNK) // 5) == 0 or i == steps // CHUNK - 1:
            print(f"  {label}: step {(i + 1) * CHUNK:6d}, loss {float(value):.4f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return params


def train(settings: LorenzSettings) -> None:
    cfg = CONFIG[settings.name]
    symmetric = settings.name == "lorenz96"
    key = jax.random.key(2026 + settings.d)
    k_data, k_val, k_mean, k_eps, k_fit = jax.random.split(key, 5)
    c, x = simulate_pairs(settings, cfg, k_data)
    c_val, x_val = simulate_pairs(settings, dict(cfg, paths=max(4, cfg["paths"] // 10)), k_val)
    print(f"{settings.name}: {c.shape[0]} training pairs, {c_val.shape[0]} held out", flush=True)
    stats = {"state_mean": _mean(c, symmetric), "state_sd": _sd(c, symmetric), "increment_sd": _sd(x - c, symmetric)}
    body = cfg["body"]
    if body == "mlp":
        mean_params, eps_params = init_mlp(k_mean, cfg["mean_sizes"]), init_mlp(k_eps, cfg["eps_sizes"])
    else:
        mean_params = init_conv(k_mean, cfg["mean_channels"], cfg["radius"])
        eps_params = init_conv(k_eps, cfg["eps_channels"], cfg["radius"])
    stats_j = jax.tree_util.tree_map(jnp.asarray, stats)

    def mean_loss(params, batch, _key):
        cb, xb = batch
        return jnp.mean(((MeanNetwork(params, stats_j, body)(cb) - xb) / stats_j["increment_sd"]) ** 2)

    mean_params = fit(mean_loss, mean_params, (jnp.asarray(c), jnp.asarray(x)), cfg["mean_steps"], cfg["batch"], 3e-3,
                      jax.random.fold_in(k_fit, 0), "mean network")
    center = MeanNetwork(mean_params, stats_j, body)
    residual_sd = _sd(np.asarray(x - center(jnp.asarray(c))), symmetric)
    stats["residual_sd"] = residual_sd
    stats_j = jax.tree_util.tree_map(jnp.asarray, stats)
    z = (jnp.asarray(x) - center(jnp.asarray(c))) / stats_j["residual_sd"]

    def eps_loss(params, batch, key):
        cb, zb = batch
        kt, ke = jax.random.split(key)
        tau = jax.random.uniform(kt, (zb.shape[0],), minval=T_MIN, maxval=1.0)
        eps = jax.random.normal(ke, zb.shape)
        alpha, sigma = SCHEDULE.alpha(tau)[:, None], SCHEDULE.sigma(tau)[:, None]
        net = EpsScore(params, stats_j, SCHEDULE, body)
        predicted = net.eps(alpha * zb + sigma * eps, tau, cb)  # one time per row
        return jnp.mean((predicted - eps) ** 2)

    eps_params = fit(eps_loss, eps_params, (jnp.asarray(c), z), cfg["eps_steps"], cfg["batch"], 2e-3,
                     jax.random.fold_in(k_fit, 1), "noise network")
    # held-out losses
    center_val = np.asarray(center(jnp.asarray(c_val)))
    mean_val = float(np.mean(((center_val - x_val) / stats["increment_sd"]) ** 2))
    z_val = jnp.asarray((x_val - center_val) / residual_sd)
    eps_val = float(eps_loss(eps_params, (jnp.asarray(c_val), z_val), jax.random.key(1)))
    print(f"{settings.name}: held-out mean loss {mean_val:.4f} (1 = predicting no increment), residual sd "
          f"{np.round(residual_sd, 3).tolist()} (increment sd {np.round(stats['increment_sd'], 3).tolist()}), "
          f"held-out denoising loss {eps_val:.4f}", flush=True)
    path = save_weights(WEIGHTS / f"{settings.name}.npz",
                        {"mean": mean_params, "eps": eps_params, "stats": stats}, compress=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    names = sys.argv[1:] or ["lorenz63", "lorenz96"]
    for name in names:
        train({"lorenz63": LORENZ63, "lorenz96": LORENZ96}[name])
