"""The networks of the learned Lorenz surrogates (:mod:`smcflow_surrogates.lorenz`), as pure JAX functions of
nested parameter dicts.

Two bodies, both with SiLU activations and a zero-initialised last layer (an untrained network
outputs 0):

* ``mlp``: dense layers on a feature vector ``(n, f) -> (n, out)`` (Lorenz-63).
* ``conv``: periodic 1-D convolutions along the sites of a ring, ``(n, d, c_in) -> (n, d, c_out)``, kernel
  width ``2 r + 1`` (the inputs rolled by ``-r .. r`` sites, stacked, times one weight matrix). The same
  weights act at every site, so the network is equivariant to rotations of the ring, as Lorenz-96 is.

Two networks use a body each:

* :class:`MeanNetwork`, ``center(c) = c + increment_sd * m((c - state_mean) / state_sd)``: the expected
  increment ``E[x_t - x_{t-1} | x_{t-1} = c]``, fitted by least squares;
* :class:`EpsScore`, the noise-prediction network ``eps(z_tau, tau, c)`` of the standardised residual ``z``
  noised as ``z_tau = alpha z + sigma eps`` (the score is ``-eps / sigma``), from ``z_tau``, the
  standardised state and a sinusoidal embedding of ``tau``.

Parameters are saved with :func:`smcflow.io.save_weights` (``.npz``, no pickle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["init_mlp", "init_conv", "mlp", "conv", "time_embedding", "MeanNetwork", "EpsScore", "N_FREQS"]

#: sinusoid frequencies of the time embedding (sin and cos each)
N_FREQS = 8


def _layer(key: jax.Array, n_in: int, n_out: int, zero: bool) -> dict:
    w = jnp.zeros((n_in, n_out)) if zero else jax.random.normal(key, (n_in, n_out)) / math.sqrt(n_in)
    return {"w": w.astype(jnp.float32), "b": jnp.zeros((n_out,), jnp.float32)}


def init_mlp(key: jax.Array, sizes: list[int]) -> dict:
    """Dense layers ``sizes[0] -> .. -> sizes[-1]``; the last one zero."""
    keys = jax.random.split(key, len(sizes) - 1)
    return {str(i): _layer(k, a, b, zero=i == len(sizes) - 2)
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}


def init_conv(key: jax.Array, channels: list[int], radius: int) -> dict:
    """Periodic convolutions ``channels[0] -> .. -> channels[-1]`` of width ``2 radius + 1``; the last zero."""
    width = 2 * radius + 1
    keys = jax.random.split(key, len(channels) - 1)
    return {str(i): _layer(k, width * a, b, zero=i == len(channels) - 2)
            for i, (k, a, b) in enumerate(zip(keys, channels[:-1], channels[1:]))}


def _layers(params: dict) -> list[dict]:
    return [params[k] for k in sorted(params, key=int)]


def mlp(params: dict, h: jax.Array) -> jax.Array:
    layers = _layers(params)
    for p in layers[:-1]:
        h = jax.nn.silu(h @ p["w"] + p["b"])
    return h @ layers[-1]["w"] + layers[-1]["b"]


def conv(params: dict, h: jax.Array) -> jax.Array:
    """``(n, d, c_in) -> (n, d, c_out)``; the kernel width is read from the first layer's shape."""
    layers = _layers(params)
    radius = (layers[0]["w"].shape[0] // h.shape[-1] - 1) // 2

    def apply(p, h):
        stacked = jnp.concatenate([jnp.roll(h, -s, axis=1) for s in range(-radius, radius + 1)], axis=-1)
        return stacked @ p["w"] + p["b"]

    for p in layers[:-1]:
        h = jax.nn.silu(apply(p, h))
    return apply(layers[-1], h)


def time_embedding(t: jax.Array, n: int) -> jax.Array:
    """``(n, 2 N_FREQS)`` sines and cosines of ``tau`` in ``[0, 1]`` at frequencies ``pi 2^0 .. pi 2^(N_FREQS-1)``."""
    freqs = 2.0 ** jnp.arange(N_FREQS, dtype=jnp.float32) * math.pi
    angles = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (n,))[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _standardise(stats: dict, c: jax.Array) -> jax.Array:
    return (c - stats["state_mean"].astype(c.dtype)) / stats["state_sd"].astype(c.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class MeanNetwork:
    """``center(c) = c + increment_sd * m((c - state_mean) / state_sd)`` (a callable pytree).

    Attributes:
      params: the body's parameters; stats: ``state_mean``, ``state_sd``, ``increment_sd`` arrays.
      body: ``"mlp"`` or ``"conv"`` (static).
    """

    params: dict
    stats: dict
    body: str = field(default="mlp", metadata=dict(static=True))

    def __call__(self, c: jax.Array) -> jax.Array:
        h = _standardise(self.stats, c)
        out = mlp(self.params, h) if self.body == "mlp" else conv(self.params, h[..., None])[..., 0]
        return c + self.stats["increment_sd"].astype(c.dtype) * out.astype(c.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class EpsScore:
    """``score(z, tau, c) = -eps(z, tau, c) / sigma(tau)`` from the noise-prediction network (callable pytree).

    Attributes:
      params: the body's parameters; stats: ``state_mean``, ``state_sd``; schedule: the forward schedule.
      body: ``"mlp"`` or ``"conv"`` (static).
    """

    params: dict
    stats: dict
    schedule: Any
    body: str = field(default="mlp", metadata=dict(static=True))

    def eps(self, z: jax.Array, t: jax.Array, c: jax.Array) -> jax.Array:
        """Predicted noise ``(n, d)``; ``t`` is one time or one per row."""
        n = z.shape[0]
        temb = time_embedding(t, n).astype(z.dtype)
        h = _standardise(self.stats, c)
        if self.body == "mlp":
            return mlp(self.params, jnp.concatenate([z, h, temb], axis=-1)).astype(z.dtype)
        sites = jnp.concatenate([z[..., None], h[..., None],
                                 jnp.broadcast_to(temb[:, None, :], (n, z.shape[1], temb.shape[1]))], axis=-1)
        return conv(self.params, sites)[..., 0].astype(z.dtype)

    def __call__(self, z: jax.Array, t: jax.Array, c: jax.Array) -> jax.Array:
        return -self.eps(z, t, c) / self.schedule.sigma(t).astype(z.dtype)
