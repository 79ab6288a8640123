"""A small noise-prediction (score) network for the 8x8 digits, as pure JAX functions.

The network ``eps_apply(params, x_t, t)`` predicts the Gaussian noise ``eps`` in
``x_t = alpha(t) x_0 + sigma(t) eps`` (the variance-preserving schedule with beta(t) from 0.1 to 20,
continuous time t in [0, 1]); the score of the noised marginal is ``-eps_apply(params, x_t, t) /
sigma(t)``. The schedule itself lives elsewhere; this module only knows the network.

Architecture (all dense, SiLU activations)::

    emb   = sinusoidal(1000 t)                          (n, 64)   32 frequencies, sin and cos
    temb  = silu(emb @ W_t + b_t)                       (n, 128)
    h     = concat(x, temb) @ W_in + b_in               (n, 256)
    for each of the 2 residual blocks:
        u = silu(silu(h) @ W_1 + b_1 + temb @ W_c)      (n, 256)  time injected in every block
        h = h + u @ W_2 + b_2                           (n, 256)
    eps   = silu(h) @ W_out + b_out                     (n, 64)

That is 4 hidden 256-wide layers (input, 2 x 2 in the blocks) and about 400k float32 parameters
(1.6 MB). ``W_out`` starts at zero, so the untrained network predicts ``eps = 0``.

Parameters are a nested dict of arrays, saved with :func:`smcflow.io.save_weights`; the trained
weights ship as ``weights/digits_score.npz`` (trained by ``scripts/train_digits_score.py``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp

from smcflow.io import load_weights

__all__ = [
    "DIM",
    "WEIGHTS_PATH",
    "init_params",
    "eps_apply",
    "time_embedding",
    "load_digits_eps_params",
]

#: dimension of one flattened 8x8 sample
DIM = 64
#: the shipped trained weights
WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_score.npz"

_TIME_SCALE = 1000.0  # t in [0, 1] is stretched so the sinusoids resolve small time differences


def _dense_init(key, n_in: int, n_out: int, *, zero: bool = False) -> dict:
    """LeCun-normal weights ``(n_in, n_out)`` and zero bias ``(n_out,)``; all zeros when ``zero``."""
    if zero:
        w = jnp.zeros((n_in, n_out), jnp.float32)
    else:
        w = jax.random.normal(key, (n_in, n_out), jnp.float32) / math.sqrt(n_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def init_params(key, hidden: int = 256, n_blocks: int = 2, time_dim: int = 128,
                n_freqs: int = 32, dim: int = DIM) -> dict:
    """Fresh parameters of the noise-prediction network.

    Args:
        key: a ``jax.random`` key.
        hidden: width of the residual stream and of the block layers.
        n_blocks: number of residual blocks (two dense layers each).
        time_dim: width of the learned time embedding.
        n_freqs: number of sinusoid frequencies (the raw embedding has ``2 * n_freqs`` entries).
        dim: data dimension (64 for the digits).

    Returns:
        A nested dict ``{"time": ..., "inp": ..., "blocks": {"0": ..., ...}, "out": ...}`` of
        ``float32`` arrays. The architecture is read back from the array shapes, so
        :func:`eps_apply` needs no other configuration.
    """
    keys = jax.random.split(key, 3 + 3 * n_blocks)
    params = {
        "time": _dense_init(keys[0], 2 * n_freqs, time_dim),
        "inp": _dense_init(keys[1], dim + time_dim, hidden),
        "out": _dense_init(keys[2], hidden, dim, zero=True),
        "blocks": {},
    }
    for i in range(n_blocks):
        k1, kc, k2 = keys[3 + 3 * i: 6 + 3 * i]
        cond = _dense_init(kc, time_dim, hidden)
        params["blocks"][str(i)] = {
            "dense1": _dense_init(k1, hidden, hidden),
            "cond": {"w": cond["w"]},  # the time projection has no bias (dense1 has one)
            "dense2": _dense_init(k2, hidden, hidden),
        }
    return params


def time_embedding(t, n_freqs: int) -> jax.Array:
    """Sinusoidal embedding of times ``t`` of shape ``(n,)``: ``(n, 2 * n_freqs)`` of sin and cos.

    Frequencies are geometric from 1 to 1/10000 applied to ``1000 t``, as in transformer position
    encodings.
    """
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(n_freqs, dtype=jnp.float32) / n_freqs)
    angles = (_TIME_SCALE * jnp.asarray(t, jnp.float32))[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _dense(p: dict, x: jax.Array) -> jax.Array:
    out = x @ p["w"]
    return out + p["b"] if "b" in p else out


def eps_apply(params: dict, x, t) -> jax.Array:
    """Predicted noise ``eps_hat(x_t, t)``.

    Args:
        params: a parameter dict from :func:`init_params` or :func:`load_digits_eps_params`
            (NumPy or JAX arrays).
        x: noised samples, shape ``(n, 64)`` (a single ``(64,)`` sample is also accepted).
        t: time in ``[0, 1]``: a scalar shared by all rows or an array of shape ``(n,)``.

    Returns:
        ``(n, 64)`` array (``(64,)`` for a single sample): the predicted ``eps``. The score of the
        noised data density is ``-eps_apply(params, x, t) / sigma(t)``.
    """
    x = jnp.asarray(x, jnp.float32)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    n = x.shape[0]
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (n,))
    n_freqs = params["time"]["w"].shape[0] // 2
    temb = jax.nn.silu(_dense(params["time"], time_embedding(t, n_freqs)))
    h = _dense(params["inp"], jnp.concatenate([x, temb], axis=-1))
    for name in sorted(params["blocks"], key=int):
        block = params["blocks"][name]
        u = jax.nn.silu(_dense(block["dense1"], jax.nn.silu(h)) + _dense(block["cond"], temb))
        h = h + _dense(block["dense2"], u)
    eps = _dense(params["out"], jax.nn.silu(h))
    return eps[0] if single else eps


@lru_cache(maxsize=1)
def _load_cached() -> dict:
    return jax.tree_util.tree_map(jnp.asarray, load_weights(WEIGHTS_PATH))


def load_digits_eps_params() -> dict:
    """The trained parameters shipped in ``weights/digits_score.npz``, as JAX ``float32`` arrays.

    The file is read once per process; each call returns fresh dicts holding the same (immutable)
    arrays, so a caller may edit its dict without affecting others.
    """
    return jax.tree_util.tree_map(lambda a: a, _load_cached())
