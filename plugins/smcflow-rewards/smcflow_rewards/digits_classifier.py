"""The digits reward classifier: a small JAX MLP giving log p(class | x) for 8x8 digits.

Used as the reward model for steering the digits diffusion sampler: the reward of a particle is
``log_probs(params, x0_hat)[:, target]`` evaluated on its denoised estimate ``x0_hat``. All
functions are pure and differentiable in ``x`` (smooth SiLU activations), so ``jax.grad`` of the
reward gives guidance gradients.

Architecture: ``64 -> 128 -> 128 -> 10``, dense layers with SiLU, logits out (about 27k
parameters). Inputs are ``(n, 64)`` in the ``[-1, 1]`` scaling of
:func:`smcflow_diffusion.digits_data.load_digits_data`.

Training (``scripts/train_digits_classifier.py``, about 20 s on 2 CPU cores): soft-label
cross-entropy on the digits with two augmentations, mixup (half of each batch are blends
``lam x_a + (1 - lam) x_b`` with ``lam ~ U(0, 1)`` and label ``lam e_a + (1 - lam) e_b``, which
resemble the blurry denoised estimates of early sampling steps) and Gaussian pixel noise (standard
deviation drawn per sample from ``U(0, 0.3)``); AdamW (weight decay 1e-3) with warm-up and cosine
decay, 3000 steps of batch 128, fixed seeds. A fixed 80/20 split is used only to report holdout
numbers; the shipped weights (``weights/digits_classifier.npz``) are retrained with the same recipe
on all 1797 digits.

Measured on the split: holdout accuracy 98.3 % (97.8 % under pixel noise of standard deviation
0.3), mean max-probability 0.96; on Tweedie estimates of noised held-out digits (digits score
network) the accuracy is 98 % at t = 0.1 and 71 % at t = 0.3, with mean log p(true class) -0.07
and -0.90. The shipped model classifies all 1797 digits correctly (mean max-probability 0.98).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp

from smcflow.io import load_weights

__all__ = ["WEIGHTS_PATH", "init_params", "logits_apply", "log_probs", "load_classifier_params"]

#: the shipped trained weights
WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_classifier.npz"


def init_params(key, hidden: tuple[int, ...] = (128, 128), dim: int = 64,
                n_classes: int = 10) -> dict:
    """Fresh parameters: ``{"layers": {"0": {"w", "b"}, "1": ..., ...}}`` of ``float32`` arrays.

    ``hidden`` lists the hidden widths; layer ``i`` maps width ``i`` to width ``i + 1`` of
    ``(dim, *hidden, n_classes)``. Weights are LeCun-normal, biases zero.
    """
    widths = (dim, *hidden, n_classes)
    keys = jax.random.split(key, len(widths) - 1)
    layers = {}
    for i, (k, n_in, n_out) in enumerate(zip(keys, widths[:-1], widths[1:])):
        layers[str(i)] = {
            "w": jax.random.normal(k, (n_in, n_out), jnp.float32) / math.sqrt(n_in),
            "b": jnp.zeros((n_out,), jnp.float32),
        }
    return {"layers": layers}


def logits_apply(params: dict, x) -> jax.Array:
    """Class logits, shape ``(n, 10)``, for digits ``x`` of shape ``(n, 64)`` (``(10,)`` for ``(64,)``)."""
    h = jnp.asarray(x, jnp.float32)
    names = sorted(params["layers"], key=int)
    for name in names[:-1]:
        layer = params["layers"][name]
        h = jax.nn.silu(h @ layer["w"] + layer["b"])
    last = params["layers"][names[-1]]
    return h @ last["w"] + last["b"]


def log_probs(params: dict, x) -> jax.Array:
    """``log p(class | x)``, shape ``(n, 10)`` (``log_softmax`` of :func:`logits_apply`)."""
    return jax.nn.log_softmax(logits_apply(params, x), axis=-1)


@lru_cache(maxsize=1)
def _load_cached() -> dict:
    return jax.tree_util.tree_map(jnp.asarray, load_weights(WEIGHTS_PATH))


def load_classifier_params() -> dict:
    """The trained parameters shipped in ``weights/digits_classifier.npz``, as JAX arrays.

    The file is read once per process; each call returns fresh dicts holding the same arrays.
    """
    return jax.tree_util.tree_map(lambda a: a, _load_cached())
