"""Fast checks of the shipped digits models: the diffusion noise-prediction network
(smcflow_diffusion.digits_net), the reward classifier (smcflow_rewards.digits_classifier) and the
independent scikit-learn judge (smcflow_rewards.digits_judge)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smcflow_diffusion import digits_net
from smcflow_diffusion.digits_data import IMAGE_SHAPE, load_digits_data, to_images
from smcflow_rewards import digits_classifier, digits_judge


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _alpha_sigma(t):
    """VP schedule, beta(t) = 0.1 + 19.9 t (the convention the score network was trained with)."""
    alpha = np.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t**2))
    return alpha, np.sqrt(1.0 - alpha**2)


def test_digits_data_scaling(digits):
    x, labels = digits
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))
    images = to_images(x[:5])
    assert images.shape == (5, *IMAGE_SHAPE) and images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(images.reshape(5, 64) * 2 - 1, x[:5], atol=1e-6)
    assert to_images(np.full(64, 3.0)).shape == IMAGE_SHAPE  # clipped, single sample
    assert to_images(np.full(64, 3.0)).max() == 1.0


def test_score_weights_load_and_shapes(digits):
    x, _ = digits
    params = digits_net.load_digits_eps_params()
    assert digits_net.WEIGHTS_PATH.stat().st_size < 2_000_000
    leaves = jax.tree_util.tree_leaves(params)
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)
    fresh = digits_net.init_params(jax.random.key(0))
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(fresh), leaves))
    # a fresh network predicts zero noise (zero-initialised output layer)
    np.testing.assert_array_equal(np.asarray(digits_net.eps_apply(fresh, x[:3], 0.5)), 0.0)

    out = digits_net.eps_apply(params, x[:7], 0.3)
    assert out.shape == (7, 64) and bool(jnp.all(jnp.isfinite(out)))
    per_row = digits_net.eps_apply(params, x[:7], jnp.full((7,), 0.3))
    np.testing.assert_allclose(np.asarray(per_row), np.asarray(out), rtol=1e-5, atol=1e-5)
    single = digits_net.eps_apply(params, x[0], 0.3)
    assert single.shape == (64,)
    np.testing.assert_allclose(np.asarray(single), np.asarray(out[0]), rtol=1e-5, atol=1e-5)
    # a caller editing its dict does not affect later loads
    params["out"]["w"] = None
    assert digits_net.load_digits_eps_params()["out"]["w"] is not None


@pytest.mark.parametrize("t, bound", [(0.5, 0.1), (0.2, 0.3)])
def test_score_network_denoises(digits, t, bound):
    x, _ = digits
    params = digits_net.load_digits_eps_params()
    x0 = x[:256]
    eps = np.random.default_rng(0).standard_normal(x0.shape).astype(np.float32)
    alpha, sigma = _alpha_sigma(t)
    loss = float(jnp.mean((digits_net.eps_apply(params, alpha * x0 + sigma * eps, t) - eps) ** 2))
    trivial = float(np.mean(eps**2))  # predicting eps = 0
    assert trivial == pytest.approx(1.0, abs=0.05)
    assert loss < bound, (t, loss)


def test_score_network_is_differentiable_in_x(digits):
    x, _ = digits
    params = digits_net.load_digits_eps_params()
    grad = jax.grad(lambda z: jnp.sum(digits_net.eps_apply(params, z, 0.4) ** 2))(jnp.asarray(x[:4]))
    assert grad.shape == (4, 64) and bool(jnp.all(jnp.isfinite(grad)))


def test_classifier_loads_and_is_accurate(digits):
    x, labels = digits
    params = digits_classifier.load_classifier_params()
    logits = digits_classifier.logits_apply(params, x)
    logp = digits_classifier.log_probs(params, x)
    assert logits.shape == (1797, 10) and logp.shape == (1797, 10)
    np.testing.assert_allclose(np.asarray(jnp.exp(logp).sum(axis=1)), 1.0, atol=1e-5)
    assert np.mean(np.asarray(logp.argmax(axis=1)) == labels) > 0.95
    assert digits_classifier.log_probs(params, x[0]).shape == (10,)


def test_classifier_gradient_matches_finite_differences(digits):
    x, labels = digits
    params = digits_classifier.load_classifier_params()
    x0 = jnp.asarray(x[:2], jnp.float32)

    def reward(z):  # log p(target | z) summed over the batch, target = 3
        return jnp.sum(digits_classifier.log_probs(params, z)[:, 3])

    grad = jax.grad(reward)(x0)
    assert grad.shape == (2, 64) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.abs(grad).max()) > 0
    direction = jnp.asarray(np.random.default_rng(1).standard_normal(x0.shape), jnp.float32)
    h = 1e-2
    fd = (reward(x0 + h * direction) - reward(x0 - h * direction)) / (2 * h)
    assert float(fd) == pytest.approx(float(jnp.sum(grad * direction)), rel=0.05, abs=1e-3)


def test_judge_is_independent_and_accurate(digits):
    x, labels = digits
    judge = digits_judge.independent_judge()
    assert judge is digits_judge.independent_judge()  # fitted once, cached
    assert type(judge).__module__.startswith("sklearn.")
    probs = digits_judge.judge_probabilities(x)
    assert probs.shape == (1797, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-8)
    predicted = digits_judge.judge_labels(x)
    np.testing.assert_array_equal(predicted, probs.argmax(axis=1))
    assert np.mean(predicted == labels) > 0.95
    assert digits_judge.judge_probabilities(x[0]).shape == (1, 10)
    with pytest.raises(ValueError):
        digits_judge.judge_probabilities(np.zeros((2, 63)))
