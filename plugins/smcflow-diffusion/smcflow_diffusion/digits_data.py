"""scikit-learn's 8x8 handwritten digits, scaled for the digits diffusion model and classifier.

The data ship with scikit-learn (no download). Each 8x8 image of integer intensities 0..16 is
flattened row by row to 64 values and mapped linearly to [-1, 1]:
``x = images.reshape(n, 64) / 16 * 2 - 1``. Every digits model in smcflow (the score network in
:mod:`smcflow_diffusion.digits_net`, the reward classifier and the independent judge in
``smcflow_rewards``) works on this scaling.
"""
from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_SHAPE", "DIM", "N_CLASSES", "load_digits_data", "to_images"]

#: shape of one image; a flat sample of length 64 is ``x.reshape(IMAGE_SHAPE)``
IMAGE_SHAPE = (8, 8)
#: dimension of one flattened sample
DIM = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
#: number of digit classes (0..9)
N_CLASSES = 10


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as ``(x, labels)``.

    Returns:
        x: ``float32`` array of shape ``(1797, 64)`` with values in ``[-1, 1]``
            (``images.reshape(n, 64) / 16 * 2 - 1``).
        labels: ``int32`` array of shape ``(1797,)`` with the digit 0..9 of each row.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)
    n = images.shape[0]
    x = (images.reshape(n, DIM) / 16.0 * 2.0 - 1.0).astype(np.float32)
    labels = np.asarray(digits.target, dtype=np.int32)
    return x, labels


def to_images(x) -> np.ndarray:
    """Flat samples in the model scaling back to images for plotting.

    Args:
        x: array of shape ``(n, 64)`` (or ``(64,)`` for one sample) in the ``[-1, 1]`` scaling.

    Returns:
        ``float32`` array of shape ``(n, 8, 8)`` (``(8, 8)`` for one sample) with values in
        ``[0, 1]`` (``(x + 1) / 2``, clipped), ready for ``imshow(..., cmap="gray_r", vmin=0, vmax=1)``.
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.shape[-1] != DIM:
        raise ValueError(f"expected samples of length {DIM} in the last axis, got shape {arr.shape}")
    images = np.clip((arr + 1.0) / 2.0, 0.0, 1.0)
    return images.reshape(arr.shape[:-1] + IMAGE_SHAPE)
