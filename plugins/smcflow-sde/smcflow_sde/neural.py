"""Neural least-squares estimators of drift and diffusion (in the spirit of Ren, Lu, Ying et al.,
"Statistical spatially inhomogeneous diffusion inference").

For increments ``dX = X_{t+dt} - X_t`` from ``X_t = x`` the conditional means are

    E[dX / dt | x] = b(x) + O(dt),     E[R R^T / dt | x] = a(x) + O(dt),   R = dX - b(x) dt,

so ``b`` and ``a`` are the least-squares regressions of ``dX / dt`` and of ``R R^T / dt`` on ``x``. Two
networks are fitted, one after the other, by minibatch Adam (optax) on the training paths:

1. drift: ``b(x) = W z + w + s * mlp_b(z)`` with ``z = (x - shift) / scale`` (the data's mean and spread),
   ``(W, w)`` started at the linear least-squares fit and ``mlp_b`` at zero, loss
   ``mean |dX / dt - b(x)|^2 dt``. The linear part makes the drift extrapolate linearly far from the data;
2. diffusion: ``a(x) = C L(z) L(z)^T C^T`` with ``C`` the Cholesky factor of the mean target and ``L`` lower
   triangular, diagonal ``softplus(.)`` (1 at the start), off-diagonal from ``mlp_a`` (tanh layers):
   symmetric PSD by construction and bounded far from the data. Loss: ``mean |R R^T / dt - a(x)|_F^2``
   with ``R`` the residual of the fitted drift (``residual=True``) or ``R = dX`` (the plain quadratic
   variation).

Early stopping: every ``eval_every`` steps the loss on held-out paths (``validation_fraction`` of the
paths; the last part in time when there is one path) is computed, and training stops after
``patience`` evaluations without improvement, keeping the best parameters. Seeds are fixed (``seed``).
The fitted :class:`NeuralSDE` holds the weights as a pytree (``save`` / ``load`` through
:func:`smcflow.io.save_weights`, never pickle).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .data import Increments, Paths, prepare_paths

__all__ = ["NeuralLeastSquares", "NeuralSDE", "TrainingReport"]


def _init_layers(key: jax.Array, sizes: list[int]) -> dict:
    """Glorot-initialised tanh layers; the output layer starts at zero (the network starts as 0)."""
    layers = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        scale = 0.0 if last else np.sqrt(2.0 / (n_in + n_out))
        layers[str(i)] = {"w": scale * jax.random.normal(keys[i], (n_in, n_out)), "b": jnp.zeros(n_out)}
    return layers


def _mlp(layers: dict, z: jax.Array) -> jax.Array:
    n = len(layers)
    for i in range(n):
        z = z @ layers[str(i)]["w"].astype(z.dtype) + layers[str(i)]["b"].astype(z.dtype)
        if i < n - 1:
            z = jnp.tanh(z)
    return z


def _standardise(params: dict, x: jax.Array) -> jax.Array:
    return (x - params["shift"].astype(x.dtype)) / params["scale"].astype(x.dtype)


def _drift(params: dict, x: jax.Array) -> jax.Array:
    p = params["drift"]
    z = _standardise(params, x)
    linear = z @ p["linear_w"].astype(x.dtype) + p["linear_b"].astype(x.dtype)
    return linear + p["out_scale"].astype(x.dtype) * _mlp(p["layers"], z)


def _diffusion(params: dict, x: jax.Array) -> jax.Array:
    p = params["diffusion"]
    d = x.shape[1]
    raw = _mlp(p["layers"], _standardise(params, x))  # (n, d (d + 1) / 2)
    rows, cols = np.tril_indices(d)
    factor = jnp.zeros((x.shape[0], d, d), x.dtype).at[:, rows, cols].set(raw)
    diagonal = jax.nn.softplus(jnp.diagonal(factor, axis1=1, axis2=2) + np.log(np.e - 1.0))  # 1 at raw = 0
    factor = factor.at[:, np.arange(d), np.arange(d)].set(diagonal)
    factor = p["chol"].astype(x.dtype) @ factor
    return factor @ jnp.swapaxes(factor, 1, 2)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class NeuralSDE:
    """A fitted SDE: ``drift(x) -> (n, d)``, ``diffusion(x) -> (n, d, d)`` (symmetric PSD by construction)
    from the weights pytree ``params`` (module docstring)."""

    params: dict

    def drift(self, x: jax.Array) -> jax.Array:
        return _drift(self.params, x)

    def diffusion(self, x: jax.Array) -> jax.Array:
        return _diffusion(self.params, x)

    def save(self, path: Any) -> Path:
        """Write the weights to an ``.npz`` file (:func:`smcflow.io.save_weights`)."""
        from smcflow.io import save_weights

        return save_weights(path, jax.tree_util.tree_map(np.asarray, self.params))

    @classmethod
    def load(cls, path: Any) -> "NeuralSDE":
        """Read weights written by :meth:`save` (no pickle)."""
        from smcflow.io import load_weights

        return cls(jax.tree_util.tree_map(jnp.asarray, load_weights(path)))


@dataclass(frozen=True)
class TrainingReport:
    """Per stage: training steps taken, best validation loss and the validation losses seen."""

    drift_steps: int
    drift_validation: float
    diffusion_steps: int
    diffusion_validation: float
    drift_curve: tuple[float, ...]
    diffusion_curve: tuple[float, ...]


def _split(data: Paths, fraction: float, seed: int) -> tuple[Paths, Paths]:
    """Training and validation paths: a ``fraction`` of the paths, or the last part of a single path."""
    n_paths = data.values.shape[0]
    train, val = data.mask.copy(), data.mask.copy()
    if n_paths >= 2:
        n_val = min(max(1, int(round(fraction * n_paths))), n_paths - 1)
        held = np.random.default_rng(seed).permutation(n_paths)[:n_val]
        train[held] = False
        val[np.setdiff1d(np.arange(n_paths), held)] = False
    else:
        present = np.flatnonzero(data.mask[0])
        cut = present[int(len(present) * (1 - fraction))]
        train[0, cut + 1:] = False
        val[0, :cut] = False
    return Paths(data.values, train, data.dt), Paths(data.values, val, data.dt)


def _drift_loss(drift: dict, fixed: dict, x: jax.Array, dx: jax.Array, tau: jax.Array) -> jax.Array:
    """``mean |dX / tau - b(x)|^2 tau`` (``fixed``: the shared standardisation)."""
    b = _drift({**fixed, "drift": drift}, x)
    return jnp.mean(jnp.sum((dx / tau - b) ** 2, axis=1)) * tau


def _diffusion_loss(diffusion: dict, fixed: dict, x: jax.Array, y: jax.Array, tau: jax.Array) -> jax.Array:
    """``mean |Y - a(x)|_F^2`` for the outer-product targets ``Y``."""
    a = _diffusion({**fixed, "diffusion": diffusion}, x)
    return jnp.mean(jnp.sum((y - a) ** 2, axis=(1, 2)))


@partial(jax.jit, static_argnames=("loss", "n_steps", "batch"))
def _chunk(loss, params, state, fixed, data, validation, key, start, learning_rate, n_steps: int, batch: int):
    """``n_steps`` minibatch Adam steps, then the validation loss (compiled once per loss and shapes)."""
    optimiser = optax.adam(learning_rate)
    m = data[0].shape[0]

    def body(carry, step):
        params, state = carry
        index = jax.random.randint(jax.random.fold_in(key, step), (batch,), 0, m)
        grads = jax.grad(loss)(params, fixed, *(a[index] for a in data[:2]), data[2])
        updates, state = optimiser.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(body, (params, state), start + jnp.arange(n_steps))
    return params, state, loss(params, fixed, *validation)


def _train(loss: Callable, params: dict, fixed: dict, batches: tuple, validation: tuple, tau: float,
           cfg: "NeuralLeastSquares", key: jax.Array) -> tuple[dict, int, float, tuple[float, ...]]:
    """Minibatch Adam with early stopping on ``validation``; returns the best parameters."""
    tau = jnp.float32(tau)
    data = (*(jnp.asarray(b, jnp.float32) for b in batches), tau)
    val = (*(jnp.asarray(v, jnp.float32) for v in validation), tau)
    batch = min(cfg.batch_size, data[0].shape[0])
    state = optax.adam(cfg.learning_rate).init(params)
    best, best_loss, curve, since, steps = params, float(jax.jit(loss)(params, fixed, *val)), [], 0, 0
    while steps < cfg.max_steps and since < cfg.patience:
        params, state, value = _chunk(loss, params, state, fixed, data, val, key, jnp.int32(steps),
                                      jnp.float32(cfg.learning_rate), n_steps=cfg.eval_every, batch=batch)
        steps += cfg.eval_every
        curve.append(float(value))
        if curve[-1] < best_loss:
            best, best_loss, since = params, curve[-1], 0
        else:
            since += 1
    return best, steps, best_loss, tuple(curve)


@dataclass(frozen=True)
class NeuralLeastSquares:
    """Neural least-squares estimator (module docstring); ``fit(paths, dt, mask=None)`` returns a
    :class:`NeuralSDE`, and ``last_report`` is not kept (use :meth:`fit_with_report`).

    Attributes:
      hidden: widths of the hidden tanh layers of both networks.
      learning_rate, batch_size, max_steps, eval_every, patience: Adam and early stopping.
      validation_fraction: share of the paths held out for early stopping.
      residual: regress the drift-corrected residual outer products (True) or ``dX dX^T / dt``.
      seed: fixes the initialisation, the minibatches and the validation split.
      max_validation: at most this many held-out increments are used per evaluation.
    """

    hidden: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-3
    batch_size: int = 2048
    max_steps: int = 4000
    eval_every: int = 100
    patience: int = 8
    validation_fraction: float = 0.2
    residual: bool = True
    seed: int = 0
    max_validation: int = 50_000

    name = "neural"

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        for field_name in ("batch_size", "max_steps", "eval_every", "patience"):
            if int(getattr(self, field_name)) < 1:
                raise ValueError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")

    def fit(self, paths: Any, dt: Any, mask: Any = None) -> NeuralSDE:
        return self.fit_with_report(paths, dt, mask)[0]

    def fit_with_report(self, paths: Any, dt: Any, mask: Any = None) -> tuple[NeuralSDE, TrainingReport]:
        data = prepare_paths(paths, dt, mask)
        train, val = _split(data, self.validation_fraction, self.seed)
        tr, va = train.increments(1), val.increments(1)
        if tr.start.shape[0] < 2 or va.start.shape[0] < 1:
            raise ValueError("paths are too short to hold out validation increments; pass more or longer paths")
        va = _subsample(va, self.max_validation, self.seed)
        d, tau = data.dim, data.dt
        k_drift, k_diff, k_b, k_a = jax.random.split(jax.random.key(self.seed), 4)
        shift, scale = tr.start.mean(0), np.maximum(tr.start.std(0), 1e-8)

        # drift: linear least squares in standardised coordinates, then the network's correction
        z = (tr.start - shift) / scale
        design = np.concatenate([z, np.ones((z.shape[0], 1))], axis=1)
        coef, *_ = np.linalg.lstsq(design, tr.delta / tau, rcond=None)
        out_scale = np.maximum(np.sqrt(np.mean((design @ coef) ** 2, axis=0)), 1e-3)
        params = {"shift": jnp.asarray(shift, jnp.float32), "scale": jnp.asarray(scale, jnp.float32)}
        params["drift"] = {"linear_w": jnp.asarray(coef[:d], jnp.float32), "linear_b": jnp.asarray(coef[d], jnp.float32),
                           "out_scale": jnp.asarray(out_scale, jnp.float32),
                           "layers": _init_layers(k_drift, [d, *self.hidden, d])}

        fixed = {"shift": params["shift"], "scale": params["scale"]}
        drift, n_drift, v_drift, c_drift = _train(_drift_loss, params["drift"], fixed, (tr.start, tr.delta),
                                                  (va.start, va.delta), tau, self, k_b)
        params["drift"] = drift

        # diffusion: Cholesky-factor network around the mean target
        def targets(inc: Increments) -> np.ndarray:
            r = inc.delta
            if self.residual:
                r = r - np.asarray(jax.jit(_drift)(params, jnp.asarray(inc.start, jnp.float32)), np.float64) * tau
            return r[:, :, None] * r[:, None, :] / tau

        y_tr, y_va = targets(tr), targets(va)
        mean_target = y_tr.mean(0)
        chol = np.linalg.cholesky(mean_target + 1e-9 * np.trace(mean_target) * np.eye(d))
        params["diffusion"] = {"chol": jnp.asarray(chol, jnp.float32),
                               "layers": _init_layers(k_diff, [d, *self.hidden, d * (d + 1) // 2])}

        diffusion, n_diff, v_diff, c_diff = _train(_diffusion_loss, params["diffusion"], fixed, (tr.start, y_tr),
                                                   (va.start, y_va), tau, self, k_a)
        params["diffusion"] = diffusion
        report = TrainingReport(n_drift, v_drift, n_diff, v_diff, c_drift, c_diff)
        return NeuralSDE(params), report


def _subsample(inc: Increments, limit: int, seed: int) -> Increments:
    if inc.start.shape[0] <= limit:
        return inc
    keep = np.sort(np.random.default_rng(seed + 1).choice(inc.start.shape[0], limit, replace=False))
    return Increments(inc.start[keep], inc.delta[keep], inc.path[keep], inc.tau)
